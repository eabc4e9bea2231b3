"""Prefix affinity: which instance most likely still holds a prompt's prefix in its caches.

Ollama's runner, llama-server, keeps each slot's KV cache (and a host-memory prompt
cache) and evaluates only the part of a prompt its cache does not start with. A
follow-up turn of a chat, an agent's next step or a request on a long shared system
prompt is cheap on the instance that served its prefix and pays its whole prefill
anywhere else.

The router cannot see those caches; it estimates them from what it sent where. A
prompt (its rendered text: system, messages in order, or prompt) is cut into blocks of
`BLOCK_CHARS` characters; each block's hash is chained with the one before, so it names
the whole prefix up to it (as vLLM's prefix caching names KV blocks). Each instance's
`PrefixIndex` keeps the hashes of the blocks it was sent, least recently used first, up
to what its caches hold (`capacity_tokens`, at `CHARS_PER_TOKEN`); older blocks are
forgotten as the instance's caches would have dropped them. A new runner (a load) or
an instance that went down starts empty.

A chat's first turn (`opens_conversation`) is not followed to its system prompt's
holders: it goes by load, and only its later turns follow their own history.

The choice among instances that can start a request now is `placement.py`'s: this
module only says how many leading blocks each instance likely holds.
`affinity_step.py` is its part in the dispatcher.
"""

from __future__ import annotations

import hashlib
from collections import OrderedDict, deque
from collections.abc import Iterable, Mapping
from typing import Any

from llm_gateway.vocabulary import Kind

BLOCK_CHARS = 512
# The recent requests of a model over which each instance's share of them is bounded.
SHARE_WINDOW = 60
# Roughly what a tokenizer makes of English text: ~4 characters a token.
CHARS_PER_TOKEN = 4
_SEP = "\x1e"  # between the parts of a rendered prompt


def _text(value: Any) -> str:
    if isinstance(value, str):
        return value
    if isinstance(value, list):  # OpenAI content parts
        return "".join(p.get("text", "") for p in value if isinstance(p, dict))
    return ""


def rendered(kind: Kind, data: Mapping[str, Any]) -> str:
    """The prompt as the model's template lays it out, in order (roles and contents)."""
    if kind in (Kind.CHAT, Kind.OPENAI_CHAT):
        messages = data.get("messages")
        if not isinstance(messages, list):
            return ""
        parts = [
            f"{m.get('role', '')}:{_text(m.get('content'))}"
            for m in messages
            if isinstance(m, dict)
        ]
        return _SEP.join(parts)
    if kind in (Kind.GENERATE, Kind.OPENAI_COMPLETIONS):
        parts = [str(data.get("template") or ""), str(data.get("system") or "")]
        prompt = data.get("prompt")
        parts.append(prompt if isinstance(prompt, str) else "")
        return _SEP.join(parts)
    return ""  # embeddings: no generation, nothing cached worth following


def opens_conversation(kind: Kind, data: Mapping[str, Any]) -> bool:
    """A chat's first turn: no answer of the model in its messages yet.

    Its only prefix worth following is its system prompt, shared by every conversation
    started on it, so it is placed by load instead (`affinity_step.py`): following the
    system prompt piles one prompt's conversations onto the instances that hold it, and
    there llama-server overwrites their histories. A new request takes the idle slot
    sharing the longest prefix with it (the same system prompt, another conversation's
    slot) and keeps it without saving the rest to host memory when the shared part is
    at least half of that slot (`get_available_slot`, `f_keep >= 0.5`), so that
    conversation's next turn pays its whole history again. The system prompt itself is
    soon cached everywhere (in a slot or the host prompt cache)."""
    if kind not in (Kind.CHAT, Kind.OPENAI_CHAT):
        return False
    messages = data.get("messages")
    if not isinstance(messages, list):
        return False
    return not any(isinstance(m, dict) and m.get("role") == "assistant" for m in messages)


def prompt_blocks(text: str, model: str) -> tuple[bytes, ...]:
    """Chained hashes of a rendered prompt's whole blocks (a partial last one is left
    out), for `model` (another model's caches hold nothing of it)."""
    blocks = []
    digest = hashlib.blake2b(model.encode(), digest_size=8).digest()
    for start in range(0, len(text) - BLOCK_CHARS + 1, BLOCK_CHARS):
        chunk = text[start : start + BLOCK_CHARS].encode()
        digest = hashlib.blake2b(digest + chunk, digest_size=8).digest()
        blocks.append(digest)
    return tuple(blocks)


def block_tokens(blocks: int) -> int:
    """Tokens in `blocks` blocks, roughly."""
    return blocks * BLOCK_CHARS // CHARS_PER_TOKEN


