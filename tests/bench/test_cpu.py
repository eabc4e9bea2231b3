"""bench/system/cpu.py: CPU per part of the stack, over a fake /proc.

W6 stops an instance and starts it again: the stopped process's CPU must still count
up to its stop, the new one's from its start, and no share may go negative.
"""

from __future__ import annotations

import os
import shutil
from collections.abc import Iterable, Mapping, Sequence
from pathlib import Path

import pytest

from bench.system import cpu

TICKS = os.sysconf("SC_CLK_TCK")


class FakeProc:
    """A /proc with the fields cpu.py reads: per pid stat and children, and /proc/stat."""

    def __init__(self, root: Path) -> None:
        self.root = root
        self.machine(busy=0, idle=0)

    def process(
        self,
        pid: int,
        seconds: float,
        start: int = 1000,
        children: Sequence[int] = (),
        name: str = "python3",
    ) -> None:
        ticks = round(seconds * TICKS)
        utime, stime = ticks - ticks // 4, ticks // 4
        # Fields 3-22 of proc(5): state ... utime(14) stime(15) ... starttime(22).
        after = ["S", "1", "1", "1", "0", "-1", "0", "0", "0", "0", "0", str(utime), str(stime)]
        after += ["0", "0", "20", "0", "1", "0", str(start), "0", "0"]
        task = self.root / str(pid) / "task" / str(pid)
        task.mkdir(parents=True, exist_ok=True)
        (self.root / str(pid) / "stat").write_text(f"{pid} ({name}) {' '.join(after)}\n")
        (task / "children").write_text("".join(f"{child} " for child in children))

    def gone(self, pid: int) -> None:
        shutil.rmtree(self.root / str(pid))

    def machine(self, busy: int, idle: int) -> None:
        # user nice system idle iowait irq softirq steal guest guest_nice
        (self.root / "stat").write_text(f"cpu  {busy} 0 0 {idle} 0 0 0 0 0 0\ncpu0 0\n")


@pytest.fixture
def proc(tmp_path: Path) -> FakeProc:
    return FakeProc(tmp_path)


def shares(
    proc: FakeProc,
    groups: Mapping[str, Iterable[int]],
    before: cpu.CpuSnapshot,
    notes: Sequence[cpu.CpuSnapshot] = (),
    wall: float = 10.0,
) -> dict[str, float]:
    return cpu.usage(before, cpu.snapshot(groups, wall, proc.root), notes)


def test_a_stopped_instance_counts_to_its_note_and_its_successor_from_zero(
    proc: FakeProc,
) -> None:
    # W6: instance 0 (pid 10) stops a third of the way in, pid 12 takes its place.
    proc.process(10, 5.0)
    proc.process(11, 3.0)
    before = cpu.snapshot({"emulators": [10, 11]}, 0.0, proc.root)
    proc.process(10, 7.0)
    note = cpu.snapshot({"emulators": [10, 11]}, 4.0, proc.root)
    proc.gone(10)
    proc.process(12, 1.0, start=5000)
    proc.process(11, 4.0)

    used = shares(proc, {"emulators": [12, 11]}, before, [note])

    # (7 - 5) of the stopped one, (4 - 3) of the other, 1 of the new one, over 10 s.
    assert used["emulators"] == pytest.approx(0.4)


def test_without_a_note_a_gone_process_counts_nothing_rather_than_less(
    proc: FakeProc,
) -> None:
    proc.process(10, 50.0)
    proc.process(11, 3.0)
    before = cpu.snapshot({"emulators": [10, 11]}, 0.0, proc.root)
    proc.gone(10)
    proc.process(11, 4.0)
    proc.process(12, 2.0, start=5000)

    used = shares(proc, {"emulators": [10, 11, 12]}, before)

    assert used["emulators"] == pytest.approx(0.3)  # (4 - 3) + 2, never 50 s less


def test_a_reused_pid_is_a_new_process(proc: FakeProc) -> None:
    proc.process(10, 50.0, start=1000)
    before = cpu.snapshot({"emulators": [10]}, 0.0, proc.root)
    proc.process(10, 2.0, start=9000)  # another process, given the freed pid

    assert shares(proc, {"emulators": [10]}, before)["emulators"] == pytest.approx(0.2)


