"""Run the real Pulumi program under mocks and keep what it declared.

The program reads its config exactly as under the CLI: `Pulumi.<stack>.yaml` values
go in through `set_all_config` (structured values as JSON text, as the CLI passes
them), secrets listed as secret keys, which is what `pulumi config set --secret` does.
The mocks echo inputs back as outputs and add what a provider computes (image ids,
passwords, a real certificate pair, the puller's exit code).
"""

from __future__ import annotations

import asyncio
import hashlib
import json
import runpy
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from functools import cache
from pathlib import Path
from typing import Any

import pulumi
import trustme
from llm_config import read_stack_file
from llm_config.load import SecureValue
from llm_stack.program import run
from pulumi.runtime import mocks as pulumi_mocks
from pulumi.runtime.rpc import is_rpc_secret, unwrap_rpc_secret

REPO = Path(__file__).resolve().parents[2]
PROJECT = "llm-stack"


@dataclass(frozen=True)
class TlsPair:
    cert_pem: str
    key_pem: str


@cache
def tls_pair(hostname: str) -> TlsPair:
    """A real certificate and key (trustme), so nginx -t can load what is uploaded."""
    leaf = trustme.CA().issue_cert(hostname, "localhost", "127.0.0.1")
    return TlsPair(
        cert_pem=b"".join(p.bytes() for p in leaf.cert_chain_pems).decode(),
        key_pem=leaf.private_key_pem.bytes().decode(),
    )


def _fake_digest(text: str) -> str:
    return "sha256:" + hashlib.sha256(text.encode()).hexdigest()


class StackMocks(pulumi.runtime.Mocks):
    """Provider stand-ins: inputs come back as outputs, plus computed values."""

    def __init__(self, *, puller_exit_code: int = 0) -> None:
        self.puller_exit_code = puller_exit_code
        # (type, name) of every resource declared, in order: what exists even if the
        # program fails halfway.
        self.created: list[tuple[str, str]] = []

    def new_resource(self, args: pulumi.runtime.MockResourceArgs) -> tuple[str, dict[str, Any]]:
        self.created.append((args.typ, args.name))
        outputs = dict(args.inputs)
        typ = args.typ
        if typ == "docker:index/remoteImage:RemoteImage":
            outputs["imageId"] = _fake_digest(str(args.inputs["name"]))
            outputs["repoDigest"] = f"{args.inputs['name']}@{_fake_digest('repo' + args.name)}"
        elif typ == "docker-build:index:Image":
            outputs["ref"] = args.inputs["tags"][0]
            outputs["digest"] = _fake_digest(args.name)
            outputs["contextHash"] = hashlib.sha256(args.name.encode()).hexdigest()
        elif typ == "docker:index/container:Container" and args.inputs.get("attach"):
            outputs["exitCode"] = self.puller_exit_code
            outputs["containerLogs"] = "pulling llama\npulled llama\n"
        elif typ == "random:index/randomPassword:RandomPassword":
            length = int(args.inputs["length"])
            outputs["result"] = hashlib.sha256(args.name.encode()).hexdigest()[:length]
        elif typ == "tls:index/privateKey:PrivateKey":
            outputs["privateKeyPem"] = tls_pair("localhost").key_pem
        elif typ == "tls:index/selfSignedCert:SelfSignedCert":
            outputs["certPem"] = tls_pair("localhost").cert_pem
        return f"{args.name}-id", outputs

    def call(self, args: pulumi.runtime.MockCallArgs) -> tuple[dict[str, Any], None]:
        return {}, None


_CAPTURE_TYPE = "llm-stack-test:index:Output"
_HOOK_TYPES = ("before_create", "after_create", "before_update", "after_update",
               "before_delete", "after_delete")  # fmt: skip


