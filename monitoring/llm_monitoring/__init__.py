"""Monitoring as code: prometheus.yml, alert rules, Grafana provisioning and dashboards.

Every file is rendered from the typed stack config by one function; the Pulumi program
uploads the text into containers and the local stack writes the same text to a temp dir.

Modules: `prometheus` (prometheus.yml, flags), `rules` (alert rules), `grafana`
(provisioning, every file Grafana reads), `dashboards` (the overview, and the list of
dashboards), `routing_panels` (the overview's Routing row), `usage` (the Usage
dashboard), `panels` (specs -> grafana-foundation-sdk builders), `promql` (queries
shared by alerts and panels), `jobs` (job names, stack labels, the Ollama instance
label), `exporters` (third-party metric names), `yamltext` (YAML output).
"""
