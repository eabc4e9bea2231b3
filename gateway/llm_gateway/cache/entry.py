"""Cache entries: the bytes Ollama sent, plus when they were stored and until when fresh.

An entry keeps the response in the form it was produced (NDJSON stream, one JSON
object, or SSE). A request asking for the same form gets those bytes back untouched;
another form is converted (see `forms.py`).

Layout in Redis: b"LC1" + fresh_until_ms (13 digits) + stored_at_ms (13 digits) +
form (1 byte) + body. The fixed-width prefix lets the Lua admission script tell a
fresh entry from a stale one without decoding the body.
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import StrEnum

MAGIC = b"LC1"
_HEADER = len(MAGIC) + 13 + 13 + 1


class Form(StrEnum):
    NDJSON = "n"
    JSON = "j"
    SSE = "s"

    @property
    def content_type(self) -> str:
        return _CONTENT_TYPES[self]


_CONTENT_TYPES = {
    Form.NDJSON: "application/x-ndjson",
    Form.JSON: "application/json; charset=utf-8",
    Form.SSE: "text/event-stream",
}


@dataclass(frozen=True, slots=True)
class Entry:
    form: Form
    body: bytes
    stored_at_ms: int
    fresh_until_ms: int

    def is_fresh(self, now_ms: int) -> bool:
        return now_ms < self.fresh_until_ms

    def age_seconds(self, now_ms: int) -> int:
        return max(0, (now_ms - self.stored_at_ms) // 1000)

    def encode(self) -> bytes:
        return b"".join(
            (
                MAGIC,
                b"%013d" % self.fresh_until_ms,
                b"%013d" % self.stored_at_ms,
                self.form.value.encode(),
                self.body,
            )
        )

    @classmethod
    def decode(cls, raw: bytes) -> Entry | None:
        """The entry, or None for anything that is not one (old versions, corruption)."""
        if len(raw) < _HEADER or not raw.startswith(MAGIC):
            return None
        try:
            fresh_until = int(raw[3:16])
            stored_at = int(raw[16:29])
            form = Form(raw[29:30].decode())
        except ValueError:
            return None
        return cls(form, raw[_HEADER:], stored_at, fresh_until)
