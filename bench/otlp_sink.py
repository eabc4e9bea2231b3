"""An OTLP/HTTP trace receiver that accepts and drops everything: the far end of the
benchmark's traced gateway (`python -m bench.otlp_sink --port 4318`). It counts the
spans it decoded, so a run can show that spans really left."""

from __future__ import annotations

import argparse

from aiohttp import web
from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import ExportTraceServiceRequest


def app() -> web.Application:
    received = {"spans": 0}

    async def traces(request: web.Request) -> web.Response:
        message = ExportTraceServiceRequest()
        message.ParseFromString(await request.read())
        received["spans"] += sum(
            len(scope.spans) for rs in message.resource_spans for scope in rs.scope_spans
        )
        return web.Response(body=b"", content_type="application/x-protobuf")

    async def count(request: web.Request) -> web.Response:
        return web.json_response(received)

    application = web.Application()
    application.router.add_post("/v1/traces", traces)
    application.router.add_get("/spans", count)
    return application


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--port", type=int, required=True)
    args = parser.parse_args()
    web.run_app(app(), host="127.0.0.1", port=args.port, print=None, access_log=None)


if __name__ == "__main__":
    main()
