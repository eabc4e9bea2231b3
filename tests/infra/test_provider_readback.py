"""A second `pulumi up` changes nothing: every container's inputs are already in the
form the docker provider reads back (see provider_readback.py for what is modelled and
where it comes from in the provider's source)."""

from __future__ import annotations

from fractions import Fraction

import pytest
from llm_config import StackConfig
from llm_stack.docker.containers import go_duration

from tests.infra.provider_readback import (
    EngineRefuses,
    go_duration_string,
    parse_go_duration,
    parse_gpus,
    perpetual_diffs,
    read_back,
)
from tests.infra.stack_run import StackRun, labels


@pytest.mark.parametrize(
    ("written", "read"),
    [
        ("0s", "0s"),
        ("5s", "5s"),
        ("120s", "2m0s"),
        ("300s", "5m0s"),
        ("90m", "1h30m0s"),
        ("1h", "1h0m0s"),
        ("1.5s", "1.5s"),
        ("500ms", "500ms"),
        ("2m30s", "2m30s"),
    ],
)
def test_the_go_duration_model(written: str, read: str) -> None:
    assert go_duration_string(parse_go_duration(written)) == read


def test_go_duration_writes_what_go_reads_back() -> None:
    for seconds in [*range(0, 200), 299, 300, 301, 3599, 3600, 3601, 86400, 90061]:
        assert go_duration(seconds) == go_duration_string(Fraction(seconds)), seconds
    with pytest.raises(ValueError, match="negative"):
        go_duration(-1)


def test_every_container_is_written_as_it_is_read_back(
    each_stack: tuple[StackRun, StackConfig],
) -> None:
    run, _ = each_stack
    assert run.containers
    diffs = {
        str(c.plain("name")): perpetual_diffs({k: c.plain(k) for k in c.inputs})
        for c in run.containers
    }
    assert {name: d for name, d in diffs.items() if d} == {}


def test_memory_limits_come_with_an_equal_swap_limit(
    each_stack: tuple[StackRun, StackConfig],
) -> None:
    run, _ = each_stack
    limited = [c for c in run.containers if c.plain("memory")]
    assert {labels(c)["llm-stack.role"] for c in limited} >= {"ollama"}
    for container in limited:
        assert container.plain("memorySwap") == container.plain("memory")


# --- the model catches what the program used to send -----------------------------------


def test_the_old_forms_would_change_on_every_run() -> None:
    old = {
        "healthcheck": {"tests": ["CMD", "true"], "interval": "30s", "startPeriod": "120s"},
        "memory": 6144.0,
    }
    assert perpetual_diffs(old) == {
        "healthcheck": (
            {"interval": "30s", "timeout": "0s", "startPeriod": "120s", "startInterval": "0s"},
            {"interval": "30s", "timeout": "0s", "startPeriod": "2m0s", "startInterval": "0s"},
        ),
        "memorySwap": (0, 12288),
    }


@pytest.mark.parametrize("value", ['"device=0,1"', "device=0,1", "'device=0,1'"])
def test_a_gpu_list_is_split_into_a_device_and_a_count(value: str) -> None:
    """Docker's CSV parser reads `device=0,1` as `device=0` plus a bare `1` (a count)."""
    with pytest.raises(EngineRefuses, match="both Count and DeviceIDs"):
        parse_gpus(value)


@pytest.mark.parametrize(
    ("value", "stored"),
    [
        ("device=0", "device=0"),
        (
            "device=GPU-3a23c669-1f69-c64e",
            "device=GPU-3a23c669-1f69-c64e",
        ),
        ('"device=1"', "device=1"),
        ("all", "all"),
    ],
)
def test_gpu_values_that_read_back_as_written(value: str, stored: str) -> None:
    assert read_back({"gpus": value})["gpus"] == stored
    request = parse_gpus(value)
    assert not (request.count and request.device_ids)
