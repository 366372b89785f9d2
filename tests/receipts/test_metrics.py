"""``/metrics`` and the admin page show the circuit, the shared budget, the polls and the inbox, whichever process
made the calls (they read the shared store and the database, not process memory)."""

from __future__ import annotations

import uuid
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest
from django.contrib.auth.models import User
from django.test import Client
from django.utils import timezone

from receipts import polling
from receipts.models import Message, ReceiptEvent
from receipts.providers.genesys_cloud.client import client as configured_client
from simulator import SimulatorServer
from tests.conftest import post_webhook, register
from tests.receipts.conftest import preload

pytestmark = pytest.mark.django_db


@pytest.fixture
def configured(settings: Any, sim: SimulatorServer, tmp_path: Path) -> SimulatorServer:
    settings.GENESYS_CLOUD_BASE_URL = settings.GENESYS_CLOUD_LOGIN_URL = sim.url
    settings.GENESYS_CLOUD_CLIENT_ID = f"metrics-{uuid.uuid4().hex[:8]}"
    settings.GENESYS_CLOUD_CLIENT_SECRET = "secret"
    settings.VAR_DIR = tmp_path
    return sim


def sample(text: str, name: str) -> float:
    for line in text.splitlines():
        if line.startswith(name + " ") or line.startswith(name + "{"):
            if name + "{" in line and "}" not in line:
                continue
            return float(line.rsplit(" ", 1)[1])
    raise AssertionError(f"{name} not in /metrics")


def test_metrics_show_circuit_budget_polls_and_inbox(configured: SimulatorServer, client: Client) -> None:
    sim_message = preload(configured, count=1, outcome="delivered")[0]
    message = register(
        provider="genesys_cloud", provider_message_id=sim_message["id"], to=sim_message["to"], priority="high"
    )
    polling.poll_due(configured_client(), now=message.next_poll_at)

    response = client.get("/metrics")

    assert response.status_code == 200
    assert response["Content-Type"].startswith("text/plain")
    text = response.content.decode()
    assert sample(text, 'receipts_provider_circuit_state{provider="genesys_cloud",state="closed"}') == 1
    assert sample(text, 'receipts_provider_circuit_state{provider="genesys_cloud",state="open"}') == 0
    assert 0 <= sample(text, 'receipts_provider_ratelimit_tokens{provider="genesys_cloud"}') <= 10
    assert sample(text, 'receipts_provider_ratelimit_budget{provider="genesys_cloud"}') == 240
    assert sample(text, 'receipts_provider_ratelimit_refusals_total{provider="genesys_cloud"}') == 0
    assert sample(text, 'receipts_polls_total{provider="genesys_cloud",tier="high"}') == 1
    assert sample(text, 'receipts_provider_requests_total{outcome="ok",provider="genesys_cloud"}') == 1
    assert sample(text, 'receipts_inbox_events{state="received"}') == 1
    assert sample(text, "receipts_messages_due_for_poll") == 0


def test_an_open_circuit_shows_in_metrics(configured: SimulatorServer, client: Client) -> None:
    limits = configured_client().limits
    for _ in range(limits.policy.threshold):
        limits.record(success=False)

    text = client.get("/metrics").content.decode()

    assert sample(text, 'receipts_provider_circuit_state{provider="genesys_cloud",state="open"}') == 1
    assert sample(text, 'receipts_provider_circuit_opened_total{provider="genesys_cloud"}') == 1


def test_metrics_without_genesys_configured_still_count_the_inbox(client: Client, settings: Any) -> None:
    settings.GENESYS_CLOUD_CLIENT_ID = ""
    text = client.get("/metrics").content.decode()
    assert "receipts_inbox_events" in text
    assert "receipts_provider_circuit_state" not in text


def test_metrics_need_the_bearer_token_when_one_is_set(client: Client, settings: Any) -> None:
    settings.METRICS_TOKEN = "scrape-me"
    assert client.get("/metrics").status_code == 401
    assert client.get("/metrics", headers={"Authorization": "Bearer wrong"}).status_code == 401
    assert client.get("/metrics", headers={"Authorization": "Bearer scrape-me"}).status_code == 200


