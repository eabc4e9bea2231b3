"""A stand-in for the gateway behind the edge: it tells what reached it.

The edge tests need to see what nginx forwards (headers, path, body size) and to
stream with a known pace, without depending on the real gateway. Every path answers
200, including /metrics and /ready, so a 404 through the edge is nginx's doing.

    python -m tests.nginx.echo_backend --port P

- any path: JSON {"port", "method", "path", "raw_path", "query", "headers", "body_bytes"}
- /api/stream?n=N&delay=S: N NDJSON lines, S seconds apart (the first one at once)
- /api/sleep?seconds=S: answers after S seconds
Responses carry `X-Backend-Port`, and an `X-Request-ID` echoing the one received.
With `--status 503` every request instead gets that status and an Ollama-shaped error
(an instance whose queue is full).
"""

from __future__ import annotations

import argparse
import asyncio
import json
from collections.abc import Awaitable, Callable, MutableMapping
from typing import Any
from urllib.parse import parse_qs

import uvicorn

Scope = MutableMapping[str, Any]
Message = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[Message]]
Send = Callable[[Message], Awaitable[None]]


BUSY = b'{"error":"server busy, please try again.  maximum pending requests exceeded"}'


def make_app(port: int, status: int = 200) -> Callable[[Scope, Receive, Send], Awaitable[None]]:
    async def app(scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            return
        body_bytes = 0
        while True:
            message = await receive()
            body_bytes += len(message.get("body", b""))
            if not message.get("more_body"):
                break
        headers = {k.decode("latin-1"): v.decode("latin-1") for k, v in scope["headers"]}
        query = {k: v[0] for k, v in parse_qs(scope["query_string"].decode()).items()}
        out_headers = [(b"x-backend-port", str(port).encode())]
        if "x-request-id" in headers:
            out_headers.append((b"x-request-id", headers["x-request-id"].encode("latin-1")))
        path = scope["path"]
        if status != 200:
            start = {"type": "http.response.start", "status": status, "headers": out_headers}
            start["headers"] = [*out_headers, (b"content-type", b"application/json")]
            await send(start)
            await send({"type": "http.response.body", "body": BUSY})
            return
        if path == "/api/stream":
            await send(
                {
                    "type": "http.response.start",
                    "status": 200,
                    "headers": [*out_headers, (b"content-type", b"application/x-ndjson")],
                }
            )
            count, delay = int(query.get("n", "5")), float(query.get("delay", "0.2"))
            for index in range(count):
                if index:
                    await asyncio.sleep(delay)
                line = json.dumps({"index": index, "done": index == count - 1}) + "\n"
                await send({"type": "http.response.body", "body": line.encode(), "more_body": True})
            await send({"type": "http.response.body", "body": b""})
            return
        if path == "/api/sleep":
            await asyncio.sleep(float(query.get("seconds", "1")))
        payload = {
            "port": port,
            "method": scope["method"],
            "path": path,
            "raw_path": scope.get("raw_path", b"").decode("latin-1"),
            "query": scope["query_string"].decode("latin-1"),
            "headers": headers,
            "body_bytes": body_bytes,
        }
        data = json.dumps(payload).encode()
        await send(
            {
                "type": "http.response.start",
                "status": 200,
                "headers": [*out_headers, (b"content-type", b"application/json")],
            }
        )
        await send({"type": "http.response.body", "body": data})

    return app


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--status", type=int, default=200)
    args = parser.parse_args()
    app = make_app(args.port, args.status)
    uvicorn.run(app, host=args.host, port=args.port, log_level="warning", lifespan="off")


if __name__ == "__main__":
    main()
