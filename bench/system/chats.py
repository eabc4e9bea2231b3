"""W5, multi-turn chats: what prefix affinity is for, and their seeded plan.

Three instances serve one model with two llama-server slots each (NUM_PARALLEL 2),
each keeping its slots' KV caches and llama-server's host-memory prompt cache (the
emulator's `prompt_cache.py`). Conversations arrive as a Poisson process; each has
6-10 turns on one of a few long shared system prompts (1,000-2,000 tokens), its
history growing by each question and each answer as the client received it, and a
think time between an answer and the next question. A follow-up turn is cheap only
where its history is cached.

The model: qwen2.5:32b run at 70B-class speeds (800 prompt tokens/s, 15 tokens/s of
decoding for one slot alone), so a miss on a 3,000-token history costs ~4 s of
prefill and a hit ~0.1 s. The rate is 65% of what the instances serve when every
follow-up finds its history cached (`capacity()`), so routing that misses works
harder for the same traffic.
"""

from __future__ import annotations

import random
from dataclasses import dataclass

MODEL = "qwen2.5:32b"
INSTANCES = 3
NUM_PARALLEL = 2
CONTEXT_LENGTH = 8192
PROMPT_TPS = 800.0
DECODE_TPS = 15.0
NUM_PREDICT = 128
# The emulator's --decode-slowdown: two busy slots of a model each run 1/1.15 as fast.
SLOWDOWN = 0.15
LOAD = 0.65
# System prompts shared by many conversations (words = tokens), and how popular each is.
TEMPLATE_WORDS = (2000, 1600, 1300, 1000)
TEMPLATE_WEIGHTS = (0.4, 0.3, 0.2, 0.1)
TURNS = (6, 10)
QUESTION_WORDS = (20, 80)
THINK_SECONDS = (10.0, 40.0)
# Framing tokens the emulator counts per message (see llm_emulator.generate).
_FRAMING = 4


@dataclass(frozen=True)
class Turn:
    question: str
    think: float  # simulated seconds between the previous answer and this question


@dataclass(frozen=True)
class Conversation:
    index: int
    at: float  # simulated seconds after the start: the first question
    template: int
    turns: tuple[Turn, ...]


@dataclass(frozen=True)
class ChatPlan:
    templates: tuple[str, ...]
    conversations: tuple[Conversation, ...]
    rate: float  # conversations per simulated second
    capacity: float  # turns per simulated second with every history cached

    @property
    def turns(self) -> int:
        return sum(len(c.turns) for c in self.conversations)


def _mean(bounds: tuple[float, float]) -> float:
    return (bounds[0] + bounds[1]) / 2


def turn_service(evaluated_tokens: float) -> float:
    """Simulated seconds one turn holds a slot alone: its evaluated prompt, its answer."""
    return evaluated_tokens / PROMPT_TPS + NUM_PREDICT / DECODE_TPS


def capacity() -> float:
    """Turns per simulated second with every history cached where it is served.

    A cached follow-up evaluates its question and a few framing tokens; the two slots
    of an instance together serve 2 / (1 + SLOWDOWN) slots' worth of work.
    """
    evaluated = _mean(QUESTION_WORDS) + 2 * _FRAMING + 1
    per_instance = NUM_PARALLEL / (1 + SLOWDOWN * (NUM_PARALLEL - 1))
    return INSTANCES * per_instance / turn_service(evaluated)


def _words(rng: random.Random, prefix: str, count: int) -> str:
    return " ".join(f"{prefix}{rng.randrange(50_000)}" for _ in range(count))


def make_chat_plan(seed: int, duration: float) -> ChatPlan:
    """Conversations arriving over `duration` simulated seconds: the same in every mode."""
    rng = random.Random(f"{seed}:W5")
    templates = tuple(_words(rng, f"t{i}_", n) for i, n in enumerate(TEMPLATE_WORDS))
    cap = capacity()
    rate = LOAD * cap / _mean(TURNS)
    conversations = []
    t = rng.expovariate(rate)
    while t < duration:
        index = len(conversations)
        template = rng.choices(range(len(templates)), TEMPLATE_WEIGHTS)[0]
        turns = tuple(
            Turn(
                _words(rng, f"c{index}q{n}_", rng.randint(*QUESTION_WORDS)),
                0.0 if n == 0 else rng.uniform(*THINK_SECONDS),
            )
            for n in range(rng.randint(*TURNS))
        )
        conversations.append(Conversation(index, t, template, turns))
        t += rng.expovariate(rate)
    return ChatPlan(templates, tuple(conversations), rate, cap)


def smoke_plan(plan: ChatPlan, conversations: int) -> ChatPlan:
    """The first few conversations, each cut to three turns: a short check."""
    kept = tuple(
        Conversation(c.index, c.at, c.template, c.turns[:3])
        for c in plan.conversations[:conversations]
    )
    return ChatPlan(plan.templates, kept, plan.rate, plan.capacity)


def pinned_instance(conversation: Conversation) -> int:
    """The ideal's instance for a conversation: its every turn goes there."""
    return conversation.index % INSTANCES
