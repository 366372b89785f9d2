"""The shipped Prometheus rules (deploy/prometheus/alerts.yml) are valid YAML and every metric they use is one
that GET /metrics serves."""

from __future__ import annotations

import re
from pathlib import Path

import pytest
import yaml
from django.test import Client

pytestmark = pytest.mark.django_db

RULES = Path(__file__).resolve().parents[2] / "deploy" / "prometheus" / "alerts.yml"


def test_every_metric_the_rules_use_is_served(client: Client) -> None:
    groups = yaml.safe_load(RULES.read_text())["groups"]
    rules = [rule for group in groups for rule in group["rules"]]
    assert {r["alert"] for r in rules} >= {"DeliveryRateLow", "ProviderSilent", "CrmLagHigh", "InboxDeadRows"}
    used = set()
    for rule in rules:
        assert set(rule) >= {"alert", "expr", "labels", "annotations"}
        for name in re.findall(r"\b((?:receipts|crm)_[a-z0-9_]+)", rule["expr"]):
            used.add(name.removesuffix("_bucket"))
    exposition = client.get("/metrics").content.decode()
    served = {line.split()[2] for line in exposition.splitlines() if line.startswith("# TYPE")}
    assert len(used) >= 8
    assert used <= served, used - served
