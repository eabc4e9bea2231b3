"""Go durations as Ollama reads them: `keep_alive` in requests, `OLLAMA_KEEP_ALIVE` at start.

Go's api.Duration turns any negative value into math.MaxInt64 ("keep loaded forever");
numbers are seconds, strings go through time.ParseDuration.
"""

from __future__ import annotations

import re

# math.MaxInt64 nanoseconds: what Ollama stores for a negative keep_alive.
FOREVER_NS = 2**63 - 1

# Go's time.ParseDuration units.
_DURATION_PART = re.compile(r"(\d+(?:\.\d*)?|\.\d+)(ns|us|µs|μs|ms|s|m|h)")
_UNIT_NS = {
    "ns": 1,
    "us": 1_000,
    "µs": 1_000,
    "μs": 1_000,
    "ms": 1_000_000,
    "s": 1_000_000_000,
    "m": 60_000_000_000,
    "h": 3_600_000_000_000,
}


def parse_go_duration(text: str) -> int:
    """Nanoseconds of a Go duration string (`5m`, `1h30m`, `-1s`, `0`); ValueError if invalid.

    Negative durations come back as FOREVER_NS, as Ollama stores them.
    """
    stripped = text.strip()
    sign = -1 if stripped.startswith("-") else 1
    body = stripped.lstrip("+-")
    if body == "0":
        return 0
    total, pos = 0.0, 0
    for match in _DURATION_PART.finditer(body):
        if match.start() != pos:
            break
        total += float(match.group(1)) * _UNIT_NS[match.group(2)]
        pos = match.end()
    if pos != len(body) or not body:
        raise ValueError(f'time: invalid duration "{text}"')
    return FOREVER_NS if sign < 0 else int(total)


def parse_keep_alive_env(text: str) -> int:
    """OLLAMA_KEEP_ALIVE: a Go duration or a whole number of seconds (envconfig.KeepAlive)."""
    try:
        return parse_go_duration(text)
    except ValueError:
        try:
            seconds = int(text.strip())
        except ValueError:
            message = f"invalid keep-alive {text!r}: use a duration (5m, 30s) or seconds"
            raise ValueError(message) from None
        return FOREVER_NS if seconds < 0 else seconds * 1_000_000_000