def test_admin_page_shows_the_circuit_and_the_budget(configured: SimulatorServer, client: Client) -> None:
    limits = configured_client().limits
    for _ in range(limits.policy.threshold):
        limits.record(success=False)
    client.force_login(User.objects.create_superuser("ops", "ops@example.com", "pw-ops-123456"))

    page = client.get("/admin/provider-limits/")

    assert page.status_code == 200
    html = page.content.decode()
    assert "<strong>open</strong>" in html
    assert "240 requests per 60 s" in html
    assert "secret" not in html


def test_admin_page_is_for_staff_only(client: Client) -> None:
    response = client.get("/admin/provider-limits/")
    assert response.status_code == 302
    assert "/admin/login/" in response["Location"]


def test_metrics_show_how_late_the_inbox_and_the_polls_are(client: Client, settings: Any) -> None:
    settings.METRICS_TOKEN = ""
    text = client.get("/metrics").content.decode()
    assert sample(text, "receipts_inbox_lag_seconds") == 0
    assert sample(text, "receipts_poll_lag_seconds") == 0

    message = register(provider="genesys_cloud", provider_message_id="lag-1", to="+15551230001", priority="high")
    Message.objects.filter(pk=message.pk).update(next_poll_at=timezone.now() - timedelta(seconds=90))
    post_webhook(client, "generic", '{"id": "lag-2", "status": "delivered", "timestamp": "2026-11-20T10:00:00Z"}')
    thirty_seconds_ago = timezone.now() - timedelta(seconds=30)
    ReceiptEvent.objects.update(received_at=thirty_seconds_ago, next_attempt_at=thirty_seconds_ago)

    text = client.get("/metrics").content.decode()
    assert 30 <= sample(text, "receipts_inbox_lag_seconds") < 60
    assert 90 <= sample(text, "receipts_poll_lag_seconds") < 120


def test_webhook_answers_are_counted_by_provider_and_status(client: Client, settings: Any) -> None:
    settings.METRICS_TOKEN = ""

    def answered(code: str) -> float:
        text = client.get("/metrics").content.decode()
        line = f'receipts_webhook_answers_total{{code="{code}",provider="generic"}}'
        return next((float(row.split()[-1]) for row in text.splitlines() if row.startswith(line)), 0.0)

    before = answered("200"), answered("400"), answered("401")
    post_webhook(client, "generic", '{"id": "w-1", "status": "sent", "timestamp": "2026-11-20T10:00:00Z"}')
    post_webhook(client, "generic", "not json")
    post_webhook(client, "generic", "{}", Authorization="Basic bm9wZTpub3Bl")
    assert (answered("200"), answered("400"), answered("401")) == (before[0] + 1, before[1] + 1, before[2] + 1)


def test_webhook_answer_times_are_a_histogram_by_provider(client: Client, settings: Any) -> None:
    """The time each webhook took to answer, in buckets with one at 800 ms (the ack rule's bar)."""
    settings.METRICS_TOKEN = ""

    def figures() -> dict[str, float]:
        text = client.get("/metrics").content.decode()
        found = {}
        for row in text.splitlines():
            if row.startswith("receipts_webhook_answer_seconds_") and 'provider="generic"' in row:
                found[row.split(" ")[0]] = float(row.split()[-1])
        return found

    before = figures()
    post_webhook(client, "generic", '{"id": "h-1", "status": "sent", "timestamp": "2026-11-20T10:00:00Z"}')
    post_webhook(client, "generic", "not json")
    after = figures()
    count = 'receipts_webhook_answer_seconds_count{provider="generic"}'
    under_800 = 'receipts_webhook_answer_seconds_bucket{le="0.8",provider="generic"}'
    every = 'receipts_webhook_answer_seconds_bucket{le="+Inf",provider="generic"}'
    assert after[count] == before.get(count, 0) + 2
    assert after[every] == before.get(every, 0) + 2
    assert under_800 in after
    assert after['receipts_webhook_answer_seconds_sum{provider="generic"}'] > 0
