"""Metric and label names a PromQL expression uses, by a small tokenizer.

Not a parser (promtool does the parsing): it only has to find the vector selectors and
label names in the expressions our own code writes, and its tests pin down the forms
that appear.
"""

from __future__ import annotations

import re

_TOKEN = re.compile(
    r"""
    (?P<string>"(?:[^"\\]|\\.)*"|'(?:[^'\\]|\\.)*'|`[^`]*`)
    |(?P<range>\[[^\]]*\])
    |(?P<duration>(?:[0-9]+(?:ms|[smhdwy]))+(?![A-Za-z0-9_:]))
    |(?P<number>(?:[0-9]*\.)?[0-9]+(?:[eE][+-]?[0-9]+)?)
    |(?P<ident>[A-Za-z_:][A-Za-z0-9_:]*)
    |(?P<open>\()
    |(?P<close>\))
    |(?P<lbrace>\{)
    |(?P<rbrace>\})
    |(?P<op>[,=!~<>+\-*/^%@]+)
    |(?P<space>\s+)
    """,
    re.VERBOSE,
)
_KEYWORDS = {"offset", "bool", "and", "or", "unless", "atan2", "inf", "nan", "start", "end"}
_GROUPING = {"by", "without", "on", "ignoring", "group_left", "group_right"}
_MATCH_OPS = {"=", "!=", "=~", "!~"}


def _tokens(expr: str) -> list[tuple[str, str]]:
    tokens = []
    pos = 0
    while pos < len(expr):
        match = _TOKEN.match(expr, pos)
        if match is None:
            raise ValueError(f"cannot tokenize {expr[pos : pos + 20]!r} in {expr!r}")
        kind = match.lastgroup or ""
        if kind != "space":
            tokens.append((kind, match.group()))
        pos = match.end()
    return tokens


def metric_names(expr: str) -> set[str]:
    """Names of the metrics `expr` reads (not functions, keywords or label names)."""
    tokens = _tokens(expr)
    names: set[str] = set()
    braces = 0
    i = 0
    while i < len(tokens):
        kind, text = tokens[i]
        if kind == "lbrace":
            braces += 1
        elif kind == "rbrace":
            braces -= 1
        elif kind == "ident" and braces == 0:
            following = tokens[i + 1][0] if i + 1 < len(tokens) else ""
            if following == "ident" and tokens[i + 1][1].lower() in _GROUPING:
                following = "open"  # `sum by (...) (...)`: an aggregation
            if text.lower() in _GROUPING:
                # by (a, b): skip the label list
                if following == "open":
                    while tokens[i][0] != "close":
                        i += 1
            elif following == "open" or text.lower() in _KEYWORDS:
                pass  # a function or aggregation, or a keyword
            else:
                names.add(text)
        i += 1
    if braces != 0:
        raise ValueError(f"unbalanced braces in {expr!r}")
    return names


def label_names(expr: str) -> set[str]:
    """Label names `expr` matches on (`{name="..."}`) or groups by (`by (name, ...)`)."""
    tokens = _tokens(expr)
    names: set[str] = set()
    braces = 0
    for i, (kind, text) in enumerate(tokens):
        following = tokens[i + 1] if i + 1 < len(tokens) else ("", "")
        if kind == "lbrace":
            braces += 1
        elif kind == "rbrace":
            braces -= 1
        elif kind == "ident" and braces > 0 and following[0] == "op":
            if following[1] not in _MATCH_OPS:
                raise ValueError(f"cannot read the matcher at {text!r} in {expr!r}")
            names.add(text)
        elif kind == "ident" and braces == 0 and text.lower() in _GROUPING:
            if following[0] != "open":
                continue  # `group_left` without a label list
            j = i + 2
            while tokens[j][0] != "close":
                if tokens[j][0] == "ident":
                    names.add(tokens[j][1])
                j += 1
    if braces != 0:
        raise ValueError(f"unbalanced braces in {expr!r}")
    return names
