"""The overview's Routing row: the gateway's queue, the Ollama instances, loads, shedding.

A row of the overview rather than a dashboard of its own: queue wait and shedding are
what explain the latency and 5xx panels above it, and sharing one time range and
crosshair is what lets a reader connect them. The gateway exports these metrics only
with `gateway.routing: model-aware`, so the row exists only on those stacks.
Per-instance series carry the Ollama instance as `ollama_instance` (see `jobs.py`).
"""

from __future__ import annotations

from grafana_foundation_sdk.models import units
from llm_config.model import StackConfig

from llm_monitoring import promql
from llm_monitoring.jobs import OLLAMA_INSTANCE
from llm_monitoring.panels import GW, RANGE, RATE, PanelSpec, Query, per_minute

INSTANCE = f"{{{{{OLLAMA_INSTANCE}}}}}"  # the legend placeholder {{ollama_instance}}


def _queue_panels(config: StackConfig) -> list[PanelSpec]:
    queue = config.gateway.queue
    wait = "llm_queue_wait_seconds"
    return [
        PanelSpec(
            "Queue depth by model and priority",
            "Requests waiting in the gateways (all replicas) for a slot on an instance, by "
            "model and priority class (interactive, batch). Each replica queues at most "
            f"{queue.max_depth}; beyond that it sheds (queue_full). A queue that keeps "
            "growing means too few instances (or slots: numParallel) for the traffic.",
            [Query(promql.sum_by("model, priority", f"llm_queue_depth{GW}"),
                   "{{model}} {{priority}}")],
        ),
        PanelSpec(
            "Queue wait p50 / p95 by model and priority",
            "Time dispatched requests waited in the gateway before an instance took them "
            f"(at most the deadline, {queue.deadline_seconds:g}s unless a key says less). "
            "Shows up in time to first token; batch waits behind interactive by design.",
            [
                Query(promql.histogram_quantile(q, wait, RATE, "model, priority"),
                      f"p{round(q * 100)} {{{{model}}}} {{{{priority}}}}")
                for q in (0.5, 0.95)
            ],
            unit=units.Seconds,
        ),
        PanelSpec(
            "Requests shed per minute by reason and priority",
            "Requests refused with 503 and Retry-After before reaching Ollama. queue_full: "
            "the replica's queue was full; overloaded: the estimate said the request could "
            "not start before its deadline; deadline: it waited until its deadline; "
            "instance_lost: its instance went down before its first token and no other "
            "could start it in time; shutdown: a replica stopping. Cheaper for clients "
            "than a timeout, but each one is a request not served.",
            [Query(
                per_minute(promql.gateway_rate("llm_shed_total", RATE, "reason, priority")),
                "{{reason}} {{priority}}",
            )],
            unit=units.RequestsPerMinute,
        ),
        PanelSpec(
            "Shed ratio (of requests that needed a model)",
            "Shed / (shed + dispatched): cache hits and coalesced requests never queue, so "
            "they do not dilute it; shutdowns are left out. The red line is the "
            "LLMRequestsShed threshold (alerts.shedRatio, over "
            f"{promql.shed_window(config)}).",
            [Query(promql.shed_ratio(RATE, ""), "shed ratio")],
            unit=units.PercentUnit, red_from=config.monitoring.alerts.shed_ratio,
        ),
    ]  # fmt: skip


def _instance_panels(config: StackConfig) -> list[PanelSpec]:
    ollama = config.ollama
    return [
        PanelSpec(
            "Ollama instances up (router's view)",
            "1 when the instance answers the router (its /api/ps, polled every "
            f"{config.gateway.poll_seconds:g}s, and its requests); best view of any replica. "
            f"{ollama.instances} instance(s) deployed. A down instance gets no requests "
            "until a poll succeeds again.",
            [Query(f"max by ({OLLAMA_INSTANCE}) (llm_instance_up{GW})", INSTANCE)],
            max_value=1,
        ),
        PanelSpec(
            "Retries on another instance per minute by reason",
            "Requests sent again to another instance before any byte reached the client. "
            "busy: Ollama answered 503 (its own queue was full); connect, protocol, tls: "
            "the instance failed. Steady busy retries mean the router's slot count "
            "(numParallel) exceeds what the instances take.",
            [Query(
                per_minute(promql.gateway_rate("llm_upstream_retries_total", RATE, "reason")),
                "{{reason}}",
            )],
            unit=units.RequestsPerMinute,
        ),
        PanelSpec(
            "In-flight requests by instance and model",
            "Requests the gateways (all replicas) have running on each Ollama instance, by "
            f"model. Each instance takes at most numParallel ({ollama.num_parallel}) per "
            "loaded model from each replica; the rest wait in the queue.",
            [Query(promql.sum_by(f"{OLLAMA_INSTANCE}, model", f"llm_instance_in_flight{GW}"),
                   f"{INSTANCE} {{{{model}}}}")],
        ),
        PanelSpec(
            "Models loaded by instance",
            "Which models each instance holds in memory (its /api/ps), at most "
            f"maxLoadedModels ({ollama.max_loaded_models}) each. Short bars that come and "
            "go are models evicting each other (thrash).",
            [Query(f"max by ({OLLAMA_INSTANCE}, model) (llm_instance_model_loaded{GW})",
                   f"{INSTANCE} {{{{model}}}}")],
            kind="state-timeline", width=16,
            value_names={"0": ("not loaded", "transparent"), "1": ("loaded", "green")},
        ),
        PanelSpec(
            "Drain state by instance",
            "An admin's drain (llm-gateway drain, POST /admin/instances/<name>/drain): "
            "draining, no new request is placed there and its in-flight ones finish; "
            "drained, nothing left in flight. Shared by every replica through Redis.",
            [Query(f"max by ({OLLAMA_INSTANCE}) (llm_instance_drain_state{GW})", INSTANCE)],
            kind="state-timeline", width=24, height=6,
            value_names={
                "0": ("serving", "green"), "1": ("draining", "orange"), "2": ("drained", "blue"),
            },
        ),
    ]  # fmt: skip


