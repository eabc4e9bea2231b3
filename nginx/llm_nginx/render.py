"""nginx.conf from the typed stack config: the one place that decides what it says.

The Pulumi program uploads the returned text into the nginx container; the local
stack and the tests write it to a temp dir and run the real nginx on it.
"""

from __future__ import annotations

import json

import jinja2
from llm_config.model import StackConfig

from llm_nginx.topology import STUB_STATUS_PATH, NginxTopology

TEMPLATE = "nginx.conf.j2"

# Paths the edge passes to the gateway; everything else (ops endpoints, whatever a
# later gateway version adds) answers 404 at the edge unless listed here. /admin/ (the
# queue snapshot, usage) answers only admin keys: the gateway checks, over TLS.
EDGE_PREFIXES = ("/api/", "/v1/", "/admin/")
EDGE_EXACT = ("/", "/health")
# Named in the config as well although the allowlist already refuses them, so that the
# refusal survives someone widening the allowlist.
EDGE_BLOCKED_EXACT = ("/metrics", "/ready")
EDGE_BLOCKED_PREFIXES = ("/_",)

# Ollama endpoints that change state. The balancer never retries these on another
# instance: a pull or create must not run twice, and only one instance pulls.
OLLAMA_MUTATING = ("pull", "push", "create", "copy", "delete", "blobs/")

# Gateway replicas are never marked down: a refused request goes to the next replica
# (proxy_next_upstream error), which costs one refused connect. Marking them down does
# worse during a rolling restart: nginx lets a replica back in with one trial request
# and counts it healthy only once that request *ends*, a whole stream later; the next
# replica stopped meanwhile leaves "no live upstreams" (502s, measured by bench/rollout).
GATEWAY_MAX_FAILS = 0
GATEWAY_FAIL_TIMEOUT_SECONDS = 5
GATEWAY_KEEPALIVE = 32
# Below uvicorn's default keep-alive (5 s): nginx must drop an idle connection before
# the gateway does, or a request may be written into a connection being closed.
GATEWAY_KEEPALIVE_TIMEOUT_SECONDS = 4
# How long nginx keeps a resolved upstream address (`resolver ... valid=`): a replaced
# pod or container is followed within this time. Whoever stops a gateway keeps it
# serving at least this long after its address changed (Kubernetes preStop).
RESOLVER_VALID_SECONDS = 10
# Request bodies up to this size stay in memory; larger ones spill to runtime_dir.
BODY_BUFFER_BYTES = 1024 * 1024


def error_body(message: str) -> str:
    """An Ollama-shaped error, `{"error": "..."}`, safe inside a single-quoted nginx string."""
    text = json.dumps({"error": message}, separators=(",", ":"))
    if "'" in text or "\\" in text:
        raise ValueError(f"error message {message!r} cannot be embedded in nginx.conf")
    return text


def _error_pages(config: StackConfig) -> dict[int, str]:
    cap_mib = config.edge.max_body_mb
    return {
        400: error_body("bad request"),
        401: error_body("unauthorized"),
        403: error_body("forbidden"),
        404: error_body("not found"),
        405: error_body("method not allowed"),
        408: error_body("request timed out"),
        411: error_body("a request body needs a Content-Length"),
        413: error_body(f"request body too large (the limit is {cap_mib} MiB)"),
        414: error_body("request URI too long"),
        429: error_body("rate limit exceeded, retry later"),
        # nginx's own codes; each answers 400 on the wire.
        494: error_body("request headers too large"),
        495: error_body("client certificate refused"),
        496: error_body("client certificate required"),
        497: error_body(f"this port speaks HTTPS only: use {config.edge.url}"),
        500: error_body("internal error in the proxy"),
        501: error_body("transfer encoding not supported"),
        502: error_body("upstream unavailable"),
        503: error_body("upstream unavailable"),
        504: error_body("upstream timed out"),
        505: error_body("HTTP version not supported"),
    }


# Every status nginx itself may answer at the edge, each with its JSON body above.
EDGE_ERROR_CODES = (
    400, 401, 403, 404, 405, 408, 411, 413, 414, 429,
    494, 495, 496, 497, 500, 501, 502, 503, 504, 505,
)  # fmt: skip
# Internal URIs of the error bodies (under /_, which no client reaches).
ERROR_PREFIX = "/_llm_error/"
# nginx-specific codes that go out as 400 (nginx sends them so itself).
WIRE_STATUS = {494: 400, 495: 400, 496: 400, 497: 400}


