"""monitoring/README.md names every alert, dashboard and overview row the code renders."""

from __future__ import annotations

import json
import re

import yaml
from llm_monitoring.dashboards import build_dashboards
from llm_monitoring.rules import render_alert_rules

from tests.monitoring.stacks import REPO, model_aware, stack_config, stack_file

README = REPO / "monitoring" / "README.md"


def test_every_alert_is_in_the_readme() -> None:
    config = stack_config(replicas=2, instances=2, routing="model-aware")
    doc = yaml.safe_load(render_alert_rules(config))
    # The first cell of a row of the alerts table (`| A |` or `| A / B |`).
    listed = set()
    for line in README.read_text().splitlines():
        if line.startswith("| LLM"):
            listed.update(re.findall(r"LLM\w+", line.split("|")[1]))
    assert listed == {rule["alert"] for rule in doc["groups"][0]["rules"]}


def test_every_dashboard_and_overview_row_is_in_the_readme() -> None:
    config = model_aware(stack_file("prod"))  # every row: routing and GPUs
    text = README.read_text()
    for board in (json.loads(t) for t in build_dashboards(config).values()):
        uid = board["uid"].replace(config.name_prefix, "<namePrefix>")
        assert f"uid `{uid}`" in text, uid
        if uid.endswith("-overview"):
            for row in (p["title"] for p in board["panels"] if p["type"] == "row"):
                assert f"| {row} |" in text, row
