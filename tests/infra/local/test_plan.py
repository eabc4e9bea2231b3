"""The plan: what runs where, decided without touching the host."""

from __future__ import annotations

import shlex
from pathlib import Path

import pytest
from llm_monitoring.prometheus import prometheus_args
from llm_stack.gateway_env import gateway_environment
from llm_stack.local.binaries import Binaries
from llm_stack.local.layout import Layout
from llm_stack.local.ollama import RealOllama
from llm_stack.local.plan import make_plan, redis_url
from llm_stack.local.source import load_source

from tests.infra.local.conftest import E2E_STACK_FILE, REPO, SECRETS, PlanFactory, fixed_ports


def test_services_start_in_dependency_order(make: PlanFactory) -> None:
    plan = make()
    assert [[s.name for s in tier] for tier in plan.tiers()] == [
        ["redis", "redis-cache"],
        ["ollama-0", "ollama-1"],
        ["nginx"],
        ["gateway-0", "gateway-1"],
        ["nginx-exporter"],
        ["prometheus"],
    ]
    assert [s.role for s in plan.services] == [
        "redis", "redis-cache", "ollama", "ollama", "nginx", "gateway", "gateway",
        "nginx-exporter", "prometheus",
    ]  # fmt: skip


def test_every_port_is_distinct_and_every_address_is_loopback(make: PlanFactory) -> None:
    plan = make()
    ports = plan.ports.all()
    assert len(ports) == len(set(ports))
    t = plan.nginx_topology
    for listen in (t.edge_https_listen, t.edge_http_listen, t.balancer_listen, t.status_listen):
        assert listen.startswith("127.0.0.1:")
    assert t.internal_allow == ("127.0.0.1",)
    for spec in plan.services:
        assert spec.address.startswith("127.0.0.1:")
        text = shlex.join(spec.argv) + " " + " ".join(spec.env.values())
        assert "0.0.0.0" not in text, spec.name
    assert plan.service("gateway-0").env["GATEWAY_HOST"] == "127.0.0.1"
    argv = plan.service("ollama-1").argv
    assert argv[argv.index("--port") + 1] == "22001"
    assert argv[argv.index("--models") + 1] == "llama3.2:1b,nomic-embed-text"
    assert "--host" in plan.service("ollama-0").argv


def test_emulators_schedule_like_the_stacks_ollama(make: PlanFactory) -> None:
    """The same slots, loaded models, queue and keep-alive as OLLAMA_* on Docker."""
    plan = make()
    ollama = plan.config.ollama
    argv = plan.service("ollama-0").argv

    def flag(name: str) -> str:
        return argv[argv.index(name) + 1]

    assert flag("--num-parallel") == str(ollama.num_parallel)
    assert flag("--max-loaded-models") == str(ollama.max_loaded_models)
    assert flag("--max-queue") == str(ollama.max_queue)
    assert flag("--keep-alive") == ollama.keep_alive


def test_every_program_is_an_absolute_path(make: PlanFactory) -> None:
    for spec in make().services:
        assert Path(spec.argv[0]).is_absolute(), spec.name
        assert Path(spec.argv[0]).exists(), spec.name


def test_gateways_get_the_environment_the_pulumi_program_gives_them(make: PlanFactory) -> None:
    plan = make()
    for index, port in enumerate(plan.ports.gateways):
        expected = gateway_environment(
            plan.config,
            upstream_url="http://127.0.0.1:20800",
            instance_urls=[f"http://{address}" for address in plan.upstreams],
            redis_url=redis_url(20379, SECRETS.redis_password),
            cache_redis_url=redis_url(20380, SECRETS.redis_password),
            api_keys_file=str(plan.layout.keys_file),
            host="127.0.0.1",
            port=port,
        )
        spec = plan.service(f"gateway-{index}")
        assert dict(spec.env) == expected
        assert spec.ready.urls == [f"http://127.0.0.1:{port}/health"]
        # Open streams drain for the gateway's own grace period before it is killed.
        assert spec.stop_grace == plan.config.gateway.shutdown_grace_seconds + 5


def test_redis_url_escapes_the_password() -> None:
    assert redis_url(1, "a/b@c:d") == "redis://:a%2Fb%40c%3Ad@127.0.0.1:1/0"


def test_prometheus_runs_with_the_shared_flags_and_scrapes_every_local_target(
    make: PlanFactory,
) -> None:
    plan = make()
    spec = plan.service("prometheus")
    assert list(spec.argv[1:]) == prometheus_args(
        plan.config,
        str(plan.layout.prometheus / "prometheus.yml"),
        str(plan.layout.prometheus_data),
        "127.0.0.1:20909",
    )
    targets = plan.scrape_targets
    assert list(targets.gateways) == ["127.0.0.1:21000", "127.0.0.1:21001"]
    assert targets.nginx_exporter == "127.0.0.1:20913"
    assert list(targets.gpu_exporters) == []


def test_the_exporter_reads_stub_status_through_its_environment(make: PlanFactory) -> None:
    spec = make().service("nginx-exporter")
    assert dict(spec.env) == {
        "SCRAPE_URI": "http://127.0.0.1:20801/stub_status",
        "LISTEN_ADDRESS": "127.0.0.1:20913",
    }
    assert len(spec.argv) == 1


def test_nginx_is_ready_when_its_four_listeners_and_the_balancer_answer(make: PlanFactory) -> None:
    plan = make()
    spec = plan.service("nginx")
    assert sorted(spec.ready.ports) == sorted([20443, 20080, 20800, 20801])
    assert "http://127.0.0.1:20800/api/version" in spec.ready.urls
    assert plan.nginx_topology.ollamas == ("127.0.0.1:22000", "127.0.0.1:22001")
    assert plan.nginx_topology.gateways == ("127.0.0.1:21000", "127.0.0.1:21001")
    assert plan.nginx_topology.access_log == str(plan.layout.log("nginx-access"))


def test_a_real_ollama_replaces_the_emulators(make: PlanFactory) -> None:
    plan = make(real=RealOllama("http://127.0.0.1:11434", "0.32.15"))
    assert not plan.emulated
    assert [s for s in plan.services if s.role == "ollama"] == []
    assert plan.upstreams == ["127.0.0.1:11434"]
    assert plan.nginx_topology.ollamas == ("127.0.0.1:11434",)


def test_dev_stack_plan(make: PlanFactory) -> None:
    plan = make(REPO / "Pulumi.dev.yaml")
    assert [s.name for s in plan.services] == [
        "redis", "redis-cache", "ollama-0", "nginx", "gateway-0", "nginx-exporter", "prometheus",
    ]  # fmt: skip
    assert plan.edge_url == "https://localhost:20443"


def test_emulator_ports_must_match_the_instances(tmp_path: Path, binaries: Binaries) -> None:
    source = load_source(E2E_STACK_FILE)
    with pytest.raises(ValueError, match="2 Ollama instances but 1 emulator ports"):
        make_plan(source, Layout(tmp_path), fixed_ports(2, 1), binaries, SECRETS, real_ollama=None)


def test_secrets_stay_out_of_reprs() -> None:
    assert SECRETS.redis_password not in repr(SECRETS)
    assert SECRETS.dev_key not in repr(SECRETS)
