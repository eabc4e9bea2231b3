"""uvicorn's httptools protocol, with its one hard-coded plain-text answer made JSON.

A request uvicorn cannot parse (a control byte in a header, a broken request line)
never reaches the app: uvicorn answers `400 Invalid HTTP request received.` itself, in
text/plain. Everything the gateway answers is JSON, so this subclass gives that 400
the same `{"error": ...}` body; the rest is uvicorn's (passed as its `http` class).
"""

from __future__ import annotations

import orjson
from uvicorn.protocols.http.httptools_impl import STATUS_LINE, HttpToolsProtocol


class JsonErrorsProtocol(HttpToolsProtocol):
    def send_400_response(self, msg: str) -> None:
        body = orjson.dumps({"error": msg})
        content = [STATUS_LINE[400]]
        for name, value in self.server_state.default_headers:
            content.extend([name, b": ", value, b"\r\n"])
        content.extend(
            [
                b"content-type: application/json; charset=utf-8\r\n",
                b"content-length: " + str(len(body)).encode("ascii") + b"\r\n",
                b"connection: close\r\n",
                b"\r\n",
                body,
            ]
        )
        self.transport.write(b"".join(content))
        self.transport.close()
