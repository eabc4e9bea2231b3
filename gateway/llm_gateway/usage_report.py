"""Reading usage back: per key, per model or per day, over the last N days.

Usage lives in Redis hashes `llm:usage:<YYYYMMDD>:<key name>`, one field per
`<model>|<counter>` (written by lua/admit.lua and lua/settle.lua). The same report
serves `llm-gateway usage` and the admin-only `/admin/usage` endpoint.
"""

from __future__ import annotations

import csv
import io
import re
import time
from collections.abc import Iterable
from typing import Any, Literal

import orjson
import redis.asyncio as redis

COUNTERS = (
    "requests",
    "prompt_tokens",
    "completion_tokens",
    "cache_hits",
    "coalesced",
    "errors",
    "queued_ms",
)
GROUPS = ("key", "model", "day")
Group = Literal["key", "model", "day"]
_SINCE = re.compile(r"^([1-9][0-9]{0,3})d$")


class UsageQueryError(ValueError):
    """A usage query that cannot be answered as asked."""


def parse_since(text: str) -> int:
    """`7d` -> 7 (days, today included)."""
    match = _SINCE.match(text.strip())
    if match is None:
        raise UsageQueryError(f"since: {text!r} is not a number of days like '7d'")
    return int(match.group(1))


def days_back(count: int, now_s: float | None = None) -> list[str]:
    """The last `count` UTC days, today first, as YYYYMMDD."""
    now = time.time() if now_s is None else now_s
    return [time.strftime("%Y%m%d", time.gmtime(now - 86400 * back)) for back in range(count)]


async def read_usage(
    client: redis.Redis,
    since_days: int,
    by: Group = "key",
    key: str | None = None,
    now_s: float | None = None,
) -> list[dict[str, Any]]:
    """One row per key, model or day, with every counter summed; most tokens first."""
    if by not in GROUPS:
        raise UsageQueryError(f"by: {by!r} is not one of {', '.join(GROUPS)}")
    totals: dict[str, dict[str, int]] = {}
    for day in days_back(since_days, now_s):
        names = [f"llm:usage:{day}:{key}"] if key else await _keys(client, day)
        for name in names:
            key_name = name.rsplit(":", 1)[1]
            raw = await client.hgetall(name)
            for field, value in raw.items():
                text = field.decode() if isinstance(field, bytes) else field
                model, _, counter = text.rpartition("|")
                if counter not in COUNTERS:
                    continue
                group = {"key": key_name, "model": model, "day": _iso(day)}[by]
                row = totals.setdefault(group, dict.fromkeys(COUNTERS, 0))
                row[counter] += int(value)
    ordered = sorted(
        totals.items(),
        key=lambda item: (-item[1]["prompt_tokens"] - item[1]["completion_tokens"], item[0]),
    )
    return [{by: group, **counts} for group, counts in ordered]


async def _keys(client: redis.Redis, day: str) -> list[str]:
    found = [k.decode() async for k in client.scan_iter(match=f"llm:usage:{day}:*", count=500)]
    return sorted(found)


def _iso(day: str) -> str:
    return f"{day[:4]}-{day[4:6]}-{day[6:]}"


def render(rows: Iterable[dict[str, Any]], by: Group, form: str) -> str:
    """`table`, `csv` or `json` (the admin endpoint's shape)."""
    rows = list(rows)
    columns = [by, *COUNTERS]
    if form == "csv":
        out = io.StringIO()
        writer = csv.DictWriter(out, columns, lineterminator="\n")
        writer.writeheader()
        writer.writerows(rows)
        return out.getvalue()
    if form == "json":
        return orjson.dumps({"by": by, "rows": rows}, option=orjson.OPT_INDENT_2).decode() + "\n"
    if form != "table":
        raise UsageQueryError(f"format: {form!r} is not table, csv or json")
    cells = [[str(row[c]) for c in columns] for row in rows]
    widths = [max([len(c), *(len(r[i]) for r in cells)]) for i, c in enumerate(columns)]
    lines = [_line(columns, widths), *(_line(row, widths) for row in cells)]
    if not rows:
        lines.append("(no usage recorded in this period)")
    return "\n".join(lines) + "\n"


def _line(values: list[str], widths: list[int]) -> str:
    # The group left-aligned, the numbers right-aligned.
    return "  ".join(
        value.ljust(width) if i == 0 else value.rjust(width)
        for i, (value, width) in enumerate(zip(values, widths, strict=True))
    )