class RecordingMonitor(pulumi_mocks.MockMonitor):
    """The mock monitor, keeping what a mock never sees: dependencies and hooks."""

    def __init__(self, mocks: pulumi.runtime.Mocks) -> None:
        super().__init__(mocks)
        self.options: dict[str, Options] = {}

    def RegisterResource(self, request: Any) -> Any:
        response = super().RegisterResource(request)
        hooks = {t: tuple(getattr(request.hooks, t)) for t in _HOOK_TYPES}
        self.options[response.urn] = Options(
            dependencies=tuple(request.dependencies),
            property_dependencies=frozenset(
                urn for deps in request.propertyDependencies.values() for urn in deps.urns
            ),
            delete_before_replace=bool(request.deleteBeforeReplace),
            hooks={t: names for t, names in hooks.items() if names},
        )
        return response


@dataclass(frozen=True)
class Options:
    """The resource options the engine receives that order and hook a replacement."""

    # URNs this resource waits for (depends_on, parents' children expanded).
    dependencies: tuple[str, ...] = ()
    # URNs whose outputs its inputs use: what a delete-before-replace cascades along.
    property_dependencies: frozenset[str] = frozenset()
    delete_before_replace: bool = False
    # Hook type (before_delete, after_create, ...) -> registered hook names.
    hooks: Mapping[str, tuple[str, ...]] = field(default_factory=dict)


@dataclass(frozen=True)
class Declared:
    """One declared resource: its type, logical name, URN and inputs (engine shape)."""

    urn: str
    type: str
    name: str
    inputs: Mapping[str, Any]
    options: Options = field(default_factory=Options)

    @property
    def parent_type(self) -> str | None:
        """The type of the parent (a URN names the immediate parent's type only)."""
        chain = self.urn.split("::")[2].split("$")
        return chain[-2] if len(chain) > 1 else None

    def plain(self, key: str, default: Any = None) -> Any:
        """An input with secret markers removed (what a policy pack sees)."""
        return unwrap(self.inputs.get(key, default))


@dataclass
class StackRun:
    stack: str
    resources: list[Declared]
    outputs: dict[str, Any]
    secret_values: dict[str, str] = field(default_factory=dict)

    def of_type(self, typ: str) -> list[Declared]:
        return [r for r in self.resources if r.type == typ]

    @property
    def containers(self) -> list[Declared]:
        return self.of_type("docker:index/container:Container")

    def container(self, docker_name: str) -> Declared:
        (found,) = [c for c in self.containers if c.plain("name") == docker_name]
        return found

    def by_role(self, role: str) -> list[Declared]:
        return [c for c in self.containers if labels(c).get("llm-stack.role") == role]

    def uploads(self, container: Declared) -> dict[str, str]:
        return {u["file"]: u["content"] for u in container.plain("uploads", [])}


def unwrap(value: Any) -> Any:
    value = unwrap_rpc_secret(value)
    if isinstance(value, Mapping):
        return {k: unwrap(v) for k, v in value.items()}
    if isinstance(value, list):
        return [unwrap(v) for v in value]
    return value


def labels(resource: Declared) -> dict[str, str]:
    return {item["label"]: item["value"] for item in resource.plain("labels", [])}


def plain_strings(value: Any) -> Iterator[str]:
    """Every string of a value that is NOT inside a secret marker."""
    if is_rpc_secret(value):
        return
    if isinstance(value, str):
        yield value
    elif isinstance(value, Mapping):
        for v in value.values():
            yield from plain_strings(v)
    elif isinstance(value, list):
        for v in value:
            yield from plain_strings(v)


def config_map(values: Mapping[str, Any]) -> dict[str, str]:
    """`llm-stack:*` values as the CLI hands them to a program (objects as JSON text)."""
    result = {}
    for key, value in values.items():
        if isinstance(value, SecureValue):
            raise AssertionError(f"{key}: a secure value needs the CLI to decrypt it")
        result[f"{PROJECT}:{key}"] = value if isinstance(value, str) else json.dumps(value)
    return result