def _load_panels(config: StackConfig) -> list[PanelSpec]:
    threshold = config.monitoring.alerts.model_loads_per_hour
    return [
        PanelSpec(
            "Model loads per hour by instance",
            "Loads per instance and model, and per instance over all models (the "
            f"LLMModelThrash alert fires above {threshold} an hour: the red line). Each "
            "load is a cold start of seconds to minutes for the requests behind it. Thrash "
            "is what least_conn causes; the model-aware router keeps it to models that "
            "do not fit together, which more memory, fewer models or maxLoadedModels fix.",
            [
                Query(
                    f"{promql.model_loads(RATE, f'{OLLAMA_INSTANCE}, model', per_second=True)}"
                    " * 3600",
                    f"{INSTANCE} {{{{model}}}}",
                ),
                Query(
                    f"{promql.model_loads(RATE, OLLAMA_INSTANCE, per_second=True)} * 3600",
                    f"{INSTANCE} all models",
                ),
            ],
            width=12, red_from=threshold,
        ),
        PanelSpec(
            "Model loads in the selected range",
            "Loads per instance and model over the dashboard's time range, most first.",
            [Query(
                f"sort_desc({promql.model_loads(RANGE, f'{OLLAMA_INSTANCE}, model')})",
                f"{INSTANCE} {{{{model}}}}", instant=True,
            )],
            kind="bargauge", width=12,
        ),
    ]  # fmt: skip


def _affinity_panels(config: StackConfig) -> list[PanelSpec]:
    gateway = config.gateway
    state = "on" if gateway.prefix_affinity else "off in this stack (gateway.prefixAffinity)"
    return [
        PanelSpec(
            "Prefix affinity hits per minute by instance",
            "Requests sent to an instance the router estimates still holds a prefix of "
            "their prompt in its KV or prompt cache (a chat's follow-up, a shared system "
            f"prompt): there only the rest of the prompt is evaluated. Affinity is {state}; "
            "it yields to load (no instance more than "
            f"{gateway.affinity_load_share:g}x the mean). waits: requests that waited for "
            "that instance while it was busy, because a slot there was expected to free "
            "before their prefill elsewhere would end (held), and where they then went "
            "(holder, or elsewhere once waiting was no longer sooner); "
            f"{'on' if gateway.affinity_wait else 'off (gateway.affinityWait)'}.",
            [
                Query(
                    per_minute(promql.gateway_rate(
                        "llm_affinity_hits_total", RATE, f"{OLLAMA_INSTANCE}"
                    )),
                    INSTANCE,
                ),
                Query(
                    per_minute(promql.gateway_rate("llm_affinity_waits_total", RATE, "outcome")),
                    "waits {{outcome}}",
                ),
            ],
            unit=units.RequestsPerMinute, width=8,
        ),
        PanelSpec(
            "Estimated cached prompt tokens per request p50 / p95",
            "Prompt tokens the router estimates were already cached where each request "
            "went (from what it sent there, aged by each instance's cache size).",
            [
                Query(promql.histogram_quantile(q, "llm_affinity_cached_tokens", RATE, ""),
                      f"p{round(q * 100)}")
                for q in (0.5, 0.95)
            ],
            width=8,
        ),
        PanelSpec(
            "Prompt tokens per second by instance: estimated evaluated / cached",
            "Prompt tokens sent to each instance, split by the router's estimate into the "
            "part its caches held and the part it had to evaluate (prefill, the time to "
            "first token). Evaluated tokens spread evenly is balanced prefill work.",
            [Query(
                promql.gateway_rate(
                    "llm_prompt_tokens_estimated_total", RATE, f"{OLLAMA_INSTANCE}, part"
                ),
                f"{INSTANCE} {{{{part}}}}",
            )],
            width=8,
        ),
    ]  # fmt: skip


def routing_row(config: StackConfig) -> list[PanelSpec]:
    """Panels of the Routing row, five lines of 24 columns."""
    return [
        *_queue_panels(config), *_instance_panels(config), *_load_panels(config),
        *_affinity_panels(config),
    ]  # fmt: skip
