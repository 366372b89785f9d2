"""The shipped Prometheus rules (deploy/prometheus/alerts.yml) are valid YAML, every metric they use is one that
GET /metrics serves, and every alert the app raises reaches Prometheus through exactly one rule (its threshold is
the app's setting, written once)."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import pytest
import yaml
from django.test import Client

from receipts.models import Alert

pytestmark = pytest.mark.django_db

RULES = Path(__file__).resolve().parents[2] / "deploy" / "prometheus" / "alerts.yml"


def test_every_metric_the_rules_use_is_served(client: Client) -> None:
    groups = yaml.safe_load(RULES.read_text())["groups"]
    rules = [rule for group in groups for rule in group["rules"]]
    assert {r["alert"] for r in rules} >= {"DeliveryRateLow", "ProviderSilent", "CrmLagHigh", "InboxDeadRows"}
    used = set()
    for rule in rules:
        assert set(rule) >= {"alert", "expr", "labels", "annotations"}
        for name in re.findall(r"\b((?:receipts|crm)_[a-z0-9_]+)", re.sub(r'"[^"]*"', "", rule["expr"])):
            used.add(name.removesuffix("_bucket"))
    exposition = client.get("/metrics").content.decode()
    served = {line.split()[2] for line in exposition.splitlines() if line.startswith("# TYPE")}
    assert len(used) >= 5
    assert used <= served, used - served


# An alert of each rule the app checks (config/alerts.py), as its key is written.
APP_KEYS = [
    "delivery_rate:genesys_sms",
    "silent:webex_connect",
    "review_queue",
    "inbox_dead",
    "crm_lag",
    "crm_dead",
    "escalations",
    "bounce_rate",
    "complaint_rate",
    "campaign_paused:7",
]


def test_every_alert_the_app_raises_is_forwarded_by_one_rule(client: Client, settings: Any) -> None:
    settings.METRICS_TOKEN = ""
    for key in APP_KEYS:
        Alert.objects.create(key=key, title=key)
    exposition = client.get("/metrics").content.decode()
    served = set(re.findall(r'^receipts_alert_firing\{key="([^"]+)"\} 1\.0$', exposition, re.M))
    assert served == set(APP_KEYS)
    groups = yaml.safe_load(RULES.read_text())["groups"]
    matchers = {}
    for rule in (rule for group in groups for rule in group["rules"]):
        found = re.search(r'receipts_alert_firing\{key(=~?)"([^"]+)"\}', rule["expr"])
        if found:
            operator, value = found.groups()
            matchers[rule["alert"]] = re.compile(value if operator == "=~" else re.escape(value))
        else:  # judged from raw metrics: none of them may restate an app check's threshold
            assert not re.search(r"receipts_(messages|complaints)_24h|crm_relay_lag|crm_outbox_dead", rule["expr"])
    for key in APP_KEYS:
        rules = [name for name, matcher in matchers.items() if matcher.fullmatch(key)]
        assert len(rules) == 1, f"{key}: forwarded by {rules}"
