"""`llm-gateway`: serve (default), mint keys (`llm-gateway keys new --name team-a`),
report usage (`llm-gateway usage --since 7d --by model`), or drain an Ollama instance
(`llm-gateway drain --instance ollama-1:11434 --wait`)."""

from __future__ import annotations

import argparse
import logging
import os
import shutil
import signal
import sys
import tempfile
from collections.abc import Sequence

from pydantic import ValidationError

from llm_gateway.contract import digest_of, mint_key
from llm_gateway.keys import KeyFileError

log = logging.getLogger("llm_gateway")

_BANNER = "=" * 72


def _settings_error(exc: ValidationError) -> str:
    lines = []
    for err in exc.errors():
        field = ".".join(str(p) for p in err["loc"]) or "settings"
        lines.append(f"  GATEWAY_{field.upper()}: {err['msg'].removeprefix('Value error, ')}")
    return "invalid gateway settings:\n" + "\n".join(lines)


def serve() -> int:
    import uvicorn

    from llm_gateway.app import AuthConfigError, create_app, keyring_for
    from llm_gateway.http_protocol import JsonErrorsProtocol
    from llm_gateway.settings import Settings

    try:
        settings = Settings()
        keyring_for(settings)  # fail before binding the port, with a clear message
    except ValidationError as exc:
        print(_settings_error(exc), file=sys.stderr)
        return 2
    except (AuthConfigError, KeyFileError) as exc:
        print(f"llm-gateway: {exc}", file=sys.stderr)
        return 2
    logging.basicConfig(
        level=settings.log_level.upper(), format="%(asctime)s %(levelname)s %(name)s: %(message)s"
    )
    if settings.auth_disabled:
        log.warning(
            "\n%s\nAUTHENTICATION IS DISABLED (GATEWAY_AUTH_DISABLED=true): anyone who can\n"
            "reach this gateway can use every model. Never expose it like this.\n%s",
            _BANNER,
            _BANNER,
        )
    common = {
        "host": settings.host,
        "port": settings.port,
        "loop": "uvloop",
        # httptools, with its own plain-text 400 (an unparsable request) made JSON.
        "http": JsonErrorsProtocol,
        "access_log": False,
        "log_level": settings.log_level,
        "timeout_graceful_shutdown": int(settings.shutdown_grace_seconds) or None,
        "server_header": False,
        # Nothing reads the client address, so uvicorn need not rewrite it from
        # X-Forwarded-For on every request (its middleware was ~1.5% of a hit).
        "proxy_headers": False,
    }
    # uvicorn drains in-flight requests on SIGTERM/SIGINT, then re-raises the signal
    # with the handlers it found at start; make those no-ops so a graceful stop exits 0.
    for stop_signal in (signal.SIGTERM, signal.SIGINT):
        signal.signal(stop_signal, lambda *_: None)
    if settings.workers == 1:
        uvicorn.run(create_app(settings), **common)  # type: ignore[arg-type]
        return 0
    # Several worker processes share metrics through files (prometheus-client
    # multiprocess mode); the directory must exist and be empty before they start.
    directory = os.environ.get("PROMETHEUS_MULTIPROC_DIR") or tempfile.mkdtemp(prefix="llm-gw-")
    shutil.rmtree(directory, ignore_errors=True)
    os.makedirs(directory, exist_ok=True)
    os.environ["PROMETHEUS_MULTIPROC_DIR"] = directory
    uvicorn.run(
        "llm_gateway.app:create_app", factory=True, workers=settings.workers,
        **common,  # type: ignore[arg-type]
    )  # fmt: skip
    return 0


def keys_new(name: str) -> int:
    key = mint_key()
    digest = digest_of(key)
    print(f"API key for {name!r} (shown once; store it in your secret manager):\n\n  {key}\n")
    print(f"Its SHA-256 digest (what the gateway stores): {digest}\n")
    print("Add it to the stack config:")
    print(f"  pulumi config set --secret --path 'apiKeys.{name}.digest' {digest}")
    print("or to a gateway keys file (GATEWAY_API_KEYS_FILE):")
    print(f"  keys:\n    {name}:\n      digest: {digest}")
    return 0


