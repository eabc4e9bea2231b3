"""Cache entries: the bytes Ollama sent, plus when they were stored and until when fresh.

An entry keeps the response in the form it was produced (NDJSON stream, one JSON
object, or SSE). A request asking for the same form gets those bytes back untouched;
another form is converted (see `forms.py`).

Layout in Redis: b"LC2" + fresh_until_ms (13 digits) + stored_at_ms (13 digits) +
tokens (10 digits: prompt + completion, what the answer cost upstream) + form (1
byte) + body. The fixed-width prefix lets the Lua admission script tell a fresh
entry from a stale one, and charge a hit its tokens, without decoding the body.
This module is the one definition of the layout: the Lua side reads it through
`lua_fresh_until` and `lua_tokens`.
"""

from __future__ import annotations

from dataclasses import dataclass

from llm_gateway.vocabulary import Form

MAGIC = b"LC2"
_DIGITS = 13  # milliseconds since the epoch, zero-padded: good until the year 2286
_TOKEN_DIGITS = 10
_FRESH_UNTIL = slice(len(MAGIC), len(MAGIC) + _DIGITS)
_STORED_AT = slice(_FRESH_UNTIL.stop, _FRESH_UNTIL.stop + _DIGITS)
_TOKENS = slice(_STORED_AT.stop, _STORED_AT.stop + _TOKEN_DIGITS)
_FORM = slice(_TOKENS.stop, _TOKENS.stop + 1)
_HEADER = _FORM.stop


def _lua_field(value: str, field: slice) -> str:
    # Lua strings are 1-based and string.sub's end is inclusive.
    return f"tonumber(string.sub({value}, {field.start + 1}, {field.stop}))"


def lua_fresh_until(value: str) -> str:
    """A Lua expression: the fresh-until time (ms) of the encoded entry in `value`."""
    return _lua_field(value, _FRESH_UNTIL)


def lua_tokens(value: str) -> str:
    """A Lua expression: the tokens (prompt + completion) of the encoded entry in `value`."""
    return _lua_field(value, _TOKENS)


@dataclass(frozen=True, slots=True)
class Entry:
    form: Form
    body: bytes
    stored_at_ms: int
    fresh_until_ms: int
    tokens: int = 0

    def is_fresh(self, now_ms: int) -> bool:
        return now_ms < self.fresh_until_ms

    def age_seconds(self, now_ms: int) -> int:
        return max(0, (now_ms - self.stored_at_ms) // 1000)

    def encode(self) -> bytes:
        return b"".join(
            (
                MAGIC,
                b"%0*d" % (_DIGITS, self.fresh_until_ms),
                b"%0*d" % (_DIGITS, self.stored_at_ms),
                b"%0*d" % (_TOKEN_DIGITS, min(self.tokens, 10**_TOKEN_DIGITS - 1)),
                self.form.value.encode(),
                self.body,
            )
        )

    @staticmethod
    def peek(raw: bytes) -> tuple[int, int] | None:
        """`(fresh_until_ms, tokens)` of an encoded entry, without its body; None if not one."""
        if len(raw) < _HEADER or not raw.startswith(MAGIC):
            return None
        try:
            return int(raw[_FRESH_UNTIL]), int(raw[_TOKENS])
        except ValueError:
            return None

    @classmethod
    def decode(cls, raw: bytes) -> Entry | None:
        """The entry, or None for anything that is not one (old versions, corruption)."""
        if len(raw) < _HEADER or not raw.startswith(MAGIC):
            return None
        try:
            fresh_until = int(raw[_FRESH_UNTIL])
            stored_at = int(raw[_STORED_AT])
            tokens = int(raw[_TOKENS])
            form = Form(raw[_FORM].decode())
        except ValueError:
            return None
        return cls(form, raw[_HEADER:], stored_at, fresh_until, tokens)
