"""The receipt timeout and the operators' review queue: every settlement audited, on the timeline, announced."""

from __future__ import annotations

import json
from collections.abc import Iterator
from datetime import timedelta
from typing import Any

import pytest
from django.contrib.auth import get_user_model
from django.test import Client
from django.utils import timezone

from receipts.actions import review
from receipts.events import changes
from receipts.models import Message, ReviewResolution
from tests.conftest import drain, post_webhook, register

pytestmark = pytest.mark.django_db


def receipt(client: Client, message_id: str, status: str, at: str, **extra: Any) -> None:
    body = {"id": message_id, "status": status, "timestamp": at, **extra}
    assert post_webhook(client, "generic", json.dumps(body)).status_code == 200
    drain()


@pytest.fixture
def announced() -> Iterator[list]:
    seen: list = []

    def receiver(sender: Any, events: list, **kwargs: Any) -> None:
        seen.extend(events)

    changes.connect(receiver)
    yield seen
    changes.disconnect(receiver)


# --- the receipt timeout ----------------------------------------------------------------------------------


def admin_page(message: Any) -> str:
    operator = get_user_model().objects.create_superuser("timeout-reader", password="pw")
    browser = Client()
    browser.force_login(operator)
    return " ".join(browser.get(f"/admin/receipts/message/{message.pk}/change/").content.decode().split())


def test_no_final_receipt_within_the_timeout_means_assumed_delivered_and_flagged(
    client: Client, time_machine: Any, announced: list
) -> None:
    time_machine.move_to("2026-11-20T10:00:00Z", tick=False)
    message = register(provider_message_id="t-1")
    receipt(client, "t-1", "sent", "2026-11-20T10:00:01Z")

    time_machine.shift(timedelta(hours=23, minutes=59))
    assert review.expire_receipts() == 0
    time_machine.shift(timedelta(minutes=2))
    assert review.expire_receipts() == 1

    message.refresh_from_db()
    assert (message.status, message.assumed) == ("delivered", True)
    assert (message.needs_review, message.review_reason) == (True, "no_receipt")
    # Its timeline says the timeout set it, not a poll (issue 22, item 6: the row said source Poll).
    assert list(message.events.filter(provider_code="receipt_timeout", applied=True).values_list("source")) == [
        ("timeout",)
    ]
    page = admin_page(message)
    assert "set by the receipt timeout" in page and "poll receipt" not in page
    assert [(e.kind, e.payload["previous_status"], e.payload["assumed"]) for e in announced] == [
        ("status_changed", "pending", False),  # the webhook's sent
        ("status_changed", "sent", True),
    ]


def test_a_message_with_no_receipt_at_all_times_out_from_its_registration(time_machine: Any) -> None:
    time_machine.move_to("2026-11-20T10:00:00Z", tick=False)
    register(provider_message_id="t-2")
    time_machine.shift(timedelta(hours=24, seconds=1))

    assert review.expire_receipts() == 1
    assert Message.objects.get().status == "delivered"


def test_timeout_is_configurable(settings: Any, time_machine: Any) -> None:
    settings.RECEIPT_TIMEOUT = timedelta(hours=2)
    time_machine.move_to("2026-11-20T10:00:00Z", tick=False)
    register(provider_message_id="t-3")
    time_machine.shift(timedelta(hours=2, seconds=1))
    assert review.expire_receipts() == 1


def test_final_messages_never_time_out(client: Client, time_machine: Any) -> None:
    time_machine.move_to("2026-11-20T10:00:00Z", tick=False)
    register(provider_message_id="t-4")
    receipt(client, "t-4", "failed", "2026-11-20T10:00:05Z", errorCode="blocked")
    time_machine.shift(timedelta(days=3))
    assert review.expire_receipts() == 0
    assert Message.objects.get().status == "failed"


def test_a_real_final_receipt_replaces_an_assumed_delivery_and_clears_the_flag(
    client: Client, time_machine: Any
) -> None:
    time_machine.move_to("2026-11-20T10:00:00Z", tick=False)
    message = register(provider_message_id="t-5")
    time_machine.shift(timedelta(hours=25))
    review.expire_receipts()

    receipt(client, "t-5", "failed", "2026-11-20T10:00:30Z", errorCode="invalid_number")

    message.refresh_from_db()
    assert (message.status, message.assumed, message.failure_category) == ("failed", False, "invalid_destination")
    assert (message.needs_review, message.review_reason) == (False, "")


# --- settling reviews -------------------------------------------------------------------------------------


@pytest.fixture
def conflicted(client: Client) -> Message:
    message = register(provider_message_id="c-1", campaign="spring", crm_record_id="CRM-7")
    receipt(client, "c-1", "delivered", "2026-11-20T10:00:05Z")
    receipt(client, "c-1", "failed", "2026-11-20T10:00:09Z", errorCode="blocked")
    message.refresh_from_db()
    assert (message.status, message.review_reason) == ("failed", "conflicting_receipts")
    return message


def test_review_queue_lists_what_needs_review_with_reason_and_last_receipt(
    admin_client: Client, conflicted: Message
) -> None:
    register(provider_message_id="calm-1")
    response = admin_client.get("/admin/receipts/reviewqueue/")
    html = response.content.decode()
    assert response.status_code == 200
    assert "c-1" in html
    assert "calm-1" not in html
    assert "Conflicting Receipts" in html
    assert "failed/blocked" in html  # the last receipt
    assert "spring" in html


