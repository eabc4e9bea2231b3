"""What the docker provider stores for a container after creating it, for the fields
where that differs from what a program may send.

pulumi-docker 5.x bridges kreuzwerker/terraform-provider-docker v4.5.0 (the `upstream`
submodule of pulumi/pulumi-docker v5.1.0+ is its tag v4.5.0). Its Create ends with a
Read (`resourceDockerContainerRead`, internal/provider/resource_docker_container_funcs.go)
and the state keeps what that Read sets; the next `pulumi up` diffs the program's
inputs against it. So an input in a form the Read does not produce is "updated" (or,
for a ForceNew field like `gpus`, replaced) on every run. Modelled here, from that
source and the Docker code it calls:

- healthcheck `interval`, `timeout`, `start_period`, `start_interval`: parsed with Go's
  `time.ParseDuration` on create, read back with `Duration.String()` (`120s` -> `2m0s`);
  the schema defaults each to `0s`. (Docker also fills a zero field from the image's
  own HEALTHCHECK; the stack sets every field but `start_interval`, which the gateway's
  Dockerfile, the one image here with a HEALTHCHECK we know of, does not set.)
- `memory` / `memory_swap` (MB): Docker's daemon sets MemorySwap to twice Memory when a
  memory limit comes without a swap limit (daemon `adaptContainerSettings`); the Read
  sets `memory_swap` from the container whether the program set it or not.
- `gpus`: quotes stripped (`normalizeGPUOptionString`), parsed by docker/cli's
  `GpuOpts.Set` (a CSV record: `device=0,1` is the fields `device=0` and `1`, and a
  bare field is a count), read back by `flattenGPUsFromDeviceRequests` (`device=<ids>`,
  or `all` for count -1). The engine refuses a request with both a count and device
  ids ("cannot set both Count and DeviceIDs on device request").

Values arrive in engine shape (camelCase keys, numbers as floats), as the mocks see them.
"""

from __future__ import annotations

import csv
import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from fractions import Fraction
from typing import Any

DURATION_FIELDS = ("interval", "timeout", "startPeriod", "startInterval")

_UNITS = {
    "ns": Fraction(1, 10**9),
    "us": Fraction(1, 10**6),
    "µs": Fraction(1, 10**6),
    "μs": Fraction(1, 10**6),
    "ms": Fraction(1, 1000),
    "s": Fraction(1),
    "m": Fraction(60),
    "h": Fraction(3600),
}
_COMPONENT = re.compile(r"(\d+(?:\.\d*)?|\.\d+)(ns|us|µs|μs|ms|s|m|h)")


class EngineRefuses(ValueError):
    """The Docker engine would refuse to create the container."""


def parse_go_duration(text: str) -> Fraction:
    """Go's `time.ParseDuration`, in seconds (only what a healthcheck can hold: >= 0)."""
    if text == "0":
        return Fraction(0)
    rest, total = text, Fraction(0)
    if not rest:
        raise ValueError(f"invalid duration {text!r}")
    while rest:
        match = _COMPONENT.match(rest)
        if match is None:
            raise ValueError(f"invalid duration {text!r}")
        total += Fraction(match.group(1)) * _UNITS[match.group(2)]
        rest = rest[match.end() :]
    return total


def go_duration_string(seconds: Fraction) -> str:
    """Go's `time.Duration.String()` of a non-negative duration."""
    nanos = seconds * 10**9
    if nanos.denominator != 1:
        raise ValueError("Go durations are whole nanoseconds")
    n = int(nanos)
    if n == 0:
        return "0s"
    if n < 10**9:
        for unit, size in (("ms", 10**6), ("µs", 10**3), ("ns", 1)):
            if n >= size:
                return _decimal(n, size) + unit
    hours, n = divmod(n, 3600 * 10**9)
    minutes, n = divmod(n, 60 * 10**9)
    text = _decimal(n, 10**9) + "s"
    if hours:
        return f"{hours}h{minutes}m{text}"
    if minutes:
        return f"{minutes}m{text}"
    return text


