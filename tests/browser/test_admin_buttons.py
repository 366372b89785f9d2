"""Every button an operator clicks on a message under review and on a campaign, clicked in Chromium.

The Django test client posts one form directly; a browser posts what the HTML says, and drops a ``<form>`` nested
in another (the change form), submitting the outer one instead. So each button is clicked here, and each click
must answer under 400, log no console error (conftest) and change what it says it changes, read back from the
database and from the page shown after it."""

from __future__ import annotations

import re
from datetime import timedelta
from typing import Any

import pytest
from django.utils import timezone
from playwright.sync_api import expect

from campaigns import lifecycle
from campaigns.models import Campaign
from receipts.actions import review
from receipts.models import Message
from tests.conftest import register

pytestmark = [pytest.mark.django_db(transaction=True), pytest.mark.browser]


def click_and_load(page: Any, label: str) -> Any:
    """Click the button named ``label`` and wait for the page it leads to; answers that page's response."""
    button = page.get_by_role("button", name=label, exact=True)
    assert button.count() == 1, f"{label!r}: {button.count()} buttons of that name on {page.url}"
    with page.expect_navigation() as navigation:
        button.click()
    response = navigation.value
    assert response is not None and response.status < 400, f"{label!r} answered {response and response.status}"
    return response


@pytest.fixture
def in_review(settings: Any) -> Message:
    """A message that never heard back: assumed delivered after the timeout, waiting for review."""
    message = register(provider_message_id="rev-1", to="+15550009999")
    settings.RECEIPT_TIMEOUT = timedelta(minutes=30)
    Message.objects.filter(pk=message.pk).update(created_at=timezone.now() - timedelta(hours=1))
    while review.expire_receipts():
        pass
    message.refresh_from_db()
    assert message.needs_review and message.review_reason == "no_receipt"
    return message


# (the button on the message page, what the page after it asks for, the status, still under review)
SETTLE = [
    ("Confirm delivered", {"note": "confirmed by phone"}, "delivered", False),
    ("Mark failed…", {"category": "invalid_destination"}, "failed", False),
    ("Poll again now", None, "delivered", True),
    ("Resolve with a note…", {"note": "checked with the carrier"}, "delivered", False),
]


@pytest.mark.parametrize(("label", "asks", "status", "still_in_review"), SETTLE, ids=[s[0] for s in SETTLE])
def test_each_settle_button_on_a_message_page_settles_it(
    page: Any, in_review: Message, label: str, asks: dict[str, str] | None, status: str, still_in_review: bool
) -> None:
    page.goto(f"/admin/receipts/message/{in_review.pk}/change/")
    click_and_load(page, label)
    if asks is not None:  # the decision's own page: a note, a category
        assert "/admin/receipts/reviewqueue/" in page.url, f"{label!r} led to {page.url}"
        if "note" in asks:
            page.fill("textarea[name=note]", asks["note"])
        if "category" in asks:
            page.select_option("select[name=category]", asks["category"])
        with page.expect_navigation() as navigation:
            page.click("input[type=submit].default")
        assert navigation.value is not None and navigation.value.status < 400

    in_review.refresh_from_db()
    assert in_review.resolutions.count() == 1, f"{label!r} recorded no decision"
    assert in_review.status == status
    assert in_review.needs_review is still_in_review
    # Back on the message's page, which says so.
    assert page.url.endswith(f"/admin/receipts/message/{in_review.pk}/change/"), page.url
    assert page.locator(".messagelist .success").count() == 1
    assert page.inner_text("#message-status .badge") == status
    assert "review history" in page.inner_text("#content").lower()
    assert page.locator(".settle").count() == (1 if still_in_review else 0)


@pytest.fixture
def sendable(settings: Any) -> None:
    settings.GENESYS_SMS_MT_URL = "http://127.0.0.1:9/httpapi/receiver"  # nothing is sent: no contact, no worker
    settings.GENESYS_SMS_LOGIN, settings.GENESYS_SMS_PASSWORD = "login", "password"
    settings.GENESYS_SMS_SENDER = "+15559876543"


def campaign_in(state: str) -> Campaign:
    campaign = Campaign.objects.create(name=f"Flu shots ({state})", channel="sms", provider="genesys_sms", body="hi")
    if state in ("running", "paused"):
        lifecycle.start(campaign)
    if state == "paused":
        lifecycle.pause(campaign)
    assert campaign.state == state
    return campaign


