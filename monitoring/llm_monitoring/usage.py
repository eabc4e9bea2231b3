"""The Usage dashboard: tokens per key and model, and the token quotas that refused keys.

A dashboard of its own, not an overview row: it answers who uses how much (for quotas,
chargeback, a key that suddenly burns tokens) over days or weeks, a different reader
and a different time range than the operational overview. Every stack has it (usage is
counted whatever the routing). Keys are key *names* from the keys file, never keys.
"""

from __future__ import annotations

from grafana_foundation_sdk.builders import dashboard as dashboard_builders
from grafana_foundation_sdk.models import units
from llm_config.model import StackConfig

from llm_monitoring import promql
from llm_monitoring.panels import (
    RANGE,
    RATE,
    PanelSpec,
    Query,
    Row,
    build_dashboard,
    per_minute,
)

TOKENS = "llm_key_tokens_total"
QUOTA_LIMITS = 'limit=~"tpm|tpd"'
TOP_KEYS = 10


def usage_uid(config: StackConfig) -> str:
    return f"{config.name_prefix}-usage"


def usage_title(config: StackConfig) -> str:
    return f"LLM usage per key ({config.name_prefix})"


def _in_range(metric: str, by: str, *matchers: str) -> str:
    return promql.gateway_increase(metric, RANGE, by, *matchers)


def _totals() -> list[PanelSpec]:
    return [
        PanelSpec(
            "Tokens used in the selected range",
            "Prompt and completion tokens of every key over the dashboard's time range.",
            [Query(_in_range(TOKENS, ""), instant=True)],
            kind="stat", width=8, height=4,
        ),
        PanelSpec(
            "Keys that used tokens in the selected range",
            "Key names with at least one token over the dashboard's time range.",
            [Query(f"count({_in_range(TOKENS, 'key')} > 0)", instant=True)],
            kind="stat", width=8, height=4,
        ),
        PanelSpec(
            "Token-quota refusals in the selected range",
            "Requests refused with 429 because a key's tokensPerMinute (tpm) or "
            "tokensPerDay (tpd) quota was used up.",
            [Query(_in_range("llm_rate_limited_total", "", QUOTA_LIMITS), instant=True)],
            kind="stat", width=8, height=4,
        ),
    ]  # fmt: skip


def _tokens() -> list[PanelSpec]:
    return [
        PanelSpec(
            "Tokens per minute by key and model",
            "Prompt + completion tokens per minute, stacked: the top of the stack is the "
            "whole stack's usage. Models the upstream does not list count as `other`.",
            [Query(per_minute(promql.gateway_rate(TOKENS, RATE, "key, model")),
                   "{{key}} {{model}}")],
            width=16, stacked=True,
        ),
        PanelSpec(
            f"Top {TOP_KEYS} keys by tokens in the selected range",
            "Prompt + completion tokens per key over the dashboard's time range, most first.",
            [Query(f"sort_desc(topk({TOP_KEYS}, {_in_range(TOKENS, 'key')}))", "{{key}}",
                   instant=True)],
            kind="bargauge",
        ),
        PanelSpec(
            "Prompt vs completion tokens per minute",
            "Prompt tokens (evaluated, prompt_eval_count) and completion tokens (generated, "
            "eval_count) of all keys. Long prompts cost GPU time before the first token.",
            [Query(per_minute(promql.gateway_rate(TOKENS, RATE, "type")), "{{type}}")],
            width=12,
        ),
        PanelSpec(
            "Token-quota refusals per minute by key",
            "Requests refused with 429 by a key's token quota: tpm (tokensPerMinute) or "
            "tpd (tokensPerDay). Request-rate and concurrency refusals are on the overview.",
            [Query(
                per_minute(promql.gateway_rate(
                    "llm_rate_limited_total", RATE, "key, limit", QUOTA_LIMITS
                )),
                "{{key}} ({{limit}})",
            )],
            width=12, unit=units.RequestsPerMinute,
        ),
    ]  # fmt: skip


def usage_dashboard(config: StackConfig) -> dashboard_builders.Dashboard:
    return build_dashboard(
        config,
        usage_uid(config),
        usage_title(config),
        "Tokens per API key and model, and token-quota refusals.",
        [Row("Totals", _totals()), Row("Tokens per key", _tokens())],
        time_from="now-7d",  # usage is read over days, not the last few hours
    )
