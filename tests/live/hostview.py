"""The running stack as seen from its host: every check runs its commands there
(testinfra's `host.run`), so the same code checks this machine (`local://`), a GPU
box over SSH (`ssh://`) or a Docker-in-Docker host (`docker://`).

Local outputs (`llm-stack local up`) name processes and loopback ports; Docker outputs
(`pulumi stack output --json --show-secrets`) name containers, reached with
`docker exec`.
"""

from __future__ import annotations

import json
import shlex
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, TypeVar
from urllib.parse import urlsplit

from tests.live.outputs import OLLAMA_PORT, REDIS_PORT, containers, is_docker_host

T = TypeVar("T")
# Where the nginx container keeps the edge certificate (llm_nginx.CONTAINER_CERT_PATH).
CONTAINER_CERT_PATH = "/etc/nginx/tls/edge.crt"
PROMETHEUS_CONTAINER_URL = "http://127.0.0.1:9090"


@dataclass(frozen=True)
class HttpReply:
    status: int
    headers: dict[str, str]
    body: bytes


def parse_curl(output: bytes) -> HttpReply:
    """`curl -sS -D - ...` output: status line, headers, blank line, body."""
    head, _, body = output.partition(b"\r\n\r\n")
    lines = head.decode("latin-1").split("\r\n")
    status = int(lines[0].split()[1])
    headers = {}
    for line in lines[1:]:
        name, _, value = line.partition(":")
        headers[name.strip().lower()] = value.strip()
    return HttpReply(status, headers, body)


def poll(check: Callable[[], T | None], timeout: float, what: str) -> T:
    deadline = time.monotonic() + timeout
    last: object = None
    while True:
        try:
            result = check()
        except (AssertionError, ValueError, KeyError) as exc:
            result, last = None, exc
        if result:
            return result
        if time.monotonic() > deadline:
            raise AssertionError(f"{what}: not true after {timeout}s (last: {last})")
        time.sleep(0.5)


class LiveStack:
    """A deployed (or local) stack and the host it runs on."""

    def __init__(self, outputs: dict[str, Any], host: Any) -> None:
        self.outputs = outputs
        self.host = host
        self.docker = is_docker_host(outputs)

    @property
    def local(self) -> dict[str, Any]:
        local: dict[str, Any] = self.outputs["local"]
        return local

    def services(self, role: str) -> list[dict[str, Any]]:
        return [s for s in self.local["services"] if s["role"] == role]

    # -- what must (not) listen --------------------------------------------------------
    def edge_listeners(self) -> list[tuple[str, int]]:
        return [(p["address"], int(p["port"])) for p in self.outputs["edgePorts"]]

    def private_ports(self) -> dict[str, list[int]]:
        """Ports that must never listen on a public interface of the host, by role.

        Ollama's and Redis's well-known ports always; locally also every port of the
        run except the edge (the balancer, stub_status, gateways, emulators, ...).
        """
        ports: dict[str, list[int]] = {"ollama": [OLLAMA_PORT], "redis": [REDIS_PORT]}
        if self.docker:
            return ports
        edge = {port for _, port in self.edge_listeners()}
        for service in self.local["services"]:
            role_ports = list(service.get("ports", {}).values()) or [service["port"]]
            ports.setdefault(service["role"], [])
            ports[service["role"]] += [p for p in role_ports if p not in edge]
        ollama = self.local["ollama"]
        if ollama["real"]:
            ports["ollama"].append(int(urlsplit(ollama["url"]).port or 80))
        return {role: sorted(set(found)) for role, found in ports.items()}

    # -- commands on the host ----------------------------------------------------------
    def run(self, command: str, *args: Any) -> Any:
        return self.host.run(command, *args)

    def check_output(self, command: str, *args: Any) -> str:
        result = self.run(command, *args)
        assert result.rc == 0, f"{result.command!r} failed ({result.rc}): {result.stderr}"
        return str(result.stdout)

    def docker_exec(self, container: str, *argv: str) -> str:
        command = "docker exec " + " ".join(shlex.quote(a) for a in (container, *argv))
        return self.check_output(command)

    def gateway_health(self) -> dict[str, str]:
        """Each gateway replica's /health body, fetched where the replica lives."""
        bodies = {}
        if self.docker:
            for container in containers(self.outputs, "gateway"):
                env = self.inspect(container.name)["Config"]["Env"]
                port = next(e.split("=", 1)[1] for e in env if e.startswith("GATEWAY_PORT="))
                script = (
                    "import urllib.request; print(urllib.request.urlopen("
                    f"'http://127.0.0.1:{port}/health', timeout=4).read().decode())"
                )
                bodies[container.name] = self.docker_exec(container.name, "python", "-c", script)
        else:
            for service in self.services("gateway"):
                url = f"http://{service['address']}:{service['port']}/health"
                bodies[service["name"]] = self.check_output("curl -sS --max-time 10 %s", url)
        return bodies

    def inspect(self, container: str) -> dict[str, Any]:
        inspected: dict[str, Any] = self.host.docker(container).inspect()
        return inspected

    # -- through the edge --------------------------------------------------------------
    def _edge_ca(self) -> str:
        """A CA file on the host that trusts the edge's certificate."""
        if not self.docker:
            return str(self.local["caCert"])
        nginx = containers(self.outputs, "nginx")[0].name
        # The deployed certificate itself (self-signed, or the provided chain: curl
        # accepts a partial chain as trust anchor).
        return self.check_output(
            'umask 077; f=$(mktemp); docker exec %s cat %s > "$f" && echo "$f"',
            nginx,
            CONTAINER_CERT_PATH,
        ).strip()

    def edge_request(self, path: str, body: dict[str, Any]) -> HttpReply:
        """POST through the edge with the dev key, from the host, verifying TLS."""
        url = urlsplit(self.outputs["gatewayUrl"])
        port = url.port or 443
        https = next(p for p in self.outputs["edgePorts"] if p["name"] == "https")
        address = https["address"] if https["address"] not in ("0.0.0.0", "::") else "127.0.0.1"
        result = self.run(
            "curl -sS --max-time 300 -D - --cacert %s --resolve %s -H %s -H %s -d %s %s",
            self._edge_ca(),
            f"{url.hostname}:{port}:{address}",
            f"Authorization: Bearer {self.outputs['devApiKey']}",
            "Content-Type: application/json",
            json.dumps(body),
            f"{self.outputs['gatewayUrl']}{path}",
        )
        assert result.rc == 0, f"curl through the edge failed ({result.rc}): {result.stderr}"
        return parse_curl(result.stdout_bytes)

    # -- Prometheus --------------------------------------------------------------------
    def prometheus_api(self, path: str) -> Any:
        if self.docker:
            prometheus = containers(self.outputs, "prometheus")[0].name
            text = self.docker_exec(
                prometheus, "wget", "-qO-", f"{PROMETHEUS_CONTAINER_URL}/api/v1/{path}"
            )
        else:
            url = f"{self.local['prometheusUrl']}/api/v1/{path}"
            text = self.check_output("curl -sS --max-time 10 %s", url)
        reply = json.loads(text)
        assert reply["status"] == "success", reply
        return reply["data"]

    def gateway_count(self) -> int:
        if self.docker:
            return len(containers(self.outputs, "gateway"))
        return len(self.services("gateway"))