# (the campaign's state, the button, the state after it)
STEPS = [
    ("draft", "Start", "running"),
    ("draft", "Cancel", "cancelled"),
    ("running", "Pause", "paused"),
    ("running", "Cancel", "cancelled"),
    ("paused", "Resume", "running"),
    ("paused", "Cancel", "cancelled"),
]


@pytest.mark.parametrize(("before", "label", "after"), STEPS, ids=[f"{s[0]}-{s[1]}" for s in STEPS])
def test_each_button_on_a_campaign_page_moves_the_campaign(
    page: Any, sendable: None, before: str, label: str, after: str
) -> None:
    campaign = campaign_in(before)
    page.goto(f"/admin/campaigns/campaign/{campaign.pk}/change/")
    assert page.inner_text("#campaign-progress h2").startswith(f"Sending: {before.capitalize()}")

    click_and_load(page, label)

    campaign.refresh_from_db()
    assert campaign.state == after, f"{label!r} left the campaign {campaign.state}"
    assert re.search(rf"/admin/campaigns/campaign/{campaign.pk}/change/$", page.url)
    assert page.inner_text(".messagelist").strip() == f"{campaign.name}: {label.lower()} done"
    assert page.inner_text("#campaign-progress h2").startswith(f"Sending: {after.capitalize()}")


def test_a_drafts_save_still_saves_the_form_and_start_leaves_unsaved_edits_alone(page: Any, sendable: None) -> None:
    """The steps' forms sit outside the change form: Save posts the campaign's fields, Start posts none."""
    campaign = campaign_in("draft")
    page.goto(f"/admin/campaigns/campaign/{campaign.pk}/change/")
    page.fill("textarea[name=body]", "Hi, flu shots are in.")
    with page.expect_navigation():
        page.click("input[name=_continue]")
    campaign.refresh_from_db()
    assert (campaign.body, campaign.state) == ("Hi, flu shots are in.", "draft")

    page.fill("textarea[name=body]", "an edit nobody saved")
    click_and_load(page, "Start")
    campaign.refresh_from_db()
    assert (campaign.body, campaign.state) == ("Hi, flu shots are in.", "running")


# (the campaign's state, the button on its row of the campaigns list, the state after it)
ROW_STEPS = [
    ("running", "Pause", "paused"),
    ("running", "Cancel", "cancelled"),
    ("paused", "Resume", "running"),
    ("draft", "Cancel", "cancelled"),
]


@pytest.mark.parametrize(("before", "label", "after"), ROW_STEPS, ids=[f"{s[0]}-{s[1]}" for s in ROW_STEPS])
def test_each_button_on_a_campaigns_row_moves_it_and_stays_on_the_list(
    page: Any, sendable: None, before: str, label: str, after: str
) -> None:
    campaign = campaign_in(before)
    other = Campaign.objects.create(name="Dental check-ups", channel="sms", provider="genesys_sms", body="hi")
    page.goto("/admin/campaigns/campaign/?o=1")
    row = page.locator("#result_list tbody tr", has_text=campaign.name)
    button = row.get_by_role("button", name=label, exact=True)
    assert button.count() == 1
    with page.expect_navigation() as navigation:
        button.click()
    assert navigation.value is not None and navigation.value.status < 400

    campaign.refresh_from_db()
    other.refresh_from_db()
    assert (campaign.state, other.state) == (after, "draft"), f"{label!r} on the row moved the wrong campaign"
    assert page.url.endswith("/admin/campaigns/campaign/?o=1"), page.url  # back on the list as it was
    assert page.inner_text(".messagelist").strip() == f"{campaign.name}: {label.lower()} done"
    assert page.locator("#result_list tbody tr", has_text=campaign.name).locator("td.field-state").inner_text() == (
        Campaign.State(after).label
    )


def test_a_drafts_page_counts_the_sms_segments_and_encoding_as_the_body_is_typed(page: Any, sendable: None) -> None:
    campaign = campaign_in("draft")
    page.goto(f"/admin/campaigns/campaign/{campaign.pk}/change/")
    shown = page.locator("#sms-length")
    page.fill("textarea[name=body]", "Flu shots are in. " * 10)  # 180 GSM-7 characters: two segments
    expect(shown).to_contain_text("2 segments, GSM-7, 180 characters", timeout=30_000)
    page.fill("textarea[name=body]", "Flu shots are in 💉")  # an emoji: UCS-2, counted as two code units
    expect(shown).to_contain_text("1 segment, UCS-2, 19 characters", timeout=30_000)
    page.select_option("select[name=channel]", "email")
    expect(shown).to_be_hidden(timeout=30_000)
