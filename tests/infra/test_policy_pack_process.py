"""The policy pack as Pulumi runs it: `infra/policy/__main__.py` in its own process,
spoken to over the analyzer gRPC protocol the CLI uses.

This covers what calling the rules directly does not: the pack program imports and
starts, and properties arrive through pulumi-policy's own deserialization.
"""

from __future__ import annotations

import subprocess
import sys
from collections.abc import Iterator
from typing import Any

import grpc
import pytest
from google.protobuf import empty_pb2, json_format, struct_pb2
from pulumi.runtime.proto import analyzer_pb2, analyzer_pb2_grpc

from tests.infra.stack_run import REPO, StackRun, unwrap

# Every test here starts a process (see tests/support/tiers.py).
pytestmark = pytest.mark.process


@pytest.fixture(scope="module")
def analyzer() -> Iterator[analyzer_pb2_grpc.AnalyzerStub]:
    process = subprocess.Popen(
        [sys.executable, "__main__.py"],
        cwd=REPO / "infra" / "policy",
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
    )
    try:
        assert process.stdout is not None
        line = process.stdout.readline()  # the pack prints its port, then serves
        assert line.strip().isdigit(), process.stderr.read() if process.stderr else line
        with grpc.insecure_channel(f"127.0.0.1:{int(line)}") as channel:
            grpc.channel_ready_future(channel).result(timeout=30)
            yield analyzer_pb2_grpc.AnalyzerStub(channel)
    finally:
        process.terminate()
        process.wait(timeout=10)


def _struct(props: dict[str, Any]) -> struct_pb2.Struct:
    message = struct_pb2.Struct()
    json_format.ParseDict(props, message)
    return message


def _stack_request(run: StackRun, mutate: dict[str, dict[str, Any]] | None = None) -> Any:
    resources = []
    for res in run.resources:
        props = unwrap(dict(res.inputs))
        props.update((mutate or {}).get(res.name, {}))
        resources.append(
            analyzer_pb2.AnalyzerResource(
                type=res.type, properties=_struct(props), urn=res.urn, name=res.name
            )
        )
    return analyzer_pb2.AnalyzeStackRequest(resources=resources)


def test_the_pack_serves_every_policy(analyzer: analyzer_pb2_grpc.AnalyzerStub) -> None:
    info = analyzer.GetAnalyzerInfo(empty_pb2.Empty(), timeout=30)
    assert info.name == "llm-stack-security"
    assert {p.name for p in info.policies} == {
        "pinned-images",
        "published-ports",
        "healthcheck-and-restart",
        "no-plain-text-secrets",
        "network-membership",
        "kubernetes-pinned-images",
        "kubernetes-probes",
        "kubernetes-resources",
        "kubernetes-pod-security",
        "kubernetes-distinct-gpus",
        "kubernetes-secrets",
        "kubernetes-route-timeouts",
        "kubernetes-prestop-grace",
        "kubernetes-default-deny",
    }


def test_each_declared_resource_passes(
    analyzer: analyzer_pb2_grpc.AnalyzerStub, prod_run: StackRun
) -> None:
    for res in prod_run.resources:
        request = analyzer_pb2.AnalyzeRequest(
            type=res.type, properties=_struct(unwrap(dict(res.inputs))), urn=res.urn, name=res.name
        )
        response = analyzer.Analyze(request, timeout=30)
        assert [d.message for d in response.diagnostics] == [], res.urn


def test_a_published_ollama_port_is_reported(
    analyzer: analyzer_pb2_grpc.AnalyzerStub, dev_run: StackRun
) -> None:
    (ollama,) = dev_run.by_role("ollama")
    props = unwrap(dict(ollama.inputs))
    props["ports"] = [{"internal": 11434, "external": 11434, "ip": "0.0.0.0"}]
    response = analyzer.Analyze(
        analyzer_pb2.AnalyzeRequest(
            type=ollama.type, properties=_struct(props), urn=ollama.urn, name=ollama.name
        ),
        timeout=30,
    )
    reported = {(d.policyName, d.enforcementLevel) for d in response.diagnostics}
    assert reported == {("published-ports", analyzer_pb2.MANDATORY)}


def test_stack_membership_over_the_whole_stack(
    analyzer: analyzer_pb2_grpc.AnalyzerStub, dev_run: StackRun
) -> None:
    clean = analyzer.AnalyzeStack(_stack_request(dev_run), timeout=30)
    assert [d.message for d in clean.diagnostics] == []
    (redis,) = dev_run.by_role("redis")
    edge = [{"name": "llm-dev-internal"}, {"name": "llm-dev-edge"}]
    broken = analyzer.AnalyzeStack(
        _stack_request(dev_run, {redis.name: {"networksAdvanced": edge}}), timeout=30
    )
    assert [d.policyName for d in broken.diagnostics] == ["network-membership"]
    assert "llm-dev-redis" in broken.diagnostics[0].message
