"""The console's lists and pages laid out for an operator, measured in Chromium.

The lists must show the columns an operator reads and filters by at 1440 and 1280 px with no sideways-scrolling
box around the results (Django's ``.results`` scrolls what does not fit, so a column can sit out of sight). The
data is the widest an operator meets: Genesys Cloud's UUID message ids, long email addresses and campaign names."""

from __future__ import annotations

import json
import uuid
from datetime import timedelta
from typing import Any

import pytest
from django.test import Client
from django.utils import timezone

from campaigns import lifecycle
from campaigns.models import Campaign
from receipts.actions import rollups
from receipts.models import Message, MessageEvent
from tests.browser.conftest import shoot
from tests.conftest import drain, post_webhook, register

pytestmark = [pytest.mark.django_db(transaction=True), pytest.mark.browser]

WIDTHS = [1440, 1280]


@pytest.fixture
def wide_rows() -> None:
    """Messages of every provider and state, with the longest values each column holds in practice."""
    now = timezone.now()
    names = ["Flu shot reminders, autumn 2026 (North region)", "Appointment confirmations — cardiology"]
    providers = [("genesys_cloud", "sms"), ("genesys_sms", "sms"), ("webex_connect", "email"), ("generic", "sms")]
    for i in range(16):
        provider, channel = providers[i % len(providers)]
        to = f"patient.name.{i}@longhospitalname-example.org" if channel == "email" else f"+4479460{i:05}"
        message = register(
            provider=provider,
            channel=channel,
            provider_message_id=str(uuid.UUID(int=i + 1)),
            to=to,
            campaign=names[i % 2],
            crm_record_id=f"a0B5g00000{i:08}XyZ",
        )
        failed = i % 3 == 0
        Message.objects.filter(pk=message.pk).update(
            status="failed" if failed else "delivered",
            status_at=now,
            failure_category="invalid_destination" if failed else "",
            needs_review=i % 4 == 0,
            review_reason="conflicting_receipts" if i % 4 == 0 else "",
            created_at=now - timedelta(days=2, hours=i),
        )
        MessageEvent.objects.create(
            message=message,
            receipt_key=f"k-{i}",
            provider_code="DELIVERY_FAILED_UNKNOWN_SUBSCRIBER" if failed else "DELIVERED_TO_HANDSET",
            status="failed" if failed else "delivered",
            applied=True,
            occurred_at=now,
        )
    Campaign.objects.filter(name=names[0]).update(channel="sms", provider="genesys_sms", body="hi")
    rollups.refresh()


# (the list, the columns an operator reads there: each must be on screen at every width)
LISTS = {
    "messages": (
        "/admin/receipts/message/",
        ["id", "provider_message_id", "sent_via", "recipient", "status_detail", "campaign", "updated_at"],
    ),
    "review queue": (
        "/admin/receipts/reviewqueue/",
        [
            "priority",
            "review_reason",
            "age",
            "sent_via",
            "provider_message_id",
            "campaign",
            "status_badge",
            "last_receipt",
        ],
    ),
    "campaigns": (
        "/admin/campaigns/campaign/",
        ["name", "state", "progress", "delivery_rate", "messages", "failed", "not_final", "created_at", "row_steps"],
    ),
}


@pytest.mark.parametrize("width", WIDTHS)
@pytest.mark.parametrize("name", list(LISTS))
def test_a_list_shows_its_columns_without_a_sideways_scroll(page: Any, wide_rows: None, name: str, width: int) -> None:
    url, wanted = LISTS[name]
    page.set_viewport_size({"width": width, "height": 900})
    page.goto(url)
    page.wait_for_selector("#result_list tbody tr")
    box = page.evaluate(
        """() => { const r = document.querySelector('#changelist-form .results');
                   return {scroll: r.scrollWidth, client: r.clientWidth,
                           page: document.documentElement.scrollWidth}; }"""
    )
    assert box["scroll"] <= box["client"], (
        f"{name} at {width} px: results {box['scroll']} px in a {box['client']} px box"
    )
    assert box["page"] <= width, f"{name} at {width} px: the page is {box['page']} px wide"
    if name == "campaigns" and width == 1280:
        shoot(page, "campaigns")
    for column in wanted:
        header = page.locator(f"#result_list thead th.column-{column}")
        assert header.count() == 1, f"{name}: no column {column}"
        edge = header.bounding_box()
        assert edge is not None and edge["x"] >= 0 and edge["x"] + edge["width"] <= width, f"{name}: {column} at {edge}"


@pytest.fixture
def failures() -> None:
    """Five messages failed as invalid destinations and one as blocked, on providers with long names."""
    client = Client()
    codes = ["invalid_number"] * 5 + ["blocked"] + [""] * 4
    for i, code in enumerate(codes):
        register(provider_message_id=f"f-{i}", to=f"+1555000{i:04}", campaign="Flu shot reminders, autumn 2026")
        body = {"id": f"f-{i}", "status": "failed" if code else "delivered", "timestamp": timezone.now().isoformat()}
        if code:
            body["errorCode"] = code
        assert post_webhook(client, "generic", json.dumps(body)).status_code == 200
    drain()
    register(provider="genesys_sms", provider_message_id="g-1", to="+15550009999")
    rollups.refresh()