class PrefixIndex:
    """The blocks one instance was sent, least recently used first, up to a capacity."""

    __slots__ = ("_blocks", "capacity")

    def __init__(self, capacity_blocks: int) -> None:
        self.capacity = max(capacity_blocks, 1)
        self._blocks: OrderedDict[bytes, None] = OrderedDict()

    def __len__(self) -> int:
        return len(self._blocks)

    def matched(self, blocks: Iterable[bytes]) -> int:
        """How many leading blocks of a prompt this instance likely holds."""
        count = 0
        for block in blocks:
            if block not in self._blocks:
                break
            count += 1
        return count

    def sent(self, blocks: Iterable[bytes]) -> None:
        """A prompt went there: its blocks are the most recently used."""
        held = self._blocks
        for block in blocks:
            held[block] = None
            held.move_to_end(block)
        while len(held) > self.capacity:
            held.popitem(last=False)

    def clear(self) -> None:
        self._blocks.clear()


class Affinity:
    """Every instance's `PrefixIndex`, and how much load may follow a prefix.

    `capacity_tokens`: what one instance's caches hold (its slots' context and its host
    prompt cache). `load_share`: a request follows its prefix only to an instance whose
    requests in flight, with it, stay within this share above the mean (consistent
    hashing with bounded loads). `wait`: a request whose holder is busy may wait for it
    when that is its sooner start (`holds.py`).
    """

    def __init__(self, capacity_tokens: int, load_share: float, wait: bool = True) -> None:
        self.capacity_blocks = max(capacity_tokens * CHARS_PER_TOKEN // BLOCK_CHARS, 1)
        self.load_share = load_share
        self.wait = wait
        self._indexes: dict[str, PrefixIndex] = {}
        # Per instance: requests sent with an estimated hit, and estimated tokens.
        self.hits: dict[str, int] = {}
        self.cached_tokens: dict[str, int] = {}
        self.evaluated_tokens: dict[str, int] = {}
        # Per model: the instances its last SHARE_WINDOW requests went to.
        self._recent: dict[str, deque[str]] = {}

    def _index(self, instance: str) -> PrefixIndex:
        index = self._indexes.get(instance)
        if index is None:
            index = self._indexes[instance] = PrefixIndex(self.capacity_blocks)
        return index

    def matched(self, instance: str, blocks: tuple[bytes, ...]) -> int:
        index = self._indexes.get(instance)
        return 0 if index is None or not blocks else index.matched(blocks)

    def over_share(self, model: str, instance: str, serving: int) -> bool:
        """Whether `instance` took more than `load_share` x an even share of the model's
        recent requests (over `serving` instances): bounded loads over time, since
        conversations that stay where they started pile up work the in-flight count
        of a moment does not show."""
        recent = self._recent.get(model)
        if recent is None or len(recent) < SHARE_WINDOW // 2 or serving <= 1:
            return False
        return self.share(model, instance) > self.load_share / serving

    def share(self, model: str, instance: str) -> float:
        """`instance`'s share of the model's recent requests (0 before any)."""
        recent = self._recent.get(model)
        if not recent:
            return 0.0
        return sum(1 for name in recent if name == instance) / len(recent)

    def dispatched(self, model: str, instance: str) -> None:
        """A request of `model` went to `instance` (with or without a prefix)."""
        recent = self._recent.get(model)
        if recent is None:
            recent = self._recent[model] = deque(maxlen=SHARE_WINDOW)
        recent.append(instance)

    def sent(self, instance: str, blocks: tuple[bytes, ...], prompt_chars: int) -> tuple[int, int]:
        """A request went to `instance`: its estimated cached and evaluated tokens."""
        index = self._index(instance)
        cached = block_tokens(index.matched(blocks))
        index.sent(blocks)
        if cached:
            self.hits[instance] = self.hits.get(instance, 0) + 1
        evaluated = max(prompt_chars // CHARS_PER_TOKEN - cached, 0)
        self.cached_tokens[instance] = self.cached_tokens.get(instance, 0) + cached
        self.evaluated_tokens[instance] = self.evaluated_tokens.get(instance, 0) + evaluated
        return cached, evaluated

    def lost(self, instance: str) -> None:
        """The instance's caches are gone (it went down, or its model was loaded anew)."""
        index = self._indexes.get(instance)
        if index is not None:
            index.clear()

    def view(self, instance: str) -> dict[str, int]:
        index = self._indexes.get(instance)
        return {
            "blocks": 0 if index is None else len(index),
            "capacity_blocks": self.capacity_blocks,
            "hits": self.hits.get(instance, 0),
            "estimated_cached_tokens": self.cached_tokens.get(instance, 0),
            "estimated_evaluated_tokens": self.evaluated_tokens.get(instance, 0),
        }