# Request targets refused at the edge before anything else runs (400). Matched on the
# raw target, before nginx decodes or normalizes it, so that no spelling slips by:
# a `..` in the decoded path (dot segments, `%2e%2e`), an empty segment (`//`) or an
# encoded slash (`%2F`): upstream servers resolve such paths differently from nginx.
REFUSED_PATH_REGEX = r"~*^[^?]*(?:(?:\.|%2e)(?:\.|%2e)|//|%2f|%5c)"
# Query arguments that carry credentials, and the key prefix anywhere in the URL: a
# key never belongs in a URL (URLs are logged, cached and shown by every proxy).
SECRET_QUERY_NAMES = (
    "api[_-]?key", "apikey", "access[_-]?token", "token", "password", "passwd", "pwd",
    "secret", "auth", "authorization",
)  # fmt: skip
SECRET_QUERY_REGEX = r"~*(?:^|&)(?:" + "|".join(SECRET_QUERY_NAMES) + r")="
KEY_PREFIX = "llmsk-"
# Control bytes (tab aside) in a forwarded header value: nginx passes them, uvicorn
# would answer a text/plain 400; the edge answers JSON first.
CONTROL_BYTES_REGEX = r"~[\x00-\x08\x0a-\x1f\x7f]"
# The request headers the gateway reads; nothing else goes upstream from a client
# (an unknown header can carry nothing the gateway would act on, nor any bytes it chokes on).
FORWARDED_HEADERS = (
    ("Authorization", "$http_authorization"),
    ("X-API-Key", "$http_x_api_key"),
    ("Content-Type", "$content_type"),
    ("Accept", "$http_accept"),
    ("User-Agent", "$http_user_agent"),
    ("Cache-Control", "$http_cache_control"),
    ("X-LLM-Priority", "$http_x_llm_priority"),
    ("traceparent", "$http_traceparent"),
    ("tracestate", "$http_tracestate"),
)
# A path ending in a slash (other than `/`): no route of the gateway does, and a
# framework's answer to one is a redirect, whose Location a client may follow in clear.
TRAILING_SLASH_REGEX = r"~^/[^?]*/(?:\?|$)"
# Map variable -> (status, body) of each refusal, checked in this order.
EDGE_REFUSALS = {
    "llm_refused_path": (
        400,
        error_body("refused path: no dot segments, empty segments or encoded slashes"),
    ),
    "llm_secret_in_url": (
        400,
        error_body("an API key never goes in the URL: send it in the Authorization header"),
    ),
    "llm_control_in_header": (400, error_body("a header value holds a control character")),
    "llm_trailing_slash": (404, error_body("not found")),
}


def _ipv6_listen(listen: str) -> str | None:
    """The IPv6 twin of a bare-port `listen` value; None for one bound to an address."""
    return f"[::]:{listen}" if listen.isdigit() else None


def _environment() -> jinja2.Environment:
    return jinja2.Environment(
        loader=jinja2.PackageLoader("llm_nginx", "templates"),
        undefined=jinja2.StrictUndefined,
        autoescape=False,  # noqa: S701 - nginx.conf, not HTML; values are validated
        trim_blocks=True,
        lstrip_blocks=True,
        keep_trailing_newline=True,
    )


def render_nginx_conf(config: StackConfig, topology: NginxTopology) -> str:
    """The complete nginx.conf (main context) for `config` deployed as `topology`."""
    https_port = topology.https_public_port
    edge, balancer = config.edge, config.balancer
    return (
        _environment()
        .get_template(TEMPLATE)
        .render(
            t=topology,
            edge=edge,
            balancer=balancer,
            hostname=edge.hostname,
            redirect_port="" if https_port == 443 else f":{https_port}",
            max_body_bytes=config.max_body_bytes,
            # Internal hop: the gateway may re-encode a body (OpenAI -> Ollama form), so the
            # balancer allows headroom; the edge is where the user-facing cap is enforced.
            balancer_max_body_bytes=2 * config.max_body_bytes,
            body_buffer_bytes=min(BODY_BUFFER_BYTES, config.max_body_bytes),
            errors=_error_pages(config),
            edge_error_codes=EDGE_ERROR_CODES,
            error_prefix=ERROR_PREFIX,
            wire_status=WIRE_STATUS,
            refused_path_regex=REFUSED_PATH_REGEX,
            trailing_slash_regex=TRAILING_SLASH_REGEX,
            secret_query_regex=SECRET_QUERY_REGEX,
            key_prefix=KEY_PREFIX,
            control_bytes_regex=CONTROL_BYTES_REGEX,
            forwarded_headers=FORWARDED_HEADERS,
            edge_refusals=EDGE_REFUSALS,
            edge_prefixes=EDGE_PREFIXES,
            edge_exact=EDGE_EXACT,
            edge_blocked_exact=EDGE_BLOCKED_EXACT,
            edge_blocked_prefixes=EDGE_BLOCKED_PREFIXES,
            mutating_regex="^/api/(?:" + "|".join(OLLAMA_MUTATING) + ")",
            gateway_max_fails=GATEWAY_MAX_FAILS,
            gateway_fail_timeout=GATEWAY_FAIL_TIMEOUT_SECONDS,
            gateway_keepalive=GATEWAY_KEEPALIVE,
            gateway_keepalive_timeout=GATEWAY_KEEPALIVE_TIMEOUT_SECONDS,
            stub_status_path=STUB_STATUS_PATH,
            resolver_valid_seconds=RESOLVER_VALID_SECONDS,
            gateway_tries=topology.gateway_tries or len(topology.gateways),
            ipv6_listen=_ipv6_listen,
        )
    )