def test_a_replaced_child_is_counted_like_a_replaced_process(proc: FakeProc) -> None:
    # nginx: the master (pid 1) and its worker; the worker replaced during the run.
    proc.process(1, 1.0, children=[2])
    proc.process(2, 20.0)
    before = cpu.snapshot({"nginx": [1]}, 0.0, proc.root)
    proc.process(2, 24.0)
    note = cpu.snapshot({"nginx": [1]}, 5.0, proc.root)
    proc.gone(2)
    proc.process(1, 1.5, children=[3])
    proc.process(3, 0.5, start=7000)

    used = shares(proc, {"nginx": [1]}, before, [note])

    assert used["nginx"] == pytest.approx((0.5 + 4.0 + 0.5) / 10)


def test_the_last_note_holds_a_process_gone_since(proc: FakeProc) -> None:
    proc.process(10, 1.0)
    before = cpu.snapshot({"emulators": [10]}, 0.0, proc.root)
    proc.process(10, 2.0)
    first = cpu.snapshot({"emulators": [10]}, 2.0, proc.root)
    proc.process(10, 3.0)
    second = cpu.snapshot({"emulators": [10]}, 4.0, proc.root)
    proc.gone(10)

    used = shares(proc, {"emulators": [10]}, before, [first, second])

    assert used["emulators"] == pytest.approx(0.2)


def test_shares_per_group_and_of_the_machine(proc: FakeProc) -> None:
    proc.process(10, 1.0)
    proc.process(20, 1.0, children=[21])
    proc.process(21, 1.0, name="nginx: worker (x) process")  # a ")" in the name
    proc.process(30, 1.0)
    proc.machine(busy=100, idle=300)
    groups = {"emulators": [10], "nginx": [20], "gateways": [30]}
    before = cpu.snapshot(groups, 0.0, proc.root)
    proc.process(10, 3.0)
    proc.process(21, 2.0, name="nginx: worker (x) process")
    proc.machine(busy=150, idle=350)

    used = shares(proc, groups, before, wall=5.0)

    assert used == pytest.approx({"emulators": 0.4, "nginx": 0.2, "gateways": 0.0, "machine": 0.5})


def test_tree_seconds_sums_a_process_and_its_children(proc: FakeProc) -> None:
    proc.process(1, 1.0, children=[2, 3])
    proc.process(2, 2.0)
    proc.process(3, 0.5, children=[4])
    proc.process(4, 0.25)

    assert cpu.tree_seconds([1, 99], proc.root) == pytest.approx(3.75)  # 99: gone


def test_the_meter_keeps_a_stopped_instance_and_finds_its_successor(proc: FakeProc) -> None:
    """As W6 drives it: start, note() and stop the instance, start it again, stop()."""
    pids = {"emulators": [10, 11]}
    times = iter([0.0, 3.0, 10.0])
    meter = cpu.CpuMeter(lambda: pids, clock=lambda: next(times), proc=proc.root)
    proc.process(10, 5.0)
    proc.process(11, 5.0)
    meter.start()
    proc.process(10, 6.0)
    proc.process(11, 6.0)
    meter.note()
    proc.process(10, 6.5)  # its last moments before it exits: not seen
    proc.gone(10)
    pids["emulators"] = [12, 11]
    proc.process(12, 2.0, start=8000)
    proc.process(11, 8.0)

    used = meter.stop()

    assert used["emulators"] == pytest.approx((1.0 + 3.0 + 2.0) / 10)
    assert min(used.values()) >= 0.0


def test_the_real_proc_reads_this_process() -> None:
    """The field positions against the kernel's own /proc (no process started)."""
    (key, seconds), *_ = cpu.process_seconds([os.getpid()]).items()
    busy, total = cpu.machine_ticks()

    assert key[0] == os.getpid()
    assert key[1] > 0  # its start time: after boot
    assert seconds > 0.0
    assert 0 < busy <= total
