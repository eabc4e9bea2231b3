"""Prefix affinity as a step of the dispatcher (`dispatcher.py`).

What `placement.choose` is given for a waiter with a prompt prefix (how much of it
each instance likely holds, the load bounds); whether it waits instead for the busy
instance holding more of it (`holds.py`), and when the slot it waited for is its own;
what a dispatch and a first byte teach the estimate (`prefix.py`'s `Affinity`, which
this wraps) and the metrics.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

from llm_gateway.metrics import GatewayMetrics
from llm_gateway.routing.estimates import ModelStats
from llm_gateway.routing.fair_queue import Waiter
from llm_gateway.routing.holds import Holds
from llm_gateway.routing.instances import Instance
from llm_gateway.routing.placement import within_bound
from llm_gateway.routing.prefix import BLOCK_CHARS, Affinity


def _serving(instances: Sequence[Instance], model: str) -> int:
    """Instances that can take `model`'s requests now: the even share's denominator."""
    return sum(1 for i in instances if i.usable and i.resident(model))


class AffinityStep:
    """Prefix affinity as a step of the dispatcher: what `choose` is given for a waiter,
    whether it waits for the busy holder of its prefix instead (`holds`), and what a
    dispatch and an answer teach the estimate (and the metrics)."""

    def __init__(
        self,
        affinity: Affinity,
        metrics: GatewayMetrics,
        label: Callable[[str], str],
        holds: Holds | None = None,
    ) -> None:
        self.affinity = affinity
        self._metrics = metrics
        self._label = label
        self.holds = holds

    def settle(self, instances: Sequence[Instance]) -> None:
        if self.holds is not None:
            self.holds.settle(instances)

    def held(self) -> frozenset[Waiter]:
        return frozenset() if self.holds is None else self.holds.held()

    def ready(self, model: str, instances: Sequence[Instance]) -> list[tuple[Waiter, Instance]]:
        """Held requests whose holder has a slot free, and may take one more within
        the load bounds (else they wait on, or go elsewhere when their wait ends)."""
        if self.holds is None:
            return []
        affinity = self.affinity
        usable = [i for i in instances if i.usable]
        serving = _serving(usable, model)

        def allowed(holder: Instance) -> bool:
            return within_bound(
                holder, model, usable, affinity.load_share
            ) and not affinity.over_share(model, holder.name, serving)

        return self.holds.ready(model, instances, allowed)

    def waits(
        self, waiter: Waiter, chosen: Instance, instances: Sequence[Instance], stats: ModelStats
    ) -> bool:
        """Whether `waiter`, which could start on `chosen` now, waits instead for the busy
        instance holding more of its prefix (`holds.py` weighs it); True: it is held."""
        if self.holds is None:
            return False
        busy = self.busy_holder(waiter, instances, chosen)
        if busy is None or not self.holds.hold(waiter, *busy, stats.service):
            return False
        self._metrics.affinity_waits.labels(self._label(waiter.model), "held").inc()
        return True

    def prefill(self, model: str, evaluated_chars: int, seconds: float) -> None:
        """A request's first byte came `seconds` after its dispatch, with
        `evaluated_chars` of its prompt estimated uncached there."""
        if self.holds is not None:
            self.holds.speed.note(model, evaluated_chars, seconds)

    def choose_args(self, waiter: Waiter, instances: Sequence[Instance]) -> dict[str, Any]:
        """choose()'s prefix arguments for `waiter` (none without a prefix; a chat's
        first turn follows no prefix but still spreads by recent share)."""
        affinity, blocks, model = self.affinity, waiter.prefix, waiter.model
        if not blocks:
            return {}
        if waiter.opening:
            return {"recent": lambda instance: affinity.share(model, instance.name)}
        serving = _serving(instances, model)
        return {
            "prefix": lambda instance: affinity.matched(instance.name, blocks),
            "load_share": affinity.load_share,
            "over_share": lambda instance: affinity.over_share(model, instance.name, serving),
            "recent": lambda instance: affinity.share(model, instance.name),
        }

    def busy_holder(
        self, waiter: Waiter, instances: Sequence[Instance], chosen: Instance
    ) -> tuple[Instance, int] | None:
        """The instance likely holding more of `waiter`'s prefix than `chosen`, every slot
        of it taken, and the prompt characters it holds beyond `chosen` (`holds.py`).
        None when none holds more, or one that does was passed over with a free slot
        (a load bound: the bound decides, not the cache)."""
        blocks, model = waiter.prefix, waiter.model
        if not blocks or waiter.opening:
            return None
        affinity = self.affinity
        here = affinity.matched(chosen.name, blocks)
        holders = [
            (affinity.matched(i.name, blocks), i)
            for i in instances
            if i.usable and i.resident(model) is not None and i.name not in waiter.exclude
        ]
        best = max((m for m, _ in holders), default=0)
        if best <= here:
            return None
        top = [i for m, i in holders if m == best]
        if any(i.free_slot(model) for i in top):
            return None
        holder = min(top, key=lambda i: (i.models[model].total, i.name))
        return holder, (best - here) * BLOCK_CHARS

    def dispatched(self, instance: Instance, waiter: Waiter, loads: bool) -> int:
        """`waiter` went to `instance`: that instance's caches now likely hold its prompt.
        Returns the prompt characters estimated not cached there (0 without a prefix)."""
        self.affinity.dispatched(waiter.model, instance.name)
        if self.holds is not None:
            ended = self.holds.placed(waiter, instance.name)
            if ended is not None:
                self._metrics.affinity_waits.labels(self._label(waiter.model), ended).inc()
        if not waiter.prefix:
            return 0
        if loads:
            self.affinity.lost(instance.name)  # a new runner starts with empty caches
        matched = self.affinity.matched(instance.name, waiter.prefix)
        cached, evaluated = self.affinity.sent(instance.name, waiter.prefix, waiter.prompt_chars)
        metrics = self._metrics
        model = self._label(waiter.model)
        if cached:
            metrics.affinity_hits.labels(instance.name, model).inc()
        metrics.affinity_cached_tokens.labels(model).observe(cached)
        metrics.prompt_tokens_estimated.labels(instance.name, "cached").inc(cached)
        metrics.prompt_tokens_estimated.labels(instance.name, "evaluated").inc(evaluated)
        return max(waiter.prompt_chars - matched * BLOCK_CHARS, 0)
