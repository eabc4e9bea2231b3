"""What the router shows: the admin snapshot, the per-instance gauges, the joined /api/ps.

Read-only views over the dispatcher's instances, queue and measurements; nothing
here decides anything.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from typing import Any

import orjson

from llm_gateway.metrics import GatewayMetrics
from llm_gateway.routing.drains import Drain, state
from llm_gateway.routing.estimates import ModelStats
from llm_gateway.routing.fair_queue import FairQueue
from llm_gateway.routing.holds import Holds
from llm_gateway.routing.instances import Instance, State
from llm_gateway.routing.prefix import Affinity
from llm_gateway.vocabulary import PRIORITIES


def snapshot(
    instances: Sequence[Instance],
    queue: FairQueue,
    stats: Mapping[str, ModelStats],
    drains: Mapping[str, Drain],
    now: float,
    affinity: Affinity | None = None,
    holds: Holds | None = None,
) -> dict[str, Any]:
    """GET /admin/queue: each model's queue and measurements, each instance's state
    (with prefix affinity, what the router estimates its caches hold, and how many
    queued requests wait for it because it holds their prefix)."""
    queues: dict[str, dict[str, Any]] = {}
    for model in queue.models():
        oldest = queue.oldest(model)
        measured = stats.get(model) or ModelStats()
        queues[model] = {
            "depth": {p: queue.depth(model, i) for i, p in enumerate(PRIORITIES)},
            "oldest_wait_seconds": round(now - oldest, 3) if oldest is not None else 0,
            "service_seconds": round(measured.service, 3),
            "load_seconds": round(measured.load, 3),
        }
        per_char = holds.speed.per_char(model) if holds is not None else None
        if per_char is not None:  # what a wait for a prefix's holder is weighed with
            queues[model]["prefill_seconds_per_1000_chars"] = round(per_char * 1000, 4)
    return {
        "routing": "model-aware",
        "queued": len(queue),
        "max_depth": queue.max_depth,
        # Burst credit (`fair_queue.py`): what keys under their share have banked.
        "burst": queue.burst,
        "credit": queue.credits(),
        "prefix_affinity": affinity is not None,
        "queues": queues,
        "instances": [
            {
                "name": i.name,
                "up": i.up,
                "state": state(i, drains.get(i.name)),
                "in_flight": i.in_flight,
                "reserved_for": i.reserved_for,
                "models": {
                    r.model: {
                        "state": r.state.value,
                        "in_flight": r.in_flight,
                        "size": r.size,
                        "context_length": r.context_length,
                        "expires_at": r.expires_at,
                    }
                    for r in i.models.values()
                },
                "loads_started": dict(i.loads),
                **({"affinity": affinity.view(i.name)} if affinity is not None else {}),
                **({"waiting_for_prefix": holds.on(i.name)} if holds is not None else {}),
            }
            for i in instances
        ],
    }


class InstanceGauges:
    """The per-instance gauges, set from the instances after every change."""

    def __init__(self, metrics: GatewayMetrics, label: Callable[[str], str]) -> None:
        self._metrics = metrics
        self._label = label
        # (instance, model label) series set last time, so vanished ones go to 0.
        self._series: set[tuple[str, str]] = set()

    def update(self, instances: Sequence[Instance], drains: Mapping[str, Drain]) -> None:
        metrics = self._metrics
        series: dict[tuple[str, str], tuple[int, int]] = {}
        for instance in instances:
            metrics.instance_up.labels(instance.name).set(1 if instance.up else 0)
            drained = 0 if instance.name not in drains else 1 if instance.everywhere else 2
            metrics.instance_drain_state.labels(instance.name).set(drained)
            for residency in instance.models.values():
                shape = (instance.name, self._label(residency.model))
                flying, loaded = series.get(shape, (0, 0))
                resident = int(residency.state is State.LOADED)
                series[shape] = (flying + residency.in_flight, max(loaded, resident))
        # Series of models no longer there go to 0 rather than keep their last value.
        for shape in self._series - series.keys():
            series[shape] = (0, 0)
        for (instance_name, label), (flying, loaded) in series.items():
            metrics.instance_in_flight.labels(instance_name, label).set(flying)
            metrics.instance_model_loaded.labels(instance_name, label).set(loaded)
        self._series = set(series)


def instances_report(instances: Sequence[Instance], drains: Mapping[str, Drain]) -> list[Any]:
    """GET /admin/instances: each instance's state, drain, in-flight requests, models."""
    return [
        {
            "name": i.name,
            "url": i.url,
            "state": state(i, drains.get(i.name)),
            "drain": drain.to_json() if (drain := drains.get(i.name)) else None,
            "in_flight": i.everywhere,
            "in_flight_here": i.in_flight,
            "models": {
                r.model: {"state": r.state.value, "in_flight": r.total} for r in i.models.values()
            },
        }
        for i in instances
    ]


def joined_ps(instances: Sequence[Instance]) -> bytes:
    """/api/ps for the whole pool: every instance's models, as each last reported them
    (a model loaded on two instances is listed twice: it holds two GPUs)."""
    models = [entry for instance in instances if instance.up for entry in instance.ps]
    return orjson.dumps({"models": models})
