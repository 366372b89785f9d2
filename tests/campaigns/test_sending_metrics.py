"""/metrics tells how sending goes: each provider's queue, the sends its workers hold, how sends ended (counted by
every worker in the shared store), the time spent waiting for a rate-limit token and the send breaker's state."""

from __future__ import annotations

import re
from typing import Any

import pytest
from django.test import Client
from rest_framework.test import APIClient

from campaigns import dispatch
from receipts.actions import suppression
from simulator import SimulatorServer

pytestmark = pytest.mark.django_db


def figure(text: str, name: str, **labels: str) -> float:
    wanted = ",".join(f'{k}="{v}"' for k, v in sorted(labels.items()))
    found = re.search(rf"^{name}\{{{re.escape(wanted)}\}} (\S+)$", text, re.M)
    assert found, f"{name}{{{wanted}}} not in /metrics"
    return float(found.group(1))


def send(api: APIClient, to: str) -> None:
    body = {"channel": "sms", "provider": "genesys_sms", "to": to, "content": {"text": "Flu shots are in."}}
    assert api.post("/api/v1/sends/", body, format="json", HTTP_IDEMPOTENCY_KEY=to).status_code == 202


def test_metrics_follow_the_sends_from_the_queue_to_their_end(
    api: APIClient, providers: SimulatorServer, settings: Any
) -> None:
    settings.METRICS_TOKEN = ""
    client = Client()
    for to in ["+15550002221", "+15550002222", "+15550002223"]:
        send(api, to)
    suppression.suppress("sms", "+15550002223", "unsubscribe", source="receipt")

    before = client.get("/metrics").content.decode()
    assert figure(before, "campaigns_send_queue", provider="genesys_sms") == 3
    assert figure(before, "campaigns_send_queue", provider="webex_connect") == 0
    assert figure(before, "campaigns_sends_held", provider="genesys_sms") == 0
    assert figure(before, "campaigns_sends_finished_total", provider="genesys_sms", state="sent") == 0

    dispatch.dispatch()

    after = client.get("/metrics").content.decode()
    assert figure(after, "campaigns_send_queue", provider="genesys_sms") == 0
    assert figure(after, "campaigns_sends_finished_total", provider="genesys_sms", state="sent") == 2
    assert figure(after, "campaigns_sends_finished_total", provider="genesys_sms", state="suppressed") == 1
    assert figure(after, "campaigns_sends_finished_total", provider="genesys_sms", state="failed") == 0
    assert figure(after, "campaigns_send_token_wait_seconds_total", provider="genesys_sms") == 0
    assert figure(after, "campaigns_send_circuit_state", provider="genesys_sms", state="closed") == 1
    assert figure(after, "campaigns_send_circuit_state", provider="genesys_sms", state="open") == 0
