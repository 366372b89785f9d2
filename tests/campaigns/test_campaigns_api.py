"""GET /api/v1/campaigns/ and /api/v1/campaigns/{id}/stats/: a campaign's delivery statistics from the rollups."""

from __future__ import annotations

import json
from typing import Any

import pytest
from django.test import Client
from rest_framework.test import APIClient

from receipts.actions import rollups
from receipts.models import Message
from tests.conftest import drain, post_webhook, register

pytestmark = pytest.mark.django_db


def receipt(client: Client, message_id: str, status: str, **extra: Any) -> None:
    body = {"id": message_id, "status": status, "timestamp": "2026-11-28T10:00:05Z", **extra}
    assert post_webhook(client, "generic", json.dumps(body)).status_code == 200


@pytest.fixture
def spring(client: Client) -> int:
    """A campaign of 10 messages: 6 delivered (one read), 2 failed, 2 still sent; and one message elsewhere."""
    for i in range(10):
        register(provider_message_id=f"s-{i}", to=f"+1555000{i:04}", campaign="spring")
    register(provider_message_id="other", campaign="autumn")
    for i in range(10):
        receipt(client, f"s-{i}", "sent", timestamp="2026-11-28T10:00:00Z")
    for i in range(6):
        receipt(client, f"s-{i}", "delivered")
    receipt(client, "s-0", "read")
    for i in (6, 7):
        receipt(client, f"s-{i}", "failed", errorCode="invalid_number")
    drain()
    rollups.refresh()
    return Message.objects.get(provider_message_id="s-0").campaign_id


def test_a_campaigns_statistics(api: APIClient, spring: int) -> None:
    response = api.get(f"/api/v1/campaigns/{spring}/stats/")
    assert response.status_code == 200
    stats = response.json()
    assert (stats["messages"], stats["delivered"], stats["failed"], stats["pending"]) == (10, 6, 2, 2)
    assert stats["by_status"] == {"delivered": 6, "failed": 2, "sent": 2}
    assert stats["delivery_rate"] == 0.75
    assert stats["failure_rate"] == 0.25
    assert stats["read"] == 1
    assert stats["latency_seconds"] == {"p50": 5.0, "p95": 5.0}  # final 5 s after sent
    assert list(stats["by_provider"]) == ["generic"]
    assert stats["failures"]["by_category"] == {"invalid_destination": 2}
    assert stats["failures"]["top_codes"] == [[["generic", "failed/invalid_number"], 2]]
    assert [sum(day["by_status"].values()) for day in stats["over_time"]] == [10]


def test_the_list_carries_each_campaigns_totals(api: APIClient, spring: int) -> None:
    response = api.get("/api/v1/campaigns/")
    assert response.status_code == 200
    listed = {c["name"]: c["totals"]["messages"] for c in response.json()["results"]}
    assert listed == {"spring": 10, "autumn": 1}
    one = api.get(f"/api/v1/campaigns/{spring}/").json()
    assert (one["name"], one["totals"]["delivered"]) == ("spring", 6)


@pytest.mark.parametrize("pk", ["999999", "abc", "99999999999999999999999", "%00"])
def test_an_unknown_campaign_is_a_404_in_the_error_shape(api: APIClient, pk: str) -> None:
    response = api.get(f"/api/v1/campaigns/{pk}/stats/")
    assert response.status_code == 404
    assert "error" in response.json()


def test_the_campaigns_need_a_token(spring: int) -> None:
    assert APIClient().get("/api/v1/campaigns/").status_code == 401


def test_a_campaign_with_no_messages_yet_has_no_rates(api: APIClient) -> None:
    register(provider_message_id="x", campaign="new")
    Message.objects.all().delete()
    campaign = api.get("/api/v1/campaigns/").json()["results"][0]
    stats = api.get(f"/api/v1/campaigns/{campaign['id']}/stats/").json()
    assert (stats["messages"], stats["delivery_rate"], stats["over_time"]) == (0, None, [])


def test_the_campaign_pages_in_the_admin_show_the_same_figures(admin_client: Client, spring: int) -> None:
    listing = admin_client.get("/admin/campaigns/campaign/")
    assert listing.status_code == 200
    html = listing.content.decode()
    assert f'href="/admin/receipts/message/?campaign__id__exact={spring}">10<' in html
    assert "75.0%" in html  # 6 delivered of 8 final
    page = admin_client.get(f"/admin/campaigns/campaign/{spring}/change/")
    assert page.status_code == 200
    html = page.content.decode()
    assert 'id="delivery-rate">75.0%<' in html
    assert "invalid_destination" in html
    assert "<svg" in html
