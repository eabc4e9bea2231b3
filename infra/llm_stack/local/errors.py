"""The one error type the local stack reports to the user instead of a traceback."""

from __future__ import annotations


class LocalStackError(Exception):
    """Something the user can fix: the message says what is wrong and how to fix it."""

    def __init__(self, problem: str, fix: str = "") -> None:
        self.problem = problem
        self.fix = fix
        super().__init__(f"{problem}\n  fix: {fix}" if fix else problem)
