"""CPU time from /proc: of the stack's processes (and their children), and of the machine.

On a 2-core machine shared with other work, a run's numbers only mean something when
the stack got the CPU it needed: each run reports what its processes used and how
busy the whole machine was meanwhile.

A run's processes are not fixed: W6 stops an instance and starts it again (a new
process), and nginx may replace a worker. So CPU is accounted per process, never per
group: a process counts from its reading at the run's start (0 if it started later)
to its last reading, and `CpuMeter.note()`, called just before a process is stopped,
keeps the last reading of one that is gone by the run's end.
"""

from __future__ import annotations

import os
import time
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path

PROC = Path("/proc")

# A process: (pid, start time in ticks since boot). The start time tells a reused pid
# from the process that had it before, whose CPU seconds are not the new one's.
Process = tuple[int, int]


def process_seconds(pids: Iterable[int], proc: Path = PROC) -> dict[Process, float]:
    """utime + stime of each of the processes and their children (nginx workers), in
    seconds; a process that is gone is left out."""
    ticks = os.sysconf("SC_CLK_TCK")
    found: dict[Process, float] = {}
    seen: set[int] = set()
    todo = list(pids)
    while todo:
        pid = todo.pop()
        if pid in seen:
            continue
        seen.add(pid)
        try:
            # The command name, in parentheses, may hold spaces: fields count after it.
            fields = (proc / str(pid) / "stat").read_text().rsplit(")", 1)[1].split()
            children = (proc / str(pid) / "task" / str(pid) / "children").read_text().split()
        except OSError:
            continue
        # fields[0] is field 3 of proc(5): utime is 14, stime 15, starttime 22.
        found[(pid, int(fields[19]))] = (int(fields[11]) + int(fields[12])) / ticks
        todo.extend(int(child) for child in children)
    return found


def tree_seconds(pids: Iterable[int], proc: Path = PROC) -> float:
    """utime + stime of the processes and their children (nginx workers), in seconds."""
    return sum(process_seconds(pids, proc).values())


def machine_ticks(proc: Path = PROC) -> tuple[int, int]:
    """(busy, total) jiffies of all CPUs since boot (busy: all but idle and iowait)."""
    fields = [int(v) for v in (proc / "stat").read_text().split("\n", 1)[0].split()[1:]]
    total = sum(fields[:8])  # user nice system idle iowait irq softirq steal
    return total - fields[3] - fields[4], total


@dataclass(frozen=True)
class CpuSnapshot:
    groups: dict[str, dict[Process, float]]  # group -> process -> CPU seconds so far
    machine: tuple[int, int]
    wall: float


def snapshot(groups: Mapping[str, Iterable[int]], wall: float, proc: Path = PROC) -> CpuSnapshot:
    return CpuSnapshot(
        {name: process_seconds(pids, proc) for name, pids in groups.items()},
        machine_ticks(proc),
        wall,
    )


def usage(
    before: CpuSnapshot, after: CpuSnapshot, notes: Sequence[CpuSnapshot] = ()
) -> dict[str, float]:
    """Each group's share of one core over the interval, and the machine's busy share
    of all its cores (`machine`).

    `notes` are snapshots taken in between, oldest first: a process's last reading in
    them stands for its end when it is gone by `after`."""
    span = max(after.wall - before.wall, 1e-9)
    shares: dict[str, float] = {}
    for name in after.groups:
        last: dict[Process, float] = {}
        for later in (*notes, after):
            last.update(later.groups.get(name, {}))
        first = before.groups.get(name, {})
        # A process's counter never goes down; max() only keeps a misread from making
        # a share negative.
        seconds = sum(max(value - first.get(key, 0.0), 0.0) for key, value in last.items())
        shares[name] = seconds / span
    busy = after.machine[0] - before.machine[0]
    total = after.machine[1] - before.machine[1]
    shares["machine"] = busy / total if total else 0.0
    return shares


@dataclass
class CpuMeter:
    """The CPU of one run: `start()`, `note()` before stopping one of the processes,
    `stop()` for the shares. `pids` gives the groups' current pids at each reading, so
    a process started during the run is found at the next one."""

    pids: Callable[[], Mapping[str, Iterable[int]]]
    clock: Callable[[], float] = time.perf_counter
    proc: Path = PROC
    _before: CpuSnapshot | None = field(default=None, init=False)
    _notes: list[CpuSnapshot] = field(default_factory=list, init=False)

    def _read(self) -> CpuSnapshot:
        return snapshot(self.pids(), self.clock(), self.proc)

    def start(self) -> None:
        self._before, self._notes = self._read(), []

    def note(self) -> None:
        """Keep the processes' readings now: one about to be stopped is gone at the end."""
        self._notes.append(self._read())

    def stop(self) -> dict[str, float]:
        assert self._before is not None, "stop() before start()"
        return usage(self._before, self._read(), self._notes)
