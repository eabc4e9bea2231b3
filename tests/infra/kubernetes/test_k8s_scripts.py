"""The shell the cluster's pods run, run here with stand-ins for `ollama`, `nginx` and
`llm-gateway` on PATH: the model pull (skips what the volume has, checks pins), the
drain hooks of an Ollama pod, and the edge's certificate reloader."""

from __future__ import annotations

import hashlib
import os
import signal
import subprocess
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
from llm_stack.kubernetes import drain
from llm_stack.kubernetes.edge import RELOAD_SCRIPT
from llm_stack.kubernetes.pull import PULL_SCRIPT, UNPINNED, WARM_SCRIPT, manifest_path

# Every test here runs the pods' shell scripts (see tests/support/tiers.py).
pytestmark = pytest.mark.process

# Generous: the machine is shared; nothing here asserts a duration.
DEADLINE_SECONDS = 60


def _tool(bin_dir: Path, name: str, body: str) -> None:
    path = bin_dir / name
    path.write_text("#!/bin/sh\n" + body)
    path.chmod(0o755)


@pytest.fixture
def bin_dir(tmp_path: Path) -> Path:
    path = tmp_path / "bin"
    path.mkdir()
    return path


def _env(bin_dir: Path, **extra: str) -> dict[str, str]:
    return {"PATH": f"{bin_dir}:{os.environ['PATH']}", **extra}


def _calls(log: Path) -> list[str]:
    return log.read_text().splitlines() if log.exists() else []


# --- the pull ---------------------------------------------------------------------------------

MODEL = "llama3.1:8b"
MANIFEST_V1 = '{"schemaVersion":2,"layers":["v1"]}'
MANIFEST_V2 = '{"schemaVersion":2,"layers":["v2"]}'


def _digest(text: str) -> str:
    return hashlib.sha256(text.encode()).hexdigest()


@pytest.fixture
def ollama(bin_dir: Path, tmp_path: Path) -> Path:
    """A fake `ollama`: `pull` writes the registry's current manifest (or fails when the
    registry is down), `run qwen2.5:7b` fails; every call is logged."""
    log = tmp_path / "ollama.log"
    _tool(
        bin_dir,
        "ollama",
        f"""echo "$*" >> {log}
case "$1" in
  serve) exit 0 ;;
  list) exit 0 ;;
  run) [ "$2" = qwen2.5:7b ] && exit 1; exit 0 ;;
  pull)
    [ "$REGISTRY" = down ] && {{ echo "pull model manifest: registry unreachable"; exit 1; }}
    path="$OLLAMA_MODELS/manifests/$MANIFEST"
    mkdir -p "$(dirname "$path")"
    printf '%s' "$REGISTRY" > "$path"
    ;;
esac
""",
    )
    return log


def _pull(
    bin_dir: Path, models: Path, *, registry: str, pin: str = UNPINNED
) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        ["/bin/sh", "-c", PULL_SCRIPT, "model-puller", MODEL, manifest_path(MODEL), pin],
        env=_env(
            bin_dir, OLLAMA_MODELS=str(models), REGISTRY=registry, MANIFEST=manifest_path(MODEL)
        ),
        capture_output=True,
        text=True,
        timeout=DEADLINE_SECONDS,
        check=False,
    )


def _on_volume(models: Path, text: str) -> None:
    path = models / "manifests" / manifest_path(MODEL)
    path.parent.mkdir(parents=True)
    path.write_text(text)


def test_manifest_paths_follow_ollamas_names() -> None:
    assert manifest_path("llama3.1:8b") == "registry.ollama.ai/library/llama3.1/8b"
    assert manifest_path("llama3.1") == "registry.ollama.ai/library/llama3.1/latest"
    assert manifest_path("someone/model:q4") == "registry.ollama.ai/someone/model/q4"
    assert manifest_path("hf.co/org/repo:Q4_K_M") == "hf.co/org/repo/Q4_K_M"


def test_a_model_on_the_volume_starts_without_the_registry(
    bin_dir: Path, ollama: Path, tmp_path: Path
) -> None:
    models = tmp_path / "models"
    _on_volume(models, MANIFEST_V1)
    result = _pull(bin_dir, models, registry="down")
    assert result.returncode == 0, result.stdout
    assert f"{MODEL}: on the volume, not pulled" in result.stdout
    # Not even a server was started.
    assert _calls(ollama) == []


def test_a_missing_model_is_pulled(bin_dir: Path, ollama: Path, tmp_path: Path) -> None:
    models = tmp_path / "models"
    result = _pull(bin_dir, models, registry=MANIFEST_V1)
    assert result.returncode == 0, result.stdout
    assert f"pull {MODEL}" in _calls(ollama)
    assert (models / "manifests" / manifest_path(MODEL)).read_text() == MANIFEST_V1


