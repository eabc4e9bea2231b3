"""Metric names of the third-party exporters the dashboards chart, with their sources.

Only names listed here may appear in panels (tests check every query against this
list and the gateway's own registry), so a typo cannot produce an empty panel.
"""

from __future__ import annotations

# nginx-prometheus-exporter 1.x reading OSS nginx's stub_status
# (github.com/nginx/nginx-prometheus-exporter, collector/nginx.go; `nginx_up` from
# collector/helper.go). stub_status is global to the nginx process: it has no
# per-upstream or per-server numbers (those need NGINX Plus or a log-based exporter).
NGINX_METRICS = frozenset(
    {
        "nginx_up",
        "nginx_connections_active",
        "nginx_connections_accepted",
        "nginx_connections_handled",
        "nginx_connections_reading",
        "nginx_connections_writing",
        "nginx_connections_waiting",
        "nginx_http_requests_total",
    }
)

# dcgm-exporter's default counters (github.com/NVIDIA/dcgm-exporter,
# etc/default-counters.csv); series carry `gpu`, `UUID`, `modelName`, `Hostname` labels.
DCGM_METRICS = frozenset(
    {
        "DCGM_FI_DEV_GPU_UTIL",
        "DCGM_FI_DEV_MEM_COPY_UTIL",
        "DCGM_FI_DEV_FB_USED",
        "DCGM_FI_DEV_FB_FREE",
        "DCGM_FI_DEV_GPU_TEMP",
        "DCGM_FI_DEV_MEMORY_TEMP",
        "DCGM_FI_DEV_POWER_USAGE",
        "DCGM_FI_DEV_SM_CLOCK",
        "DCGM_FI_DEV_MEM_CLOCK",
        "DCGM_FI_DEV_XID_ERRORS",
    }
)

# Series Prometheus itself attaches to every target.
SCRAPE_METRICS = frozenset({"up", "scrape_duration_seconds", "scrape_samples_scraped"})