def _decimal(value: int, size: int) -> str:
    whole, frac = divmod(value, size)
    if not frac:
        return str(whole)
    digits = str(frac).rjust(len(str(size)) - 1, "0").rstrip("0")
    return f"{whole}.{digits}"


@dataclass
class DeviceRequest:
    count: int = 0
    device_ids: list[str] = field(default_factory=list)
    capabilities: list[list[str]] = field(default_factory=list)


def parse_gpus(value: str) -> DeviceRequest:
    """The provider's normalisation, then docker/cli's `GpuOpts.Set`."""
    normalized = value.strip()
    while len(normalized) >= 2 and normalized[0] == normalized[-1] and normalized[0] in "\"'":
        normalized = normalized[1:-1].strip()
    (fields,) = list(csv.reader([normalized]))
    request, seen = DeviceRequest(), set()
    for item in fields:
        key, has_value, val = item.partition("=")
        if key in seen:
            raise EngineRefuses(f"gpu request key {key!r} can be specified only once")
        seen.add(key)
        if not has_value:
            seen.add("count")
            request.count = -1 if key == "all" else int(key)
        elif key == "count":
            request.count = -1 if val == "all" else int(val)
        elif key == "device":
            request.device_ids = val.split(",")
        elif key == "capabilities":
            request.capabilities = [[*val.split(","), "gpu"]]
        elif key not in ("driver", "options"):
            raise EngineRefuses(f"unexpected key {key!r} in {item!r}")
    if "count" not in seen and not request.device_ids:
        request.count = 1
    if not request.capabilities:
        request.capabilities = [["gpu"]]
    if request.count and request.device_ids:
        raise EngineRefuses("cannot set both Count and DeviceIDs on device request")
    return request


def flatten_gpus(request: DeviceRequest) -> str | None:
    """`flattenGPUsFromDeviceRequests` for one request (None: not representable)."""
    if request.device_ids:
        return "device=" + ",".join(request.device_ids)
    gpu_capability = any(c.lower() == "gpu" for caps in request.capabilities for c in caps)
    if request.count == -1 and gpu_capability:
        return "all"
    return None


def planned(inputs: Mapping[str, Any]) -> dict[str, Any]:
    """The modelled fields as the provider plans them from the program's inputs."""
    check = inputs.get("healthcheck") or {}
    return {
        "healthcheck": (
            {name: check.get(name, "0s") for name in DURATION_FIELDS} if check else None
        ),
        "memory": int(inputs.get("memory") or 0),
        "memorySwap": int(inputs.get("memorySwap") or 0),
        "gpus": inputs.get("gpus") or None,
    }


def read_back(inputs: Mapping[str, Any]) -> dict[str, Any]:
    """The modelled fields as the Read after Create stores them in the state.

    Assumes a host with swap accounting (any cgroup v2 host); without it the daemon
    stores MemorySwap -1 whatever the program sends.
    """
    check = inputs.get("healthcheck") or {}
    memory = int(inputs.get("memory") or 0)
    swap = int(inputs.get("memorySwap") or 0)
    if memory > 0 and swap == 0:
        swap = memory * 2  # the daemon's default
    gpus = inputs.get("gpus") or None
    return {
        "healthcheck": (
            {
                name: go_duration_string(parse_go_duration(check.get(name, "0s")))
                for name in DURATION_FIELDS
            }
            if check
            else None
        ),
        "memory": memory,
        "memorySwap": swap,
        # The Read keeps the configured value when it cannot represent the request.
        "gpus": (flatten_gpus(parse_gpus(gpus)) or gpus) if gpus else None,
    }


def perpetual_diffs(inputs: Mapping[str, Any]) -> dict[str, tuple[Any, Any]]:
    """Field -> (planned, stored) for each field a second `pulumi up` would change."""
    plan, stored = planned(inputs), read_back(inputs)
    return {k: (plan[k], stored[k]) for k in plan if plan[k] != stored[k]}