def test_a_missing_model_and_no_registry_fails(bin_dir: Path, ollama: Path, tmp_path: Path) -> None:
    result = _pull(bin_dir, tmp_path / "models", registry="down")
    assert result.returncode == 1
    assert "registry unreachable" in result.stdout


def test_a_pinned_model_at_its_digest_is_not_pulled(
    bin_dir: Path, ollama: Path, tmp_path: Path
) -> None:
    models = tmp_path / "models"
    _on_volume(models, MANIFEST_V1)
    result = _pull(bin_dir, models, registry="down", pin=_digest(MANIFEST_V1))
    assert result.returncode == 0, result.stdout
    assert _calls(ollama) == []


def test_a_moved_tag_is_refused_where_a_digest_is_pinned(
    bin_dir: Path, ollama: Path, tmp_path: Path
) -> None:
    models = tmp_path / "models"
    _on_volume(models, MANIFEST_V2)
    # The volume has another version: pulled; the registry's tag moved on as well.
    result = _pull(bin_dir, models, registry=MANIFEST_V2, pin=_digest(MANIFEST_V1))
    assert result.returncode == 1
    assert f"pull {MODEL}" in _calls(ollama)
    assert f"its manifest is not sha256:{_digest(MANIFEST_V1)}" in result.stdout


def test_a_pinned_model_is_pulled_back_to_its_digest(
    bin_dir: Path, ollama: Path, tmp_path: Path
) -> None:
    models = tmp_path / "models"
    _on_volume(models, MANIFEST_V2)
    result = _pull(bin_dir, models, registry=MANIFEST_V1, pin=_digest(MANIFEST_V1))
    assert result.returncode == 0, result.stdout
    assert f"pulled {MODEL}" in result.stdout


def test_the_warm_up_loads_each_model_and_never_fails(
    bin_dir: Path, ollama: Path, tmp_path: Path
) -> None:
    result = subprocess.run(
        ["/bin/sh", "-c", WARM_SCRIPT, "warm", "llama3.1:8b", "qwen2.5:7b"],
        env=_env(bin_dir, OLLAMA_MODELS=str(tmp_path), REGISTRY="down", MANIFEST="x"),
        capture_output=True,
        text=True,
        timeout=DEADLINE_SECONDS,
        check=False,
    )
    assert result.returncode == 0
    assert _calls(ollama) == ["list", "run llama3.1:8b hi", "run qwen2.5:7b hi"]


# --- the drain hooks --------------------------------------------------------------------------


@pytest.fixture
def gateway_cli(bin_dir: Path, tmp_path: Path) -> Path:
    """A fake `llm-gateway`: logs its arguments and the key it got; fails if asked."""
    log = tmp_path / "cli.log"
    _tool(
        bin_dir,
        "llm-gateway",
        f"""echo "args: $*" >> {log}
echo "key: $LLM_GATEWAY_ADMIN_KEY" >> {log}
[ "$GATEWAY" = down ] && exit 1
exit 0
""",
    )
    return log


def _drain(bin_dir: Path, tmp_path: Path, gateway: str) -> subprocess.CompletedProcess[str]:
    key = tmp_path / "key"
    key.write_text("llmsk-drain-secret")
    return subprocess.run(
        ["/bin/sh", "-c", drain.DRAIN_SCRIPT],
        env=_env(
            bin_dir,
            GATEWAY=gateway,
            LLM_DRAIN_INSTANCE="llm-k8s-ollama-0.llm-k8s-ollama.llm.svc.cluster.local:11434",
            LLM_DRAIN_TIMEOUT="1200",
            LLM_DRAIN_DNS_SECONDS="0",
            LLM_DRAIN_MARKER=str(tmp_path / "drained"),
            LLM_DRAIN_GATEWAY_URL="http://llm-k8s-gateway.llm.svc.cluster.local:8000",
            LLM_DRAIN_KEY_FILE=str(key),
            LLM_DRAIN_LOG=str(tmp_path / "drain.log"),
        ),
        capture_output=True,
        text=True,
        timeout=DEADLINE_SECONDS,
        check=False,
    )


