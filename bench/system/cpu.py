"""CPU time from /proc: of the stack's processes (and their children), and of the machine.

On a 2-core machine shared with other work, a run's numbers only mean something when
the stack got the CPU it needed: each run reports what its processes used and how
busy the whole machine was meanwhile.
"""

from __future__ import annotations

import os
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path


def tree_seconds(pids: Iterable[int]) -> float:
    """utime + stime of the processes and their children (nginx workers), in seconds."""
    ticks = os.sysconf("SC_CLK_TCK")
    total = 0
    seen: set[int] = set()
    todo = list(pids)
    while todo:
        pid = todo.pop()
        if pid in seen:
            continue
        seen.add(pid)
        try:
            fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
            children = Path(f"/proc/{pid}/task/{pid}/children").read_text().split()
        except OSError:
            continue
        total += int(fields[11]) + int(fields[12])
        todo.extend(int(child) for child in children)
    return total / ticks


def machine_ticks() -> tuple[int, int]:
    """(busy, total) jiffies of all CPUs since boot (busy: all but idle and iowait)."""
    fields = [int(v) for v in Path("/proc/stat").read_text().split("\n", 1)[0].split()[1:]]
    total = sum(fields[:8])  # user nice system idle iowait irq softirq steal
    return total - fields[3] - fields[4], total


@dataclass(frozen=True)
class CpuSnapshot:
    groups: dict[str, float]  # group -> CPU seconds so far
    machine: tuple[int, int]
    wall: float


def snapshot(groups: Mapping[str, Iterable[int]], wall: float) -> CpuSnapshot:
    return CpuSnapshot(
        {name: tree_seconds(pids) for name, pids in groups.items()}, machine_ticks(), wall
    )


def usage(before: CpuSnapshot, after: CpuSnapshot) -> dict[str, float]:
    """Each group's share of one core over the interval, and the machine's busy share
    of all its cores (`machine`)."""
    span = max(after.wall - before.wall, 1e-9)
    shares = {
        name: (after.groups[name] - before.groups.get(name, 0.0)) / span for name in after.groups
    }
    busy = after.machine[0] - before.machine[0]
    total = after.machine[1] - before.machine[1]
    shares["machine"] = busy / total if total else 0.0
    return shares
