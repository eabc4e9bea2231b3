"""Fuzzing the gateway: schemathesis over its OpenAPI schema, hypothesis over raw bodies.

The property: whatever arrives, the gateway answers (no hang), never with its own 500
or a traceback, errors are JSON, and its memory stays bounded.
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
import schemathesis
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from hypothesis.errors import Unsatisfiable
from schemathesis import GenerationMode
from schemathesis.checks import not_a_server_error

from tests.support.emulator import Emulator
from tests.support.gateway import GatewayProcess
from tests.support.redis_server import RedisServer

PATHS = ["/api/generate", "/api/chat", "/api/embed", "/api/embeddings", "/api/show",
         "/v1/chat/completions", "/v1/completions", "/v1/embeddings"]  # fmt: skip


@pytest.fixture(scope="module")
def fuzz_gateway(
    _session_emulator: Emulator, redis_server: RedisServer, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[GatewayProcess]:
    gateway = GatewayProcess(
        tmp_path_factory.mktemp("fuzz"),
        {
            "GATEWAY_UPSTREAM_URL": _session_emulator.url,
            "GATEWAY_REDIS_URL": redis_server.url,
            "GATEWAY_MAX_BODY_BYTES": "65536",
            "GATEWAY_ACCESS_LOG": "false",
            "GATEWAY_CACHE_MODE": "all",
        },
    ).start()
    yield gateway
    gateway.stop()


def rss_kb(pid: int) -> int:
    match = re.search(r"VmRSS:\s+(\d+)", Path(f"/proc/{pid}/status").read_text())
    assert match is not None
    return int(match.group(1))


def answered_sanely(response: httpx.Response) -> None:
    assert "Traceback (most recent call last)" not in response.text
    assert response.headers.get("x-request-id")
    if response.status_code >= 400:
        body = response.json()
        assert "error" in body
        assert body != {"error": "internal error"}, "the gateway itself failed"


def test_schemathesis_finds_no_server_error(fuzz_gateway: GatewayProcess) -> None:
    """Positive and negative cases for every operation of the gateway's own OpenAPI schema.

    (schemathesis's pytest plugin does not load under pytest 9, so its strategies are
    driven by hypothesis directly.)
    """
    api = schemathesis.openapi.from_url(f"{fuzz_gateway.url}/openapi.json")
    operations = [result.ok() for result in api.get_all_operations()]
    assert len(operations) >= 16
    without_negatives: list[str] = []
    for operation in operations:
        takes_input = operation.method.upper() == "POST" or "{" in operation.path
        modes = (
            (GenerationMode.POSITIVE, GenerationMode.NEGATIVE)
            if takes_input
            else (GenerationMode.POSITIVE,)
        )
        for mode in modes:

            @settings(max_examples=15, deadline=None, suppress_health_check=list(HealthCheck))
            @given(case=operation.as_strategy(generation_mode=mode))
            def run(case: Any) -> None:
                response = case.call(base_url=fuzz_gateway.url, timeout=30)
                case.validate_response(response, checks=[not_a_server_error])
                assert "Traceback (most recent call last)" not in response.text

            try:
                run()
            except Unsatisfiable:
                # No invalid request can be written for it (a lone free-text path
                # parameter, e.g. an instance name): there is no negative case to send.
                if mode is not GenerationMode.NEGATIVE:
                    raise
                without_negatives.append(operation.label)
    # The API's own operations (bodies, models) always have negative cases.
    assert not [label for label in without_negatives if "/admin/" not in label], without_negatives


json_values = st.recursive(
    st.none()
    | st.booleans()
    | st.integers()
    | st.floats(allow_nan=False, allow_infinity=False)
    | st.text(max_size=40),
    lambda children: (
        st.lists(children, max_size=5) | st.dictionaries(st.text(max_size=10), children, max_size=5)
    ),
    max_leaves=30,
)
bodies = st.one_of(
    st.binary(max_size=400),
    json_values.map(lambda v: httpx.Request("POST", "/", json=v).content),
    st.fixed_dictionaries(
        {
            "model": st.one_of(
                st.sampled_from(["llama3.2", "all-minilm", "x"]), st.text(max_size=30)
            )
        },
        optional={
            "prompt": json_values,
            "messages": json_values,
            "options": json_values,
            "stream": json_values,
            "format": json_values,
            "input": json_values,
            "images": json_values,
            "tools": json_values,
            "keep_alive": json_values,
        },
    ).map(lambda v: httpx.Request("POST", "/", json=v).content),
)
header_values = st.text(
    alphabet=st.characters(min_codepoint=32, max_codepoint=126), max_size=60
).map(str.strip)


def test_raw_bodies_and_headers_never_break_it(fuzz_gateway: GatewayProcess) -> None:
    proc = fuzz_gateway.process.proc
    assert proc is not None
    with httpx.Client(base_url=fuzz_gateway.url, timeout=30) as http:
        for _ in range(50):  # warm up: imports, pools, caches
            http.post("/api/generate", json={"model": "llama3.2", "prompt": "warm"})
        before = rss_kb(proc.pid)

        @settings(max_examples=300, deadline=None, suppress_health_check=list(HealthCheck))
        @given(path=st.sampled_from(PATHS), body=bodies, cache_control=header_values,
               request_id=header_values, content_type=header_values)  # fmt: skip
        def one(
            path: str, body: bytes, cache_control: str, request_id: str, content_type: str
        ) -> None:
            headers = {"Cache-Control": cache_control, "X-Request-ID": request_id,
                       "Content-Type": content_type}  # fmt: skip
            answered_sanely(http.post(path, content=body, headers=headers))

        one()
        after = rss_kb(proc.pid)
    assert after - before < 64 * 1024, f"RSS grew by {(after - before) // 1024} MB"
