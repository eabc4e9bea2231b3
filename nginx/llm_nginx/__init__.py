"""nginx for the llm-stack: the TLS edge and the internal Ollama balancer, as config text.

- `render.py`: `render_nginx_conf`, nginx.conf from the typed stack config and a topology
  (the one template is in `templates/`).
- `topology.py`: where nginx finds its peers, files and ports on each platform
  (container or loopback addresses): what the stack config does not say.

What the config does and why: nginx/README.md.
"""

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
