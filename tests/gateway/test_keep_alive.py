"""keep_alive is the operator's: clamped to a range, unload-only for admin keys.

Values are read as Ollama reads them (api/types.go, Duration.UnmarshalJSON): numbers
are seconds, strings Go durations, negatives forever.
"""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path

import httpx
import pytest
from llm_gateway.errors import GatewayError
from llm_gateway.keep_alive import FOREVER, KeepAlivePolicy, keep_alive_seconds

from tests.gateway.test_quotas import Keys
from tests.support.emulator import Emulator
from tests.support.gateway import GatewayFactory, GatewayProcess
from tests.support.redis_server import RedisServer


@pytest.mark.parametrize(
    ("value", "seconds"),
    [
        (0, 0.0),
        (300, 300.0),
        (1.5, 1.5),
        (-1, FOREVER),
        ("0", 0.0),
        ("5m", 300.0),
        ("1h30m", 5400.0),
        ("1.5h", 5400.0),
        ("876000h", 876000 * 3600.0),
        ("300ms", 0.3),
        ("+10s", 10.0),
        ("-1s", FOREVER),
        ("-0", 0.0),
        ("2h45m10.5s", 9910.5),
    ],
)
def test_keep_alive_is_read_as_ollama_reads_it(value: object, seconds: float) -> None:
    assert keep_alive_seconds(value) == pytest.approx(seconds)


@pytest.mark.parametrize("value", ["", "5", "-1", "5 minutes", "1d", "m", True, [], {}])
def test_what_ollama_refuses_is_refused(value: object) -> None:
    with pytest.raises(ValueError, match=r"duration|keep_alive"):
        keep_alive_seconds(value)


def test_the_policy_clamps_and_keeps_unloads_for_admins() -> None:
    policy = KeepAlivePolicy(60, 3600)
    pinned = {"keep_alive": "876000h"}
    assert policy.apply(pinned, load_only=False, admin=False)
    assert pinned == {"keep_alive": 3600}
    short = {"keep_alive": 0}
    assert policy.apply(short, load_only=False, admin=False)
    assert short == {"keep_alive": 60}
    fits = {"keep_alive": "10m"}
    assert not policy.apply(fits, load_only=False, admin=False)
    assert fits == {"keep_alive": "10m"}
    assert not policy.apply({}, load_only=True, admin=False)
    unload = {"keep_alive": "0s"}
    assert not policy.apply(unload, load_only=True, admin=True)
    assert unload == {"keep_alive": "0s"}
    with pytest.raises(GatewayError) as refused:
        policy.apply({"keep_alive": 0}, load_only=True, admin=False)
    assert refused.value.status == 403


@pytest.fixture
def keys(tmp_path: Path) -> Keys:
    return Keys(tmp_path, alice="    models: [llama3.2]\n", ops="    admin: true\n")


@pytest.fixture
def policed(
    keys: Keys, gateway_factory: GatewayFactory, emulator: Emulator, redis_server: RedisServer
) -> GatewayProcess:
    return gateway_factory(
        GATEWAY_UPSTREAM_URL=emulator.url,
        GATEWAY_REDIS_URL=redis_server.url,
        GATEWAY_AUTH_DISABLED="false",
        GATEWAY_API_KEYS_FILE=str(keys.file),
        GATEWAY_KEEP_ALIVE_MIN_SECONDS="60",
        GATEWAY_KEEP_ALIVE_MAX_SECONDS="600",
    )


def _expires_in(emulator: Emulator, model: str) -> float:
    loaded = httpx.get(f"{emulator.url}/api/ps", timeout=10).json()["models"]
    (entry,) = [m for m in loaded if m["name"].startswith(model)]
    expires = datetime.fromisoformat(entry["expires_at"].replace("Z", "+00:00"))
    return (expires - datetime.now(UTC)).total_seconds()


def test_only_an_admin_key_may_unload_a_model(
    policed: GatewayProcess, keys: Keys, emulator: Emulator
) -> None:
    with httpx.Client(base_url=policed.url, timeout=30) as http:
        loaded = http.post(
            "/api/generate", json={"model": "llama3.2", "prompt": "hi", "stream": False},
            headers=keys.auth("alice"),
        )  # fmt: skip
        assert loaded.status_code == 200
        unload = {"model": "llama3.2", "keep_alive": 0}
        refused = http.post("/api/generate", json=unload, headers=keys.auth("alice"))
        assert refused.status_code == 403
        assert refused.json() == {"error": "only an admin key may unload a model (keep_alive 0)"}
        refused_chat = http.post(
            "/api/chat", json={**unload, "messages": []}, headers=keys.auth("alice")
        )
        assert refused_chat.status_code == 403
        assert _expires_in(emulator, "llama3.2") > 30  # still loaded
        allowed = http.post("/api/generate", json=unload, headers=keys.auth("ops"))
        assert allowed.status_code == 200
        assert allowed.json()["done_reason"] == "unload"
    assert httpx.get(f"{emulator.url}/api/ps", timeout=10).json()["models"] == []


def test_keep_alive_is_clamped_to_the_operators_range(
    policed: GatewayProcess, keys: Keys, emulator: Emulator
) -> None:
    with httpx.Client(base_url=policed.url, headers=keys.auth("alice"), timeout=30) as http:
        pinned = http.post(
            "/api/generate",
            json={"model": "llama3.2", "prompt": "pin", "stream": False, "keep_alive": "876000h"},
        )
        assert pinned.status_code == 200
        assert 500 < _expires_in(emulator, "llama3.2") <= 600
        after = http.post(
            "/api/generate",
            json={"model": "llama3.2", "prompt": "then go", "stream": False, "keep_alive": 0},
        )
        assert after.status_code == 200
        assert 30 < _expires_in(emulator, "llama3.2") <= 60
        bad = http.post(
            "/api/generate",
            json={"model": "llama3.2", "prompt": "x", "keep_alive": "5 minutes"},
        )
        assert bad.status_code == 400
        assert bad.json()["error"].startswith("invalid keep_alive")
