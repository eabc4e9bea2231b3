"""The operator's policy for `keep_alive`: how long a request may keep its model loaded.

Model loads are the stack's dominant cost and every key shares the loaded models, so a
client's `keep_alive` is clamped to [GATEWAY_KEEP_ALIVE_MIN_SECONDS,
GATEWAY_KEEP_ALIVE_MAX_SECONDS] (no key can pin a model for a century, or unload it
after its own answer), and an unload-only request (`keep_alive: 0`, no prompt or
messages) is for admin keys only. A request without `keep_alive` gets the instance's
own default (OLLAMA_KEEP_ALIVE), untouched.

Values are read as Ollama reads them (api.Duration.UnmarshalJSON): a number is
seconds, a string a Go duration (`time.ParseDuration`: "5m", "1h30m", "0"), anything
negative means forever; anything else Ollama refuses, so the gateway does too (400).
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Any

from llm_gateway.errors import GatewayError

FOREVER = float("inf")

# One `<number><unit>` of a Go duration (time.ParseDuration), compiled once.
_PART = re.compile(r"(\d+(?:\.\d*)?|\.\d+)(ns|us|µs|μs|ms|s|m|h)")
_UNIT_SECONDS = {
    "ns": 1e-9,
    "us": 1e-6,
    "µs": 1e-6,  # (Go accepts both micro signs)
    "μs": 1e-6,
    "ms": 1e-3,
    "s": 1.0,
    "m": 60.0,
    "h": 3600.0,
}


def parse_go_duration(text: str) -> float:
    """Seconds of a Go duration string; negative ones are FOREVER (as Ollama stores them)."""
    body = text[1:] if text[:1] in ("-", "+") else text
    negative = text.startswith("-")
    if body == "0":
        return 0.0
    total, pos = 0.0, 0
    for match in _PART.finditer(body):
        if match.start() != pos:
            break
        total += float(match.group(1)) * _UNIT_SECONDS[match.group(2)]
        pos = match.end()
    if not body or pos != len(body):
        raise ValueError(f"invalid duration {text!r}")
    return FOREVER if negative and total > 0 else total


def keep_alive_seconds(value: Any) -> float:
    """A request's `keep_alive` in seconds (FOREVER when negative); ValueError if invalid."""
    if isinstance(value, bool):
        raise ValueError("keep_alive is a duration, not a boolean")
    if isinstance(value, int | float):
        return FOREVER if value < 0 else float(value)
    if isinstance(value, str):
        return parse_go_duration(value)
    raise ValueError("keep_alive is a number of seconds or a duration string")


@dataclass(frozen=True, slots=True)
class KeepAlivePolicy:
    min_seconds: float
    max_seconds: float

    def apply(self, data: dict[str, Any], load_only: bool, admin: bool) -> bool:
        """Clamp `data["keep_alive"]` in place (True when changed); 400 or 403 if refused."""
        if "keep_alive" not in data or data["keep_alive"] is None:
            return False
        try:
            seconds = keep_alive_seconds(data["keep_alive"])
        except ValueError as exc:
            raise GatewayError(400, f"invalid keep_alive: {exc}") from None
        if seconds == 0 and load_only:
            if not admin:
                # It would unload the model for every key using it.
                raise GatewayError(403, "only an admin key may unload a model (keep_alive 0)")
            return False
        clamped = min(max(seconds, self.min_seconds), self.max_seconds)
        if clamped == seconds:
            return False
        data["keep_alive"] = int(clamped) if clamped == int(clamped) else clamped
        return True