def bar_width(page: Any, label: str) -> float:
    row = page.locator("#failures .bar-row", has=page.locator(".bar-label", has_text=label))
    box = row.locator(".bar").bounding_box()
    assert box is not None, f"no bar for {label}"
    return float(box["width"])


def test_failure_bars_share_one_scale_and_labels_show_whole(page: Any, failures: None) -> None:
    page.goto("/admin/dashboard/")
    # 5 and 1 must look different: the bars are drawn to the chart's one maximum.
    ratio = bar_width(page, "invalid_destination") / bar_width(page, "permanent_block")
    assert 4.5 < ratio < 5.5, ratio
    # Every label is whole: its text fits inside its box, and the box inside the page.
    for label in page.locator(".chart .bar-label").all():
        fits = label.evaluate("e => e.scrollWidth <= e.clientWidth + 1 && e.getBoundingClientRect().left >= 0")
        assert fits, f"{label.inner_text()!r} is cut"
    assert page.locator(".chart .bar-label", has_text="Genesys SMS Aggregation").is_visible()


# Every bit of chart text as the operator sees it: HTML text at its computed size, SVG text scaled with its chart.
CHART_TEXT = """() => {
  const sizes = [];
  for (const e of document.querySelectorAll('.chart .bar-label, .chart .bar-note, .chart-legend span')) {
    sizes.push([e.textContent.trim(), parseFloat(getComputedStyle(e).fontSize)]);
  }
  for (const svg of document.querySelectorAll('svg.chart')) {
    const scale = svg.getBoundingClientRect().width / svg.viewBox.baseVal.width;
    for (const t of svg.querySelectorAll('text')) {
      sizes.push([t.textContent.trim(), parseFloat(getComputedStyle(t).fontSize) * scale]);
    }
  }
  return sizes;
}"""


def test_the_dashboard_fits_a_phone_with_legible_charts(page: Any, failures: None) -> None:
    page.set_viewport_size({"width": 390, "height": 844})
    page.goto("/admin/dashboard/")
    page.wait_for_selector("#failures .bar-row")
    shoot(page, "dashboard-phone")
    wide = page.evaluate("() => document.documentElement.scrollWidth")
    assert wide <= 390, f"the dashboard is {wide} px wide on a 390 px phone"
    sizes = page.evaluate(CHART_TEXT)
    assert len(sizes) > 10
    small = [(text, round(size, 1)) for text, size in sizes if size < 11]
    assert small == [], f"chart text under 11 px: {small[:5]}"


def top_of(page: Any, selector: str) -> float:
    box = page.locator(selector).first.bounding_box()
    assert box is not None, f"{selector} is not shown"
    return float(box["y"])


@pytest.mark.parametrize("width", WIDTHS)
def test_a_message_page_shows_its_status_then_its_timeline_before_the_fields(
    page: Any, wide_rows: None, width: int
) -> None:
    page.set_viewport_size({"width": width, "height": 800})
    message = Message.objects.filter(needs_review=True, failure_category="invalid_destination").first()
    assert message is not None
    page.goto(f"/admin/receipts/message/{message.pk}/change/")
    headers = [h.strip() for h in page.locator("#content h2").all_inner_texts()]
    assert [h for h in headers if h.lower() == "status"] == ["Status"], headers
    timeline = top_of(page, "#timeline")
    assert top_of(page, "#message-status") < timeline < top_of(page, "fieldset.module")
    assert timeline < 800, f"the timeline starts {timeline:.0f} px down, below the first screen"


@pytest.mark.parametrize("state", ["draft", "running"])
def test_a_campaign_page_shows_its_progress_first(page: Any, state: str, settings: Any) -> None:
    settings.GENESYS_SMS_MT_URL = "http://127.0.0.1:9/httpapi/receiver"  # nothing is sent: no contact, no worker
    settings.GENESYS_SMS_LOGIN, settings.GENESYS_SMS_PASSWORD = "login", "password"
    settings.GENESYS_SMS_SENDER = "+15559876543"
    campaign = Campaign.objects.create(name="Flu shots", channel="sms", provider="genesys_sms", body="hi")
    if state == "running":
        lifecycle.start(campaign)
    page.set_viewport_size({"width": 1280, "height": 800})
    page.goto(f"/admin/campaigns/campaign/{campaign.pk}/change/")
    progress = top_of(page, "#campaign-progress")
    assert progress < top_of(page, "fieldset.module")
    assert progress < 400, f"the progress starts {progress:.0f} px down"
    buttons = page.locator("#campaign-progress input[type=submit]")
    assert buttons.count() >= 1
    assert buttons.first.bounding_box()["y"] < 800  # Start / Pause on the first screen
    shoot(page, f"campaign-{state}")
    if state != "draft":  # a campaign that sends: its delivery figures before the record of what it sent
        assert top_of(page, "#campaign-stats") < top_of(page, "fieldset.module")
