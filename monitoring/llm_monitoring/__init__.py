"""Monitoring as code: prometheus.yml, alert rules, Grafana provisioning and dashboards.

Every file is rendered from the typed stack config by one function; the Pulumi program
uploads the text into containers and the local stack writes the same text to a temp dir.
"""
