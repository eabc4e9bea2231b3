"""nginx for the llm-stack: the TLS edge and the internal Ollama balancer, as config text."""

from llm_nginx.render import RESOLVER_VALID_SECONDS, render_nginx_conf
from llm_nginx.topology import (
    CONTAINER_CERT_PATH,
    CONTAINER_CONF_PATH,
    CONTAINER_HTTP_PORT,
    CONTAINER_HTTPS_PORT,
    CONTAINER_KEY_PATH,
    CONTAINER_RUNTIME_DIR,
    DOCKER_DNS,
    STUB_STATUS_PATH,
    NginxTopology,
    container_topology,
    loopback_topology,
)

__all__ = [
    "CONTAINER_CERT_PATH",
    "CONTAINER_CONF_PATH",
    "CONTAINER_HTTPS_PORT",
    "CONTAINER_HTTP_PORT",
    "CONTAINER_KEY_PATH",
    "CONTAINER_RUNTIME_DIR",
    "DOCKER_DNS",
    "RESOLVER_VALID_SECONDS",
    "STUB_STATUS_PATH",
    "NginxTopology",
    "container_topology",
    "loopback_topology",
    "render_nginx_conf",
]
