"""What the emulated model "says": deterministic text, tokens, tool calls and embeddings.

Output is a function of a seed. The seed is a hash of everything in the request that
changes a real model's output when sampling is deterministic (temperature 0 or a fixed
`seed` option), and random otherwise, so that caching policy can be tested.
"""

from __future__ import annotations

import hashlib
import math
import random
import zlib
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from functools import lru_cache
from typing import Any

import orjson

_WORDS = (  # noqa: SIM905 - a word list reads best as text
    "the of and to in is that it was for on are as with his they at be this from have or "
    "by one had not but what all were when we there can an your which their said if do will "
    "each about how up out them then she many some so these would other into has more her "
    "two like him see time could no make than first been its who now people my made over did "
    "down only way find use may water long little very after words called just where most "
    "know get through back much before go good new write our used me man too any day same "
    "right look think also around another came come work three word must because does part "
    "even place well such here take why things help put years different away again off went "
    "old number great tell men say small every found still between name should home big give "
    "air line set own under read last never us left end along while might next sound below "
    "saw something thought both few those always looked show large often together asked "
    "house world going want school important until form food keep children feet land side "
    "without boy once animals life enough took sometimes four head above kind began almost "
    "live page got earth need far hand high year mother light parts country father let night "
    "following picture being study second eyes soon times story boys since white days ever "
    "paper hard near sentence better best across during today others however sure means knew "
    "river model token stream cache gateway llama ollama emulator answer"
).split()

# A runaway num_predict must not exhaust the emulator's memory.
MAX_TOKENS = 65536

# Llama-3-style template tokens around the prompt in `context` (ids are only plausible).
_HEADER = (128006, 882, 128007, 271)
_ASSISTANT = (128009, 128006, 78191, 128007, 271)


def is_deterministic(options: Mapping[str, Any]) -> bool:
    temperature = options.get("temperature")
    numeric = isinstance(temperature, int | float) and not isinstance(temperature, bool)
    if numeric and temperature == 0:
        return True
    return options.get("seed") is not None


