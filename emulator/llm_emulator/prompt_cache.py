"""llama-server's prompt caches for one loaded model: its slots' KV caches and host RAM.

Ollama runs llama.cpp's `llama-server` with `-np <NUM_PARALLEL>` and sends every
completion with `"cache_prompt": true` (ollama `llm/llama_server.go`). llama-server
(`tools/server/server-context.cpp`, `get_available_slot`) then:

- keeps each slot's tokens (the last prompt and the tokens generated after it) when
  the request ends;
- gives a new request the idle slot whose cached tokens share the longest common
  prefix with its prompt, as a fraction of the prompt, if that fraction is above
  `--slot-prompt-similarity` (default 0.1); otherwise the least recently used slot;
- evaluates only the prompt's tokens after that common prefix, and at least one
  (the last token is always evaluated again to get its logits);
- with a host-memory prompt cache (`--cache-ram`, 8192 MiB by default; Ollama passes
  none): when a slot is taken by LRU, or keeps less than half of its tokens, its
  tokens are saved in host memory (oldest entries dropped past the size), and the
  entry that best matches the prompt is loaded into the slot if it matches more.

Timings come back as `cache_n` (the prefix reused) and `prompt_n` (the tokens
evaluated); Ollama reports `prompt_eval_count = cache_n + prompt_n`.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Sequence
from dataclasses import dataclass, field

# common.h slot_prompt_similarity.
DEFAULT_SIMILARITY = 0.1
# get_available_slot: save a slot's tokens when it keeps less than this share of them.
_KEEP_SHARE = 0.5


def common_prefix(a: Sequence[str], b: Sequence[str]) -> int:
    """Length of the longest common prefix of two token sequences."""
    n = min(len(a), len(b))
    i = 0
    # Compare in chunks first: whole slices compare in C.
    step = 256
    while i + step <= n and a[i : i + step] == b[i : i + step]:
        i += step
    while i < n and a[i] == b[i]:
        i += 1
    return i


@dataclass(eq=False)
class Slot:
    """One llama-server slot: its KV cache's tokens and when it was last used."""

    number: int
    tokens: list[str] = field(default_factory=list)
    last_used: int = -1
    busy: bool = False


@dataclass(frozen=True)
class Taken:
    """The slot a request was given and how much of its prompt was cached there."""

    slot: Slot
    cached: int  # cache_n
    evaluated: int  # prompt_n
    from_host: bool = False


class PromptCaches:
    """The slots of one llama-server and its host-memory prompt cache.

    `slots` 0 means unlimited: a slot is added whenever every slot is busy.
    `host_tokens` is the host cache's size in tokens (0: no host cache).
    """

    __slots__ = ("_host", "_host_used", "_tick", "context", "host_tokens", "similarity", "slots")

    def __init__(
        self,
        slots: int,
        context: int,
        similarity: float = DEFAULT_SIMILARITY,
        host_tokens: int = 0,
    ) -> None:
        self.slots = [Slot(i) for i in range(slots)]
        self.context = context
        self.similarity = similarity
        self.host_tokens = host_tokens
        self._host: deque[list[str]] = deque()
        self._host_used = 0
        self._tick = 0

    def take(self, prompt: Sequence[str]) -> Taken:
        """get_available_slot + launch: the slot for `prompt`, marked busy."""
        idle = [s for s in self.slots if not s.busy]
        if not idle:
            slot = Slot(len(self.slots))
            self.slots.append(slot)
            idle = [slot]
        chosen, save = self._by_similarity(idle, prompt)
        if chosen is None:
            chosen = min(idle, key=lambda s: s.last_used)
            save = True
        from_host = False
        if save and self.host_tokens and chosen.tokens:
            from_host = self._swap_with_host(chosen, prompt)
        cached = common_prefix(chosen.tokens, prompt)
        if cached >= len(prompt):
            cached = max(len(prompt) - 1, 0)  # the last token is evaluated for its logits
        chosen.tokens = list(prompt[: self.context])
        chosen.busy = True
        return Taken(chosen, cached, len(prompt) - cached, from_host)

    def _by_similarity(self, idle: list[Slot], prompt: Sequence[str]) -> tuple[Slot | None, bool]:
        if not self.similarity or not prompt:
            return None, False
        best: Slot | None = None
        best_sim = 0.0
        best_lcp = 0
        for slot in idle:
            if not slot.tokens:
                continue
            lcp = common_prefix(slot.tokens, prompt)
            sim = lcp / len(prompt)
            if sim > best_sim and sim > self.similarity:
                best, best_sim, best_lcp = slot, sim, lcp
        if best is None:
            return None, False
        return best, best_lcp / len(best.tokens) < _KEEP_SHARE

    def _swap_with_host(self, slot: Slot, prompt: Sequence[str]) -> bool:
        """prompt_save then prompt_load: True when a host entry replaced the slot's tokens."""
        self._save(slot.tokens)
        current = common_prefix(slot.tokens, prompt)
        best_index, best = -1, current
        for index, entry in enumerate(self._host):
            lcp = common_prefix(entry, prompt)
            if lcp > best:
                best_index, best = index, lcp
        if best_index < 0:
            return False
        slot.tokens = list(self._host[best_index])
        return True

    def _save(self, tokens: list[str]) -> None:
        size = len(tokens)
        if size > self.host_tokens:
            return  # larger than the whole cache: dropped
        # An entry that is a prefix of the new one holds nothing more: replace it.
        kept = [e for e in self._host if not (len(e) <= size and tokens[: len(e)] == e)]
        if any(len(e) >= size and e[:size] == tokens for e in kept):
            self._host = deque(kept)
            self._host_used = sum(len(e) for e in kept)
            return
        kept.append(list(tokens))
        self._host = deque(kept)
        self._host_used = sum(len(e) for e in kept)
        while self._host_used > self.host_tokens:
            self._host_used -= len(self._host.popleft())

    def done(self, taken: Taken, generated: Sequence[str]) -> None:
        """The request ended: its slot keeps the prompt and the generated tokens."""
        slot = taken.slot
        room = self.context - len(slot.tokens)
        if room > 0:
            slot.tokens.extend(generated[:room])
        slot.busy = False
        self._tick += 1
        slot.last_used = self._tick

    def view(self) -> dict[str, object]:
        return {
            "slots": [{"tokens": len(s.tokens), "busy": s.busy} for s in self.slots],
            "host_entries": len(self._host),
            "host_tokens": self._host_used,
        }
