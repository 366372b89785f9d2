"""The operators' dashboard: delivery health from the rollups, with charts, each figure linking to its list."""

from __future__ import annotations

import json
import re
from datetime import timedelta
from typing import Any

import pytest
from django.db import connection
from django.test import Client
from django.test.utils import CaptureQueriesContext
from django.utils import timezone

from receipts.actions import rollups, suppression
from receipts.models import Message
from tests.conftest import drain, post_webhook, register

pytestmark = pytest.mark.django_db


def receipt(client: Client, message_id: str, status: str, **extra: Any) -> None:
    now = timezone.now().isoformat()
    body = {"id": message_id, "status": status, "timestamp": now, **extra}
    assert post_webhook(client, "generic", json.dumps(body)).status_code == 200


@pytest.fixture
def traffic(client: Client) -> None:
    """8 generic messages: 6 delivered, 1 failed, 1 in flight; one Webex message in flight that never hears back
    (a silent provider), one message under review, a suppression."""
    for i in range(8):
        register(provider_message_id=f"d-{i}", to=f"+1555000{i:04}", campaign="spring")
    for i in range(6):
        receipt(client, f"d-{i}", "delivered")
    receipt(client, "d-6", "failed", errorCode="invalid_number")
    quiet = register(provider="webex_connect", provider_message_id="wx-1")
    Message.objects.filter(pk=quiet.pk).update(created_at=timezone.now() - timedelta(hours=2))
    drain()
    Message.objects.filter(provider_message_id="d-0").update(needs_review=True, review_reason="conflicting_receipts")
    suppression.suppress("sms", "+15550000006", "hard_bounce", source="receipt")
    rollups.refresh()


def test_the_dashboard_answers_is_delivery_healthy(admin_client: Client, traffic: None) -> None:
    with CaptureQueriesContext(connection) as queries:
        response = admin_client.get("/admin/dashboard/?window=day")
    assert response.status_code == 200
    html = response.content.decode()
    assert re.search(r'id="messages-total">9<', html)
    assert re.search(r'id="delivery-rate">85.7%<', html)  # 6 delivered of 7 final
    assert re.search(r'id="review-total">1<', html)
    assert html.count('class="chart') >= 4  # provider, time, channel, campaign charts (and failures)
    assert "Generic JSON" in html
    assert "spring" in html
    # The failure's category and code, linked to the messages behind them.
    assert "invalid_destination" in html
    assert "failure_category__exact=invalid_destination" in html
    assert "failed/invalid_number" in html
    # Webex has a message in flight and never sent a receipt: silent.
    assert re.search(r"never \(silent\)", html)
    assert "hard_bounce" in html
    # Never a COUNT over the whole messages table: every query on it is filtered.
    on_messages = [q["sql"] for q in queries.captured_queries if 'FROM "receipts_message"' in q["sql"]]
    assert on_messages
    assert all("WHERE" in sql for sql in on_messages), on_messages
    # Nor a count of the review queue or of what is in flight: those are the counts the database keeps
    # (receipts.tallies; each took a second at 10 M messages, issue 23, item 5).
    assert not [sql for sql in on_messages if "COUNT(" in sql.upper()], on_messages


@pytest.mark.parametrize("window", ["hour", "day", "7d", "30d", "nonsense", "%00"])
def test_every_window_draws(admin_client: Client, traffic: None, window: str) -> None:
    response = admin_client.get(f"/admin/dashboard/?window={window}")
    assert response.status_code == 200
    assert "<svg" in response.content.decode()


def test_a_figure_links_to_the_list_that_shows_it(admin_client: Client, traffic: None) -> None:
    html = admin_client.get("/admin/dashboard/").content.decode()
    link = re.search(r'href="(/admin/receipts/message/\?[^"]*provider__exact=generic[^"]*)"', html)
    assert link is not None
    listed = admin_client.get(link.group(1).replace("&amp;", "&"))
    assert listed.status_code == 200
    assert listed.content.decode().count('href="/admin/receipts/message/') >= 8


def test_the_admin_opens_with_a_link_to_the_dashboard(admin_client: Client) -> None:
    assert 'href="/admin/dashboard/"' in admin_client.get("/admin/").content.decode()


def test_an_empty_product_draws_an_empty_dashboard(admin_client: Client) -> None:
    response = admin_client.get("/admin/dashboard/")
    assert response.status_code == 200
    assert "No messages in this window." in response.content.decode()


def test_only_staff_see_it(client: Client) -> None:
    assert client.get("/admin/dashboard/").status_code == 302
