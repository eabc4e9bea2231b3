"""aiohttp's connection pool, minus one bug: a kept connection that received bytes while
idle is never handed out again (aio-libs/aiohttp#13656, unfixed in 3.14.x).

aiohttp keeps parsing a pooled connection while it sits idle. A server that writes
something there (a `408 Request Timeout` before it closes, or junk) leaves a parsed
message queued on the connection, and `TCPConnector._get` hands the connection to the
next request, which then reads that message as its own answer. Whatever the peer said
while nobody asked, the connection is dead to us: this is httpcore's and nginx's rule
("a readable idle connection is dead").

The override is the smallest possible: call aiohttp's own `_get` and drop the
connection it picked when its protocol already says `should_close` (which covers a
queued message, an unparsed tail, a parse error and `Connection: close`); it also notes
whether a kept connection was handed out (`REUSED`). `_get` is a private method, so
aiohttp is pinned below the next minor release in gateway/pyproject.toml, and
tests/gateway/test_http_pool.py fails when the method's shape changes. Remove this
module once aiohttp's pool checks `should_close` itself.
"""

from __future__ import annotations

from contextvars import ContextVar
from typing import TYPE_CHECKING, Any

import aiohttp

if TYPE_CHECKING:
    from aiohttp.client_reqrep import ConnectionKey
    from aiohttp.connector import Connection


# Whether the request running in this task got a kept (reused) connection: the one
# retry of a request is for a kept connection that turned out stale. Set here, where
# the pool hands the connection out, and read by the caller in the same task (an
# aiohttp TraceConfig would say the same, at the cost of a Trace and awaited signals on
# every request).
REUSED: ContextVar[bool] = ContextVar("llm_gateway_connection_reused", default=False)


class StrictReuseConnector(aiohttp.TCPConnector):
    """A `TCPConnector` that never reuses a connection the peer wrote to while idle."""

    async def _get(self, key: ConnectionKey, traces: list[Any]) -> Connection | None:
        while True:
            connection = await super()._get(key, traces)
            if connection is None:
                REUSED.set(False)
                return None
            protocol = connection.protocol
            if protocol is not None and not protocol.should_close:
                REUSED.set(True)
                return connection
            # Closed, not released: the bytes it holds answer nobody. Try the next one.
            connection.close()