def keys_digest() -> int:
    key = sys.stdin.readline().strip()
    if not key:
        print("llm-gateway: give the key on standard input", file=sys.stderr)
        return 2
    print(digest_of(key))
    return 0


def usage(since: str, key: str | None, by: str, form: str) -> int:
    """Print usage per key, model or day, read from the gateway's Redis."""
    import asyncio

    from llm_gateway.redis_guard import connect
    from llm_gateway.settings import Settings
    from llm_gateway.usage_report import UsageQueryError, parse_since, read_usage, render

    try:
        settings = Settings()
        days = parse_since(since)
    except ValidationError as exc:
        print(_settings_error(exc), file=sys.stderr)
        return 2
    except UsageQueryError as exc:
        print(f"llm-gateway usage: {exc}", file=sys.stderr)
        return 2

    async def report() -> str:
        client = connect(settings.redis_url, 5.0, settings.redis_ca_file)
        try:
            rows = await read_usage(client, days, by, key)  # type: ignore[arg-type]
        finally:
            await client.aclose()
        return render(rows, by, form)  # type: ignore[arg-type]

    try:
        print(asyncio.run(report()), end="")
    except (OSError, ConnectionError, TimeoutError) as exc:
        print(f"llm-gateway usage: cannot read Redis at GATEWAY_REDIS_URL: {exc}", file=sys.stderr)
        return 1
    except Exception as exc:  # redis-py's errors (auth, TLS) name what went wrong
        print(f"llm-gateway usage: {type(exc).__name__}: {exc}", file=sys.stderr)
        return 1
    return 0


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="llm-gateway", description=__doc__)
    commands = parser.add_subparsers(dest="command")
    commands.add_parser("serve", help="run the gateway (the default); settings from GATEWAY_*")
    keys = commands.add_parser("keys", help="API keys").add_subparsers(dest="keys_command")
    new = keys.add_parser("new", help="mint a key and print the digest to configure")
    new.add_argument("--name", required=True, help="the key's name (in logs and metrics)")
    keys.add_parser("digest", help="print the SHA-256 digest of a key read from stdin")
    report = commands.add_parser(
        "usage", help="usage per key, model or day (from Redis: GATEWAY_REDIS_URL)"
    )
    report.add_argument("--since", default="7d", help="days back, today included (7d)")
    report.add_argument("--key", help="one key name only")
    report.add_argument("--by", choices=["key", "model", "day"], default="key")
    report.add_argument("--format", choices=["table", "csv", "json"], default="table")
    draining = commands.add_parser(
        "drain", help="drain (or undrain) an Ollama instance through a gateway's admin API"
    )
    draining.add_argument("--instance", required=True, help="its name (GET /admin/instances)")
    draining.add_argument("--undrain", action="store_true", help="place requests on it again")
    draining.add_argument(
        "--until", choices=["undrain", "ready"], default="undrain",
        help="undrain: until --undrain; ready: until it answers again after being down",
    )  # fmt: skip
    draining.add_argument("--wait", action="store_true", help="until nothing is in flight there")
    draining.add_argument("--timeout", type=float, default=600.0, help="of --wait, seconds")
    draining.add_argument("--url", help="the gateway (LLM_GATEWAY_URL; http://127.0.0.1:8000)")
    draining.add_argument("--key", help="an admin key (better: LLM_GATEWAY_ADMIN_KEY)")
    args = parser.parse_args(argv)
    if args.command == "drain":
        import asyncio

        from llm_gateway.drain_cli import default_key, default_url, drain

        return asyncio.run(
            drain(
                args.url or default_url(), args.key or default_key(), args.instance,
                undrain=args.undrain, until=args.until, wait=args.wait, wait_seconds=args.timeout,
            )
        )  # fmt: skip
    if args.command == "usage":
        return usage(args.since, args.key, args.by, args.format)
    if args.command == "keys":
        if args.keys_command == "new":
            return keys_new(args.name)
        if args.keys_command == "digest":
            return keys_digest()
        parser.parse_args(["keys", "--help"])
    return serve()


if __name__ == "__main__":
    raise SystemExit(main())