def test_confirm_delivered_settles_and_keeps_who_when_and_why(
    admin_client: Client, conflicted: Message, announced: list
) -> None:
    response = admin_client.post(
        "/admin/receipts/reviewqueue/", {"action": "confirm_delivered", "_selected_action": [conflicted.pk]}
    )
    assert response.status_code == 200  # asks for an optional note first
    response = admin_client.post(
        "/admin/receipts/reviewqueue/",
        {"action": "confirm_delivered", "_selected_action": [conflicted.pk], "apply": "1", "note": "customer replied"},
        follow=True,
    )
    assert "1 message(s): confirmed delivered." in response.content.decode()

    conflicted.refresh_from_db()
    assert (conflicted.status, conflicted.failure_category, conflicted.needs_review) == ("delivered", "", False)
    resolution = ReviewResolution.objects.get()
    assert (resolution.action, resolution.review_reason, resolution.note) == (
        "confirm_delivered",
        "conflicting_receipts",
        "customer replied",
    )
    assert resolution.user.username == "admin"
    entry = conflicted.events.get(source="operator")
    assert entry.provider_code == "operator:confirm_delivered"
    assert "admin" in entry.description
    assert [e.kind for e in announced] == ["review_resolved", "status_changed"]
    assert announced[0].crm_record_id == "CRM-7"
    assert announced[0].payload["user"] == "admin"

    page = admin_client.get(f"/admin/receipts/message/{conflicted.pk}/change/").content.decode()
    assert "customer replied" in page
    assert "review history" in page.lower()


def test_mark_failed_asks_for_a_category(admin_client: Client, client: Client, time_machine: Any) -> None:
    time_machine.move_to("2026-11-20T10:00:00Z", tick=False)
    message = register(provider_message_id="m-1")
    time_machine.shift(timedelta(hours=25))
    review.expire_receipts()

    form = admin_client.post(
        "/admin/receipts/reviewqueue/", {"action": "mark_failed", "_selected_action": [message.pk]}
    )
    assert "category" in form.content.decode()
    missing = admin_client.post(
        "/admin/receipts/reviewqueue/", {"action": "mark_failed", "_selected_action": [message.pk], "apply": "1"}
    )
    assert "This field is required" in missing.content.decode()
    message.refresh_from_db()
    assert message.status == "delivered"

    admin_client.post(
        "/admin/receipts/reviewqueue/",
        {"action": "mark_failed", "_selected_action": [message.pk], "apply": "1", "category": "invalid_destination"},
    )
    message.refresh_from_db()
    assert (message.status, message.assumed, message.failure_category) == ("failed", False, "invalid_destination")
    assert message.needs_review is False


def test_resolve_needs_a_note_and_leaves_the_status(admin_client: Client, conflicted: Message) -> None:
    refused = admin_client.post(
        "/admin/receipts/reviewqueue/", {"action": "resolve", "_selected_action": [conflicted.pk], "apply": "1"}
    )
    assert "This field is required" in refused.content.decode()

    admin_client.post(
        "/admin/receipts/reviewqueue/",
        {"action": "resolve", "_selected_action": [conflicted.pk], "apply": "1", "note": "carrier confirmed failure"},
    )
    conflicted.refresh_from_db()
    assert (conflicted.status, conflicted.needs_review) == ("failed", False)
    assert ReviewResolution.objects.get().note == "carrier confirmed failure"


def test_poll_again_schedules_a_poll_and_keeps_the_item_in_review(
    admin_client: Client, conflicted: Message, time_machine: Any
) -> None:
    time_machine.move_to("2026-11-21T08:00:00Z", tick=False)
    admin_client.post("/admin/receipts/reviewqueue/", {"action": "poll_again", "_selected_action": [conflicted.pk]})

    conflicted.refresh_from_db()
    assert conflicted.next_poll_at == timezone.now()
    assert conflicted.needs_review is True
    assert ReviewResolution.objects.get().action == "poll_again"


def test_settlement_rules_are_enforced_outside_the_admin_too(conflicted: Message) -> None:
    user = get_user_model().objects.create_user("operator")
    with pytest.raises(ValueError, match="category"):
        review.settle([conflicted.pk], review.Settlement("mark_failed"), user)
    with pytest.raises(ValueError, match="note"):
        review.settle([conflicted.pk], review.Settlement("resolve", note="  "), user)
    with pytest.raises(ValueError, match="unknown"):
        review.settle([conflicted.pk], review.Settlement("delete"), user)
    assert ReviewResolution.objects.count() == 0


@pytest.fixture
def operator(client: Client) -> Client:
    """A staff member who may settle reviews (change_message), not a superuser."""
    from django.contrib.auth.models import Permission, User

    user = User.objects.create_user("operator", password="operator-pass", is_staff=True)
    user.user_permissions.add(Permission.objects.get(codename="change_message", content_type__app_label="receipts"))
    client.force_login(user)
    return client


def test_the_page_of_a_message_under_review_is_read_only_and_only_the_actions_settle(
    operator: Client, conflicted: Message
) -> None:
    url = f"/admin/receipts/reviewqueue/{conflicted.pk}/change/"
    before = (conflicted.status, conflicted.needs_review, conflicted.review_reason)

    page = operator.get(url)
    edited = operator.post(url, {"status": "delivered", "needs_review": "", "review_reason": ""})

    assert page.status_code == 200
    html = page.content.decode()
    assert 'name="status"' not in html and 'name="replaces"' not in html and 'name="_save"' not in html
    assert edited.status_code == 403
    conflicted.refresh_from_db()
    assert (conflicted.status, conflicted.needs_review, conflicted.review_reason) == before
    settled = operator.post(
        "/admin/receipts/reviewqueue/",
        {"action": "resolve", "_selected_action": [conflicted.pk], "apply": "1", "note": "checked by phone"},
    )
    assert settled.status_code == 302
    conflicted.refresh_from_db()
    assert not conflicted.needs_review