def _normalized(value: Any) -> Any:
    # 0 and 0.0 are the same option to Ollama (both decode to the same float32).
    if isinstance(value, int) and not isinstance(value, bool):
        return float(value)
    if isinstance(value, dict):
        return {k: _normalized(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_normalized(v) for v in value]
    return value


def request_seed(material: Mapping[str, Any], deterministic: bool) -> int:
    """A seed from the output-changing parts of a request, or a random one."""
    if not deterministic:
        return random.getrandbits(64)
    encoded = orjson.dumps(_normalized(dict(material)), option=orjson.OPT_SORT_KEYS)
    return int.from_bytes(hashlib.sha256(encoded).digest()[:8], "big")


def count_prompt_tokens(texts: Iterable[str], messages: int = 1) -> int:
    """Roughly what a tokenizer plus chat template would count: words + per-message framing."""
    words = sum(len(text.split()) for text in texts)
    return words + 4 * max(messages, 1) + 1


def prompt_tokens(messages: Iterable[tuple[str, str]]) -> list[str]:
    """The prompt's tokens as a chat template renders (role, text) messages.

    Each message is a role header, its words and three closing tokens (4 of framing, as
    `count_prompt_tokens` counts), then one assistant header opens the answer. The answer
    is cached after that header, so the next turn, which renders this answer as an
    assistant message, matches the cache through it (as llama-server's slots do).
    """
    tokens: list[str] = []
    count = 0
    for role, text in messages:
        count += 1
        tokens.append(f"<|{role}|>")
        tokens.extend(text.split())
        tokens.extend(("<|eot|>", "\n", "\n"))
    if not count:
        tokens.extend(("<|user|>", "<|eot|>", "\n", "\n"))
    tokens.append("<|assistant|>")
    return tokens


def context_ids(prompt: str, response: str) -> list[int]:
    ids = list(_HEADER)
    ids.extend(zlib.crc32(w.encode()) % 128000 for w in prompt.split())
    ids.extend(_ASSISTANT)
    ids.extend(zlib.crc32(w.encode()) % 128000 for w in response.split())
    return ids


@dataclass
class Output:
    """One generation: the content tokens, thinking tokens and tool calls, in order."""

    pieces: list[str]
    thinking: list[str] = field(default_factory=list)
    tool_calls: list[dict[str, Any]] = field(default_factory=list)
    done_reason: str = "stop"

    @property
    def text(self) -> str:
        return "".join(self.pieces)

    @property
    def eval_count(self) -> int:
        return len(self.pieces) + len(self.thinking) + len(self.tool_calls)


def _words(rng: random.Random, n: int) -> list[str]:
    chosen = rng.choices(_WORDS, k=n)
    return [w if i == 0 else " " + w for i, w in enumerate(chosen)]


def _split(text: str, n: int) -> list[str]:
    """`text` in `n` consecutive non-empty pieces (fewer if the text is shorter)."""
    n = min(n, len(text))
    if n <= 0:
        return []
    size, extra = divmod(len(text), n)
    pieces, start = [], 0
    for i in range(n):
        end = start + size + (1 if i < extra else 0)
        pieces.append(text[start:end])
        start = end
    return pieces


def _value_for(schema: Any, rng: random.Random, depth: int = 0) -> Any:
    if not isinstance(schema, dict) or depth > 4:
        return "".join(_words(rng, 3))
    if isinstance(schema.get("enum"), list) and schema["enum"]:
        return schema["enum"][0]
    kind = schema.get("type")
    if isinstance(kind, list):
        kind = next((k for k in kind if k != "null"), "string")
    if kind == "integer":
        return rng.randint(1, 100)
    if kind == "number":
        return round(rng.uniform(0, 100), 2)
    if kind == "boolean":
        return True
    if kind == "array":
        return [_value_for(schema.get("items"), rng, depth + 1)]
    if kind == "object" or "properties" in schema:
        props = schema.get("properties")
        if not isinstance(props, dict):
            return {}
        return {name: _value_for(sub, rng, depth + 1) for name, sub in props.items()}
    return "".join(_words(rng, 3))


def _json_text(fmt: Any, rng: random.Random, tokens: int) -> str:
    if isinstance(fmt, dict) and (fmt.get("properties") or fmt.get("type") not in (None, "object")):
        value = _value_for(fmt, rng)
    else:
        value = {"response": "".join(_words(rng, max(tokens, 1)))}
    return orjson.dumps(value).decode()


def _thinks(think: Any) -> bool:
    return think is True or think in ("high", "medium", "low")


def _tool_call(tools: list[Any], rng: random.Random) -> dict[str, Any] | None:
    for tool in tools:
        function = tool.get("function") if isinstance(tool, dict) else None
        if isinstance(function, dict) and isinstance(function.get("name"), str):
            params = function.get("parameters")
            args = _value_for(params, rng) if isinstance(params, dict) else {}
            if not isinstance(args, dict):
                args = {}
            call_id = "call_" + "".join(rng.choices("abcdefghijklmnopqrstuvwxyz0123456789", k=8))
            return {
                "id": call_id,
                "function": {"index": 0, "name": function["name"], "arguments": args},
            }
    return None


def generate(
    seed: int,
    tokens: int,
    options: Mapping[str, Any],
    fmt: Any = None,
    think: Any = None,
    tools: list[Any] | None = None,
) -> Output:
    """The output for one request. `tools` is given only when the model should call one.

    `tokens` words, or exactly num_predict when the request sets it (>= 0): the model
    then stops at the limit, done_reason "length". Negative num_predict (-1: until a
    stop) leaves `tokens`.
    """
    rng = random.Random(seed)  # noqa: S311 - reproducible text, not secrets
    n = tokens
    done_reason = "stop"
    num_predict: Any = options.get("num_predict")
    numeric = isinstance(num_predict, int | float) and not isinstance(num_predict, bool)
    if numeric and num_predict >= 0:
        n, done_reason = min(int(num_predict), MAX_TOKENS), "length"
    thinking = _words(rng, max(1, n // 2)) if _thinks(think) and n > 0 else []
    if tools:
        call = _tool_call(tools, rng)
        if call is not None:
            return Output(pieces=[], thinking=thinking, tool_calls=[call], done_reason=done_reason)
    if fmt == "json" or isinstance(fmt, dict):
        pieces = _split(_json_text(fmt, rng, n), n) if n > 0 else []
    else:
        pieces = _words(rng, n)
    return Output(pieces=pieces, thinking=thinking, done_reason=done_reason)


@lru_cache(maxsize=4096)
def _unit_vector(model: str, text: str, dimensions: int) -> tuple[float, ...]:
    seed = hashlib.sha256(f"{model}\0{text}".encode()).digest()
    rng = random.Random(seed)  # noqa: S311 - reproducible vectors, not secrets
    raw = [rng.random() - 0.5 for _ in range(dimensions)]
    norm = math.sqrt(sum(v * v for v in raw)) or 1.0
    # Ollama's vectors are float32: eight decimals is about their precision.
    return tuple(round(v / norm, 8) for v in raw)


def embedding(model: str, text: str, dimensions: int) -> list[float]:
    """A unit vector that depends only on (model, text): equal inputs embed equally."""
    return list(_unit_vector(model, text, dimensions))
