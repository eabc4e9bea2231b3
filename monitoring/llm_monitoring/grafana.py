"""Grafana provisioning: the Prometheus datasource and a file provider for the dashboards.

Grafana reads these at start (`<provisioning>/datasources/*.yaml`,
`<provisioning>/dashboards/*.yaml`); both are read-only in the UI, so the code stays
the one source of truth.
"""

from __future__ import annotations

import posixpath

from llm_config.model import StackConfig

from llm_monitoring import yamltext
from llm_monitoring.dashboards import build_dashboards
from llm_monitoring.panels import DATASOURCE_UID

DATASOURCE_NAME = "Prometheus"
PROVIDER_NAME = "llm-stack"
DASHBOARD_FOLDER = "LLM stack"


def render_grafana_datasource(config: StackConfig, prometheus_url: str) -> str:
    """provisioning/datasources/prometheus.yaml: Prometheus under the fixed uid panels use."""
    doc = {
        "apiVersion": 1,
        "datasources": [
            {
                "name": DATASOURCE_NAME,
                "type": "prometheus",
                "uid": DATASOURCE_UID,
                "access": "proxy",
                "url": prometheus_url,
                "isDefault": True,
                "editable": False,
                "jsonData": {
                    # Grafana derives $__rate_interval from this: it must be the real one.
                    "timeInterval": f"{config.monitoring.scrape_interval_seconds}s",
                    "httpMethod": "POST",
                },
            }
        ],
    }
    return yamltext.dump(doc)


def render_dashboard_provider(dashboards_dir: str) -> str:
    """provisioning/dashboards/llm-stack.yaml: load every JSON file in `dashboards_dir`."""
    doc = {
        "apiVersion": 1,
        "providers": [
            {
                "name": PROVIDER_NAME,
                "orgId": 1,
                "folder": DASHBOARD_FOLDER,
                "type": "file",
                "disableDeletion": True,
                "allowUiUpdates": False,
                "updateIntervalSeconds": 60,
                "options": {"path": dashboards_dir, "foldersFromFilesStructure": False},
            }
        ],
    }
    return yamltext.dump(doc)


def grafana_files(
    config: StackConfig,
    prometheus_url: str,
    provisioning_dir: str = "/etc/grafana/provisioning",
    dashboards_dir: str = "/var/lib/grafana/dashboards",
) -> dict[str, str]:
    """Path -> text of everything Grafana needs, paths as Grafana sees them.

    `provisioning_dir` is Grafana's `paths.provisioning` (GF_PATHS_PROVISIONING);
    the provider points at `dashboards_dir`, where the dashboard JSON files go.
    """
    files = {
        posixpath.join(provisioning_dir, "datasources", "prometheus.yaml"): (
            render_grafana_datasource(config, prometheus_url)
        ),
        posixpath.join(provisioning_dir, "dashboards", f"{PROVIDER_NAME}.yaml"): (
            render_dashboard_provider(dashboards_dir)
        ),
    }
    for name, text in build_dashboards(config).items():
        files[posixpath.join(dashboards_dir, name)] = text
    return files