def test_the_drain_hook_drains_its_instance_then_releases_ollama(
    bin_dir: Path, gateway_cli: Path, tmp_path: Path
) -> None:
    (tmp_path / "drain.log").touch()
    result = _drain(bin_dir, tmp_path, "up")
    assert result.returncode == 0, result.stderr
    assert "drained llm-k8s-ollama-0" in (tmp_path / "drain.log").read_text()
    args, key = _calls(gateway_cli)
    assert args == (
        "args: drain --url http://llm-k8s-gateway.llm.svc.cluster.local:8000 --instance "
        "llm-k8s-ollama-0.llm-k8s-ollama.llm.svc.cluster.local:11434 "
        "--until ready --wait --timeout 1200"
    )
    # The key goes by environment, never in an argument.
    assert key == "key: llmsk-drain-secret"
    assert "llmsk-" not in args
    assert (tmp_path / "drained").exists()


def test_a_failed_drain_still_releases_ollama(
    bin_dir: Path, gateway_cli: Path, tmp_path: Path
) -> None:
    (tmp_path / "drain.log").touch()
    result = _drain(bin_dir, tmp_path, "down")
    assert result.returncode == 0
    # Told in the container's log, where the hook's own output would not be.
    assert "failed" in (tmp_path / "drain.log").read_text()
    assert (tmp_path / "drained").exists()


def test_ollama_waits_for_the_marker_or_its_limit(tmp_path: Path) -> None:
    marker = tmp_path / "drained"
    marker.touch()
    done = subprocess.run(
        ["/bin/sh", "-c", drain.WAIT_SCRIPT, "wait-drain", str(marker), "3600"],
        timeout=DEADLINE_SECONDS,
        check=True,
    )
    assert done.returncode == 0
    # No marker: it gives up at its limit (1 s here) rather than hold the pod forever.
    gave_up = subprocess.run(
        ["/bin/sh", "-c", drain.WAIT_SCRIPT, "wait-drain", str(tmp_path / "never"), "1"],
        timeout=DEADLINE_SECONDS,
        check=True,
    )
    assert gave_up.returncode == 0


# --- the certificate reloader -----------------------------------------------------------------


@pytest.fixture
def tls_dir(tmp_path: Path) -> Path:
    path = tmp_path / "tls"
    path.mkdir()
    (path / "tls.crt").write_text("cert-1")
    (path / "tls.key").write_text("key-1")
    return path


@pytest.fixture
def reloader(bin_dir: Path, tmp_path: Path, tls_dir: Path) -> Iterator[tuple[Path, Path]]:
    """The reload loop (1 s rounds) against a fake `nginx` that logs its arguments;
    `nginx -t` fails while $tls/refuse exists."""
    log = tmp_path / "nginx.log"
    _tool(
        bin_dir,
        "nginx",
        f"""echo "$*" >> {log}
[ "$1" = -t ] && [ -e {tls_dir}/refuse ] && exit 1
exit 0
""",
    )
    alive = tmp_path / "alive"
    process = subprocess.Popen(
        [
            *("/bin/sh", "-c", RELOAD_SCRIPT, "cert-reloader", "/etc/nginx/llm/nginx.conf"),
            *(str(tls_dir), "1", str(alive)),
        ],
        env=_env(bin_dir),
        stdout=subprocess.DEVNULL,
        start_new_session=True,
    )
    try:
        _until(alive.exists)
        yield log, alive
    finally:
        os.killpg(process.pid, signal.SIGTERM)
        process.wait(timeout=DEADLINE_SECONDS)


def _until(condition: Callable[[], bool]) -> None:
    deadline = time.monotonic() + DEADLINE_SECONDS
    while not condition():
        assert time.monotonic() < deadline, "condition not reached"
        time.sleep(0.1)


def test_a_renewed_certificate_is_reloaded(reloader: tuple[Path, Path], tls_dir: Path) -> None:
    log, _ = reloader
    (tls_dir / "tls.crt").write_text("cert-2")
    _until(lambda: "-s reload -c /etc/nginx/llm/nginx.conf" in _calls(log))
    # Checked before the reload; nothing else was done.
    assert _calls(log) == [
        "-t -q -c /etc/nginx/llm/nginx.conf",
        "-s reload -c /etc/nginx/llm/nginx.conf",
    ]


def test_a_certificate_nginx_refuses_is_not_loaded(
    reloader: tuple[Path, Path], tls_dir: Path
) -> None:
    log, alive = reloader
    (tls_dir / "refuse").touch()
    (tls_dir / "tls.key").write_text("key-broken")
    _until(lambda: _calls(log).count("-t -q -c /etc/nginx/llm/nginx.conf") >= 2)
    assert not [c for c in _calls(log) if c.startswith("-s")]
    # Fixed: the next round loads it.
    (tls_dir / "refuse").unlink()
    _until(lambda: "-s reload -c /etc/nginx/llm/nginx.conf" in _calls(log))
    assert alive.exists()
