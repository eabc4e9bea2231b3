"""Every image the stack runs or builds from, pinned here and nowhere else.

The config model's defaults read these (a stack file may still override one), the
gateway image is built with `PYTHON` and `UV` passed as build args (the Dockerfile's ARG
defaults are checked equal to them by a test), and the tests compare against these
names. To move a pin, change it here.

Each is the newest patch of its line found in 2026-11: Docker Official Images'
library files (redis, nginx, python), the projects' own release tags (prometheus,
ollama, nginx-prometheus-exporter, dcgm-exporter, uv) and, for the newest patches
after those snapshots (nginx 1.30.5, python 3.11.17, grafana 12.4.12), deployments
pinning them by digest.
"""

from __future__ import annotations

from typing import Final

OLLAMA: Final = "ollama/ollama:0.32.15"
# Stable line (1.30): upstream servers with `resolve` need >= 1.27.3.
NGINX: Final = "nginx:1.30.5-alpine"
# 7.4.3 fixed CVE-2025-21605; 7.4.11 is the 7.4 line's security release of 2026-08-18.
REDIS: Final = "redis:7.4.11-alpine"
# 12.4 is the last minor of Grafana 12 (extended support); 11.6 has left support.
GRAFANA: Final = "grafana/grafana:12.4.12"
# 3.5 is Prometheus's long-term-support line.
PROMETHEUS: Final = "prom/prometheus:v3.5.5"
NGINX_EXPORTER: Final = "nginx/nginx-prometheus-exporter:1.5.3"
# The Ubuntu variant: its healthcheck needs bash (the distroless one has no shell).
DCGM_EXPORTER: Final = "nvcr.io/nvidia/k8s/dcgm-exporter:4.5.3-4.8.2-ubuntu22.04"

# Base images of gateway/Dockerfile (its PYTHON_IMAGE and UV_IMAGE build args).
PYTHON: Final = "python:3.11.17-slim-bookworm"
UV: Final = "ghcr.io/astral-sh/uv:0.13.9"

# What the deployed stack pulls, by what it is for.
RUNTIME: Final = {
    "ollama": OLLAMA,
    "nginx": NGINX,
    "redis": REDIS,
    "grafana": GRAFANA,
    "prometheus": PROMETHEUS,
    "nginx-exporter": NGINX_EXPORTER,
    "gpu-exporter": DCGM_EXPORTER,
}
# Build args of gateway/Dockerfile.
GATEWAY_BUILD_ARGS: Final = {"PYTHON_IMAGE": PYTHON, "UV_IMAGE": UV}
