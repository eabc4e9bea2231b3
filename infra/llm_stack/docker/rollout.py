"""Rolling changes on Docker: Ollama instances drained through the gateway, one at a time.

A change to the Ollama image, environment or model gate replaces every instance, and a
gateway rebuild every replica. Pulumi runs the replacements this way:

- Order. Each instance `depends_on` the one before it (each gateway replica likewise).
  A resource's RegisterResource returns only once its step (here: delete, create,
  wait until healthy, hooks) is done, and the next one registers only then, so no
  two instances (or replicas) are ever down together.
- Delete before create, with fixed names. A container name (and a GPU) can belong
  to one container only, so the old one goes first (`delete_before_replace`).
  A plain `depends_on` edge does not pull the next instance into that delete
  (Pulumi's `calculateDependentReplacements` only follows input properties).
- Drain first. A `before_delete` hook drains the instance through a gateway replica
  (`llm-gateway drain --until ready --wait`, run with `docker exec` inside it, over
  its loopback port): no new request goes there, queued ones go elsewhere, and the
  delete waits until nothing is in flight there. Ollama's SIGTERM then cuts nothing.
- Re-admit when it answers. The provider waits for the new container's healthcheck
  (`wait`), and an `after_create` hook undrains it. The gateway would also end an
  `until=ready` drain by itself once it sees the instance down and up again.

The hooks run in the Pulumi program, on the machine running `pulumi up`, with the
docker CLI of that machine (the engine the provider talks to) and an admin key from
LLM_GATEWAY_ADMIN_KEY, passed to `docker exec` by name, never in an argument. Pulumi
runs them neither in a preview nor under the test mocks; a before_delete hook runs with
the hooks recorded in the old state, so a stack deployed before hooks existed needs
one `pulumi up` (with no replacement) before its first rolling change. The hooks are
registered under fixed names, whatever the instance count, so an instance removed
from the config is drained before Pulumi deletes it too.
"""

from __future__ import annotations

import os
import subprocess
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field

import pulumi

ADMIN_KEY_ENV = "LLM_GATEWAY_ADMIN_KEY"
# Set to 1 to replace without draining (a stack nobody uses, or no gateway to ask).
SKIP_ENV = "LLM_STACK_SKIP_DRAIN"

DRAIN_HOOK = "llm-stack-drain-ollama"
READMIT_HOOK = "llm-stack-readmit-ollama"

# The drain CLI's exit status when its --wait timed out.
DRAIN_TIMED_OUT = 3

Runner = Callable[[Sequence[str], Mapping[str, str]], "subprocess.CompletedProcess[str]"]


def run_docker(argv: Sequence[str], env: Mapping[str, str]) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        list(argv), env=dict(env), capture_output=True, text=True, check=False, timeout=3600
    )


class RolloutError(RuntimeError):
    """A drain or a re-admission failed: Pulumi stops before deleting anything more."""


