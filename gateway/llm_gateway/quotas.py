"""What a request costs in tokens: its estimate at admission, its real count at the end.

A request is charged an estimate at admission (the prompt's length in characters / 4,
plus its `num_predict` / `max_tokens`, else `GATEWAY_QUOTA_ESTIMATE_TOKENS`), and
settled with what Ollama reported (`prompt_eval_count` + `eval_count`, or `usage` on
/v1). A stream that ends early (client gone, upstream failure) is settled with what
it had produced: its content chunks (Ollama sends one token per chunk) and the
prompt estimate, since Ollama reports the prompt's count only in the final chunk.
Admission refuses only what the remaining quota cannot cover: the prompt, and the
completion cap when the request gives one (`Estimate.needed`), never the guess.
"""

from __future__ import annotations

import functools
import time
from dataclasses import dataclass
from typing import Any

import orjson

from llm_gateway.vocabulary import Form, Kind

# Characters per token of an average English prompt: good enough for an estimate that
# the real count settles anyway.
_CHARS_PER_TOKEN = 4


@dataclass(frozen=True, slots=True)
class UsageTarget:
    """Where one request's usage is counted: key name, model label, UTC day."""

    key_name: str
    model_label: str
    day: str  # YYYYMMDD


@dataclass(frozen=True, slots=True)
class Charge:
    """What admission took from a key's token quotas, to settle with the real count."""

    key_name: str
    day: str
    tokens: int
    token_interval: float  # ms per token of the per-minute quota; 0: none
    per_day: int  # 0: no daily quota


@dataclass(frozen=True, slots=True)
class Estimate:
    prompt: int
    completion: int
    # The completion is the request's own cap (num_predict / max_tokens), not a guess.
    capped: bool = False

    @property
    def total(self) -> int:
        return self.prompt + self.completion

    @property
    def needed(self) -> int:
        """What must fit a quota for the request to go: the prompt and a completion cap
        the request gave; a guessed completion is no reason to refuse (the real count
        settles it, and a request that runs over leaves a debt the next ones wait out)."""
        return self.prompt + (self.completion if self.capped else min(1, self.completion))


def utc_day(now_s: float | None = None) -> str:
    """`20261130`: the UTC day of `now_s` (default: now)."""
    # Unix time has exactly 86400 s a day; formatting once a day keeps strftime off
    # every request.
    return _day_text(int((time.time() if now_s is None else now_s) // 86400))


@functools.lru_cache(maxsize=4)
def _day_text(day: int) -> str:
    return time.strftime("%Y%m%d", time.gmtime(day * 86400))


def seconds_to_utc_midnight(now_s: float | None = None) -> float:
    now = time.time() if now_s is None else now_s
    return 86400 - now % 86400


def go_duration(seconds: float) -> str:
    """`1m30s`, `2.5s`, `120ms`: how OpenAI's `x-ratelimit-reset-*` headers say it."""
    if seconds < 1:
        return f"{max(0, round(seconds * 1000))}ms"
    minutes, rest = divmod(seconds, 60)
    text = f"{rest:.3f}".rstrip("0").rstrip(".") + "s"
    return f"{int(minutes)}m{text}" if minutes else text


def _text_length(value: Any) -> int:
    if isinstance(value, str):
        return len(value)
    if isinstance(value, list):
        return sum(_text_length(item) for item in value)
    if isinstance(value, dict):
        return sum(_text_length(value.get(k)) for k in ("content", "text", "input"))
    return 0


def estimate(kind: Kind, data: dict[str, Any], default_completion: int) -> Estimate:
    """The tokens a request may cost, before Ollama says."""
    chars = sum(
        _text_length(data.get(name)) for name in ("prompt", "messages", "system", "input", "suffix")
    )
    prompt = max(1, chars // _CHARS_PER_TOKEN)
    if kind.is_embedding:
        return Estimate(prompt, 0)
    options = data.get("options")
    asked: Any = options.get("num_predict") if isinstance(options, dict) else None
    if asked is None:
        asked = data.get("max_completion_tokens", data.get("max_tokens"))
    capped = isinstance(asked, int) and not isinstance(asked, bool) and asked > 0
    return Estimate(prompt, asked if capped else default_completion, capped)


def partial_completion(form: Form, body: bytes) -> int:
    """Tokens an unfinished stream carried: its complete content chunks.

    The body is the upstream's, so anything may be in it (an HTML error page, a cut
    line, binary): what does not parse as a chunk counts nothing, and never raises.
    """
    if form is Form.NDJSON:
        cut = body.rfind(b"\n")
        chunks = _objects(body[: cut + 1].split(b"\n")) if cut >= 0 else []
        return sum(1 for line in chunks if not line.get("done") and "error" not in line)
    if form is Form.SSE:
        cut = body.rfind(b"\n\n")
        blocks = body[: cut + 2].split(b"\n\n") if cut >= 0 else []
        payloads = [b.strip()[5:] for b in blocks if b.strip().startswith(b"data:")]
        events = _objects(payloads)
        return sum(1 for e in events if any(_has_content(c) for c in _list(e.get("choices"))))
    return 0


def _objects(lines: list[bytes]) -> list[dict[str, Any]]:
    objects = []
    for line in lines:
        if not line.strip():
            continue
        try:
            value = orjson.loads(line)
        except orjson.JSONDecodeError:
            continue
        if isinstance(value, dict):
            objects.append(value)
    return objects


def _list(value: Any) -> list[Any]:
    return value if isinstance(value, list) else []


def _has_content(choice: Any) -> bool:
    if not isinstance(choice, dict):
        return False
    delta = choice.get("delta") or {}
    return bool(choice.get("text") or (isinstance(delta, dict) and delta.get("content")))
