"""An operator's morning in Chromium: the dashboard, a message found by a phone number as typed, its timeline,
the review queue settled by clicking, a CSV export. Any console error or 5xx fails the test (conftest)."""

from __future__ import annotations

import csv
import io
import json
import re
from datetime import timedelta
from typing import Any

import pytest
from django.test import Client
from django.utils import timezone

from receipts.actions import review, rollups
from receipts.models import Message
from tests.browser.conftest import shoot
from tests.conftest import drain, post_webhook, register

pytestmark = [pytest.mark.django_db(transaction=True), pytest.mark.browser]


@pytest.fixture
def traffic(settings: Any) -> None:
    client = Client()
    for i in range(12):
        register(provider_message_id=f"b-{i}", to=f"+1555000{i:04}", campaign="spring" if i % 2 else "autumn")
    for i in range(9):
        body = {"id": f"b-{i}", "status": "delivered" if i < 7 else "failed", "timestamp": timezone.now().isoformat()}
        if i >= 7:
            body["errorCode"] = "invalid_number"
        assert post_webhook(client, "generic", json.dumps(body)).status_code == 200
    drain()
    # Three never hear back: assumed delivered after the timeout, for review.
    settings.RECEIPT_TIMEOUT = timedelta(minutes=30)
    Message.objects.filter(provider_message_id__in=["b-9", "b-10", "b-11"]).update(
        created_at=timezone.now() - timedelta(hours=1)
    )
    while review.expire_receipts():
        pass
    rollups.refresh()


def test_the_dashboard_shows_delivery_health_and_leads_to_the_messages(page: Any, traffic: None) -> None:
    # The index: its operation links are as wide as their names (they once wrapped one letter a line).
    shoot(page, "index")
    link = page.locator("#operations a", has_text="Provider limits")
    assert link.bounding_box()["width"] > 60
    page.click("text=Dashboard")
    page.wait_for_url("**/admin/dashboard/")
    assert page.inner_text("#messages-total") == "12"
    assert page.inner_text("#delivery-rate") == "83.3%"  # 10 delivered (3 assumed) of 12 final
    assert page.locator(".chart").count() >= 4
    assert page.locator(".chart").first.is_visible()
    shoot(page, "dashboard")
    page.click("text=last 7 days")
    page.wait_for_url("**window=7d")
    assert page.inner_text("#messages-total") == "12"
    # A provider's bar leads to its messages.
    page.locator(".chart a", has_text="Generic JSON").first.click()
    page.wait_for_url("**/admin/receipts/message/**provider__exact=generic**")
    assert page.locator("#result_list tbody tr").count() == 12


def test_a_message_found_by_a_number_as_typed_shows_its_timeline(page: Any, traffic: None) -> None:
    page.goto("/admin/receipts/message/")
    page.fill("#searchbar", "(555) 000-0007")
    page.press("#searchbar", "Enter")
    page.wait_for_url("**q=**")
    rows = page.locator("#result_list tbody tr")
    assert rows.count() == 1
    shoot(page, "messages")
    rows.first.locator("a").first.click()
    page.wait_for_url(re.compile(r"/admin/receipts/message/\d+/change/"))
    body = page.inner_text("#content")
    assert "b-7" in body
    assert "failed/invalid_number" in body
    shoot(page, "message")


def test_an_operator_settles_a_review_item_by_clicking(page: Any, traffic: None) -> None:
    page.goto("/admin/receipts/reviewqueue/")
    rows = page.locator("#result_list tbody tr")
    assert rows.count() == 3
    shoot(page, "review-queue")
    rows.first.locator("input.action-select").check()
    page.select_option("select[name=action]", "confirm_delivered")
    page.click("button[name=index]")
    page.fill("textarea[name=note]", "confirmed by phone with the patient")
    page.click("input[type=submit]")
    page.wait_for_selector(".messagelist")
    assert page.locator("#result_list tbody tr").count() == 2
    assert Message.objects.filter(needs_review=True).count() == 2


def test_an_operator_exports_the_filtered_list_as_csv(page: Any, traffic: None) -> None:
    page.goto("/admin/receipts/message/?status__exact=failed")
    with page.expect_download() as download:
        page.click("a.export-csv")
    text = open(download.value.path(), encoding="utf-8").read()  # noqa: SIM115 - a file Playwright owns
    rows = list(csv.DictReader(io.StringIO(text)))
    assert sorted(r["provider_message_id"] for r in rows) == ["b-7", "b-8"]