@dataclass(frozen=True)
class GatewayAdmin:
    """Drains and undrains Ollama instances through whichever gateway replica runs."""

    # Gateway container names, tried in turn.
    gateways: Sequence[str]
    gateway_port: int
    ollama_port: int
    # How long a drain waits for the requests in flight to finish.
    drain_timeout_seconds: float
    runner: Runner = run_docker
    environ: Mapping[str, str] = field(default_factory=lambda: os.environ)

    def instance_name(self, container: str) -> str:
        """The gateway's name of an instance: host:port of its URL."""
        return f"{container}:{self.ollama_port}"

    def drain_argv(self, gateway: str, container: str) -> list[str]:
        return [
            *self._exec(gateway),
            "--instance", self.instance_name(container),
            "--until", "ready",
            "--wait", "--timeout", f"{self.drain_timeout_seconds:g}",
        ]  # fmt: skip

    def undrain_argv(self, gateway: str, container: str) -> list[str]:
        return [*self._exec(gateway), "--instance", self.instance_name(container), "--undrain"]

    def _exec(self, gateway: str) -> list[str]:
        # `-e NAME` passes the caller's value: the key never appears in an argument.
        return [
            "docker", "exec", "-e", ADMIN_KEY_ENV, gateway,
            "llm-gateway", "drain", "--url", f"http://127.0.0.1:{self.gateway_port}",
        ]  # fmt: skip

    def running_gateway(self) -> str | None:
        for gateway in self.gateways:
            probe = ["docker", "inspect", "--format", "{{.State.Running}}", gateway]
            result = self.runner(probe, self.environ)
            if result.returncode == 0 and result.stdout.strip() == "true":
                return gateway
        return None

    def _skipped(self) -> bool:
        return self.environ.get(SKIP_ENV, "") == "1"

    def drain(self, container: str) -> str:
        """Drain `container`'s instance and wait until nothing is in flight there."""
        if self._skipped():
            return f"{container}: not drained ({SKIP_ENV}=1)"
        gateway = self.running_gateway()
        if gateway is None:
            # No gateway runs, so none places requests on this instance either.
            return f"{container}: no gateway runs, nothing to drain"
        if not self.environ.get(ADMIN_KEY_ENV):
            raise RolloutError(
                f"{container} is about to be replaced: set {ADMIN_KEY_ENV} to an admin key so "
                f"it can be drained first (or {SKIP_ENV}=1 to replace it without draining)"
            )
        result = self.runner(self.drain_argv(gateway, container), self.environ)
        if _unknown(result):
            # The running gateways never placed anything there (not in their list).
            return f"{container}: unknown to the running gateways, nothing to drain"
        if result.returncode == DRAIN_TIMED_OUT:
            raise RolloutError(
                f"{container}: requests still in flight after {self.drain_timeout_seconds:g}s; "
                f"it stays drained (undrain: llm-gateway drain --instance "
                f"{self.instance_name(container)} --undrain): {result.stderr.strip()}"
            )
        if result.returncode != 0:
            raise RolloutError(f"{container}: drain through {gateway} failed: {_why(result)}")
        return f"{container}: drained through {gateway}: {result.stdout.strip()}"

    def readmit(self, container: str) -> str:
        """Undrain `container`'s instance (called once its new container is healthy)."""
        if self._skipped():
            return f"{container}: not undrained ({SKIP_ENV}=1)"
        gateway = self.running_gateway()
        if gateway is None or not self.environ.get(ADMIN_KEY_ENV):
            # A first deploy (no gateway yet), or no key: an until=ready drain ends by
            # itself once the gateway sees the instance answer.
            return f"{container}: left to the gateway to re-admit when it answers"
        result = self.runner(self.undrain_argv(gateway, container), self.environ)
        if _unknown(result):
            # A new instance: the gateways learn it when they roll with the new list.
            return f"{container}: new, the gateways take it up when they roll"
        if result.returncode != 0:
            raise RolloutError(f"{container}: undrain through {gateway} failed: {_why(result)}")
        return f"{container}: re-admitted through {gateway}: {result.stdout.strip()}"


def _unknown(result: subprocess.CompletedProcess[str]) -> bool:
    """The gateway answered 404: it has no instance of that name."""
    return result.returncode == 1 and "404: no Ollama instance is named" in result.stderr


def _why(result: subprocess.CompletedProcess[str]) -> str:
    return (result.stderr or result.stdout).strip() or f"exit status {result.returncode}"


def _container_name(inputs: Mapping[str, object] | None) -> str:
    name = (inputs or {}).get("name")
    if not isinstance(name, str) or not name:
        raise RolloutError("the hook got a container without a name")
    return name


HookFunction = Callable[[pulumi.ResourceHookArgs], None]


def drain_hook(admin: GatewayAdmin, log: Callable[[str], None] = pulumi.log.info) -> HookFunction:
    """before_delete: drain the old container (its name is in the old inputs)."""

    def drain(args: pulumi.ResourceHookArgs) -> None:
        log(admin.drain(_container_name(args.old_inputs)))

    return drain


def readmit_hook(admin: GatewayAdmin, log: Callable[[str], None] = pulumi.log.info) -> HookFunction:
    """after_create: undrain the new container, healthy by then (the provider waited)."""

    def readmit(args: pulumi.ResourceHookArgs) -> None:
        log(admin.readmit(_container_name(args.new_inputs)))

    return readmit


@dataclass(frozen=True)
class OllamaHooks:
    """The two hooks every Ollama instance is bound to."""

    drain: pulumi.ResourceHook
    readmit: pulumi.ResourceHook

    @classmethod
    def register(cls, admin: GatewayAdmin) -> OllamaHooks:
        """Register the hooks (once per program run, under fixed names)."""
        return cls(
            drain=pulumi.ResourceHook(DRAIN_HOOK, drain_hook(admin)),
            readmit=pulumi.ResourceHook(READMIT_HOOK, readmit_hook(admin)),
        )

    def binding(self) -> pulumi.ResourceHookBinding:
        return pulumi.ResourceHookBinding(before_delete=[self.drain], after_create=[self.readmit])