def prod_secrets() -> dict[str, Any]:
    """What a user sets with `pulumi config set --secret` before deploying prod."""
    pair = tls_pair("llm.example.com")
    return {
        "redisPassword": "r3dis-pass-for-tests-0123456789",
        "grafanaAdminPassword": "graf-admin-for-tests-0123456789",
        "apiKeys": {
            "team-a": {
                "digest": hashlib.sha256(b"llmsk-team-a").hexdigest(),
                "requestsPerMinute": 60,
            },
            "team-b": {
                "digest": hashlib.sha256(b"llmsk-team-b").hexdigest(),
                "models": ["llama3.1:8b"],
            },
        },
        "tlsCert": pair.cert_pem,
        "tlsKey": pair.key_pem,
    }


SECRET_KEYS = ("redisPassword", "grafanaAdminPassword", "apiKeys", "tlsKey", "otelHeaders")


def run_stack(
    stack: str,
    values: Mapping[str, Any],
    *,
    secret_keys: tuple[str, ...] = SECRET_KEYS,
    mocks: StackMocks | None = None,
    as_main: bool = False,
) -> StackRun:
    """Run the program for `stack` with these `llm-stack:*` values; raise what it raises.

    `as_main` runs infra/__main__.py the way the Python language host does (runpy)
    instead of calling `run` (then no outputs are captured). Runs on a loop of its own:
    Pulumi's runtime needs a current event loop, and async tests elsewhere in the
    session leave none behind.
    """
    loop = asyncio.new_event_loop()
    asyncio.set_event_loop(loop)
    try:
        return _run_on_current_loop(stack, values, secret_keys, mocks or StackMocks(), as_main)
    except BaseException:
        # A failed program leaves hundreds of Pulumi's futures holding its exception
        # (raised here, for the test to assert). They are freed whenever the runtime's
        # next run drops them, and the garbage collector may run their "exception was
        # never retrieved" log in the middle of another test's `ast.parse`, where
        # Python 3.11's traceback carets re-enter the parser: SystemError "AST
        # constructor recursion depth mismatch". This loop is done: keep them quiet.
        loop.set_exception_handler(_ignore)
        raise
    finally:
        asyncio.set_event_loop(None)
        loop.close()


def _ignore(loop: asyncio.AbstractEventLoop, context: dict[str, Any]) -> None:
    pass


def _run_on_current_loop(
    stack: str,
    values: Mapping[str, Any],
    secret_keys: tuple[str, ...],
    mocks: StackMocks,
    as_main: bool,
) -> StackRun:
    monitor = RecordingMonitor(mocks)
    pulumi.runtime.set_mocks(mocks, project=PROJECT, stack=stack, preview=False, monitor=monitor)
    pulumi.runtime.set_all_config(
        config_map(values), [f"{PROJECT}:{k}" for k in secret_keys if k in values]
    )

    @pulumi.runtime.test
    def program() -> None:
        if as_main:
            runpy.run_path(str(REPO / "infra" / "__main__.py"), run_name="__main__")
            return
        declared = run(stack)
        # Mocks never see what `pulumi.export` sends; a capture resource per output
        # does, secret markers included.
        for key, value in declared.outputs.items():
            pulumi.CustomResource(_CAPTURE_TYPE, f"output-{key}", {"value": value})

    program()
    resources, outputs = [], {}
    for urn, registration in monitor.resources.items():
        typ = urn.split("::")[2].split("$")[-1]
        name = urn.split("::")[3]
        if typ == _CAPTURE_TYPE:
            outputs[name.removeprefix("output-")] = registration.state.get("value")
        else:
            options = monitor.options.get(urn, Options())
            resources.append(Declared(urn, typ, name, registration.state, options))
    secret_values = {k: v for k, v in values.items() if k in secret_keys and isinstance(v, str)}
    return StackRun(stack, resources, outputs, secret_values)


def stack_values(stack: str, extra: Mapping[str, Any] | None = None) -> dict[str, Any]:
    values = read_stack_file(REPO / f"Pulumi.{stack}.yaml")
    values.update(extra or {})
    return values
