"""What a local run tells the user: progress, one line per service, then how to use it."""

from __future__ import annotations

import json
import shlex
import sys
import time
from pathlib import Path
from typing import TextIO

from llm_stack.local.errors import LocalStackError
from llm_stack.local.ollama import RealOllama
from llm_stack.local.plan import LocalPlan, LocalSecrets, ServiceSpec
from llm_stack.local.source import StackSource

PREFIX = "llm-stack local"
RULE = "=" * 72


def gateway_cli() -> str:
    """The `llm-gateway` command of this venv, usable from any directory."""
    script = Path(sys.executable).parent / "llm-gateway"
    return shlex.quote(str(script)) if script.exists() else "uv run --frozen llm-gateway"


def how_to_use(plan: LocalPlan, secrets: LocalSecrets) -> list[str]:
    """The admin endpoints, the usage report and the Python clients, ready to paste."""
    layout = plan.layout
    ca = shlex.quote(str(layout.cert))
    lines = []
    if secrets.admin_key:
        lines += [
            "  admin endpoints (the admin key):",
            f"    curl --cacert {ca} '{plan.edge_url}/admin/usage?since=7d&by=key' "
            f'-H "Authorization: Bearer {secrets.admin_key}"',
            f"    curl --cacert {ca} {plan.edge_url}/admin/queue "
            f'-H "Authorization: Bearer {secrets.admin_key}"',
        ]
    url_file = shlex.quote(str(layout.redis_url_file))
    lines += [
        "  usage report (reads the state Redis; its URL and password are in a 0600 file):",
        f'    GATEWAY_REDIS_URL="$(cat {url_file})" {gateway_cli()} usage --since 7d --by model',
        "  Python clients trust the self-signed CA with verify= (docs/security.md):",
        f'    ca = ssl.create_default_context(cafile="{layout.cert}")',
        f'    openai.OpenAI(base_url="{plan.edge_url}/v1", api_key=KEY, '
        "http_client=httpx.Client(verify=ca))",
        f'    ollama.Client(host="{plan.edge_url}", '
        'headers={"Authorization": "Bearer " + KEY}, verify=ca)',
    ]
    return lines


class Console:
    def __init__(self, out: TextIO | None = None, err: TextIO | None = None) -> None:
        self.out = out or sys.stdout
        self.err = err or sys.stderr

    def line(self, text: str = "") -> None:
        print(text, file=self.out, flush=True)

    def event(self, text: str) -> None:
        """Something that happened while the stack runs (restarts, stops)."""
        self.line(f"[{time.strftime('%H:%M:%S')}] {text}")

    def error(self, exc: LocalStackError | str) -> None:
        print(f"{PREFIX}: error: {exc}", file=self.err, flush=True)

    # -- start-up ------------------------------------------------------------------------
    def starting(self, source: StackSource, workdir: Path) -> None:
        self.line(f"{PREFIX}: stack {source.stack!r} from {source.path}")
        self.line(f"  work dir {workdir} (logs in {workdir / 'logs'})")
        for note in source.notes:
            self.line(f"  note: {note}")
        if source.config.edge.tls == "provided":
            self.line(
                "  note: edge.tls is 'provided'; locally the edge uses a self-signed certificate"
            )

    def ollama(self, real: RealOllama | None, probed_url: str | None, plan: LocalPlan) -> None:
        if real is not None:
            self.line(f"  Ollama: using the real Ollama {real.version} at {real.url}")
            instances = plan.config.ollama.instances
            if instances > 1:
                self.line(
                    f"  note: ollama.instances is {instances}; locally this one Ollama serves all"
                )
            return
        why = (
            f"no Ollama answers on {probed_url}"
            if probed_url is not None
            else "emulators requested (--emulate)"
        )
        count = len(plan.ports.emulators)
        self.line(RULE)
        self.line(f"  OLLAMA EMULATORS: {why}, so {count} Ollama EMULATOR(S) start instead.")
        self.line("  They speak Ollama's API but answer with CANNED TEXT: this is not a model.")
        self.line(f"  Models they list: {', '.join(plan.config.ollama.models)}")
        self.line(RULE)

    def service(self, spec: ServiceSpec, status: str) -> None:
        where = spec.address
        if spec.ports:
            where = ", ".join(f"{name} 127.0.0.1:{port}" for name, port in spec.ports.items())
        self.line(f"  {spec.name:<15} {where:<40} {status}")

    def failed(self, name: str, reason: str, log_tail: str, log: Path | None) -> None:
        self.line(f"  {name:<15} FAILED: {reason}")
        if log_tail.strip():
            self.line(f"  --- last lines of {log} ---")
            for text in log_tail.strip().splitlines()[-20:]:
                self.line(f"  | {text}")

    # -- ready -----------------------------------------------------------------------------
    def ready(self, plan: LocalPlan, secrets: LocalSecrets, outputs: Path) -> None:
        layout = plan.layout
        body = json.dumps(
            {
                "model": plan.config.ollama.models[0],
                "prompt": "Why is the sky blue?",
                "stream": False,
                "options": {"temperature": 0},
            }
        )
        curl = (
            f"curl --cacert {shlex.quote(str(layout.cert))} {plan.edge_url}/api/generate "
            f'-H "Authorization: Bearer {secrets.dev_key}" -d {shlex.quote(body)}'
        )
        self.line(RULE)
        self.line(f"  ready: the {plan.source.stack!r} stack runs on this host")
        self.line(f"  edge (https)  {plan.edge_url}   (CA: {layout.cert})")
        self.line(f"  prometheus    {plan.prometheus_url}")
        self.line(
            "  grafana       not run locally (no Debian package); its provisioning and "
            "dashboards are in"
        )
        self.line(f"                {layout.grafana}")
        self.line(f"                (GF_PATHS_PROVISIONING={layout.grafana_provisioning})")
        self.line(f"  dev API key   {secrets.dev_key}")
        if secrets.admin_key:
            self.line(f"  admin API key {secrets.admin_key}   (key name dev-admin)")
        self.line(f"  outputs       {outputs}   (keys kept across restarts)")
        self.line("  try it:")
        self.line(f"    {curl}")
        for text in how_to_use(plan, secrets):
            self.line(text)
        self.line("  Ctrl-C (or SIGTERM) stops everything.")
        self.line(RULE)
