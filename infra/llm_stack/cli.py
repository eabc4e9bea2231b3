"""`llm-stack`: the project's command line. `llm-stack local up` runs the stack on this host."""

from __future__ import annotations

import argparse
from collections.abc import Sequence
from pathlib import Path

from llm_stack.local.ollama import DEFAULT_OLLAMA_URL

LOCAL_UP_HELP = """\
Run the whole request path on this host as plain processes, rendered from a stack file
with the same functions the Pulumi program uses: redis-server, Ollama (a real one if it
answers on --ollama-url, otherwise emulators), nginx (TLS edge + balancer), the
gateways, the nginx exporter and Prometheus. Runs in the foreground; Ctrl-C or SIGTERM
stops everything it started.
"""


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="llm-stack", description=__doc__)
    commands = parser.add_subparsers(dest="command", required=True)
    local = commands.add_parser("local", help="the stack as processes on this host")
    local_commands = local.add_subparsers(dest="local_command", required=True)
    up = local_commands.add_parser(
        "up", help="start the local stack (foreground)", description=LOCAL_UP_HELP
    )
    which = up.add_mutually_exclusive_group()
    which.add_argument("--stack", help="stack name: reads Pulumi.<stack>.yaml (default: dev)")
    which.add_argument("--config", type=Path, metavar="PATH", help="a Pulumi.<stack>.yaml file")
    up.add_argument(
        "--free-ports",
        action="store_true",
        help="free loopback ports for the edge too, instead of edge.httpsPort/httpPort",
    )
    up.add_argument(
        "--workdir", type=Path, metavar="DIR", help="default: <project>/.local-stack/<stack>"
    )
    up.add_argument(
        "--ollama-url",
        default=DEFAULT_OLLAMA_URL,
        metavar="URL",
        help=f"use the Ollama answering here (default: {DEFAULT_OLLAMA_URL}); "
        "if none answers within 1 s, emulators start instead",
    )
    up.add_argument(
        "--emulate", action="store_true", help="start emulators without looking for an Ollama"
    )
    up.add_argument(
        "--outputs",
        type=Path,
        metavar="FILE",
        help="outputs JSON (default: <workdir>/outputs.json)",
    )
    local_commands.add_parser(
        "deps",
        help="install the missing system packages the local stack runs (apt-get; says what)",
    )
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    if args.local_command == "deps":
        import sys

        from llm_stack.local.deps import install_missing

        return install_missing(sys.stdout)
    # Imported here: `llm-stack --help` stays fast and free of side effects.
    from llm_stack.local.runner import UpOptions, run_up

    options = UpOptions(
        stack=args.stack or "dev",
        config_path=args.config,
        free_ports=args.free_ports,
        workdir=args.workdir,
        ollama_url=args.ollama_url,
        emulate=args.emulate,
        outputs=args.outputs,
    )
    return run_up(options)


if __name__ == "__main__":
    raise SystemExit(main())
