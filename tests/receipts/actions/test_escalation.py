"""Critical messages not delivered within FALLBACK_AFTER raise one escalation, shown in the admin and sent to
the CRM as its own event, so that a fallback (a call) can happen."""

from __future__ import annotations

from datetime import timedelta
from typing import Any

import pytest
from django.test import Client

from receipts import tasks
from receipts.actions import escalation, retries
from receipts.events import Kind
from receipts.models import Escalation, Message, Retry
from receipts.providers import senders
from tests.conftest import register
from tests.receipts.actions.support import deliver, recorded_events, sms_receipt

pytestmark = pytest.mark.django_db


@pytest.fixture
def clock(time_machine: Any) -> Any:
    time_machine.move_to("2026-11-20T12:00:00Z", tick=False)
    return time_machine


def critical(message_id: str = "c-1", **fields: Any) -> Message:
    fields.setdefault("priority", "critical")
    return register(provider="genesys_sms", provider_message_id=message_id, crm_record_id="CRM-9", **fields)


class FixedSender:
    """The provider accepts the retry and gives it this id (the network edge is tested in test_retry_policy)."""

    def send(self, message: Message) -> str:
        return "c-1-retry"


def test_a_critical_message_not_delivered_in_ten_minutes_raises_one_escalation(client: Any, clock: Any) -> None:
    message = critical()
    deliver(client, "genesys_sms", sms_receipt("c-1", 6))  # accepted, then nothing
    clock.shift(timedelta(minutes=9, seconds=59))
    assert escalation.raise_escalations() == 0

    clock.shift(timedelta(seconds=1))
    with recorded_events() as seen:
        assert escalation.raise_escalations() == 1
    assert escalation.raise_escalations() == 0  # once
    clock.shift(timedelta(hours=1))
    assert escalation.raise_escalations() == 0

    raised = Escalation.objects.get()
    assert (raised.message, raised.status) == (message, "sent")
    assert raised.deadline == message.created_at + timedelta(minutes=10)
    assert raised.reason == "not delivered within 0:10:00: status sent"
    [event] = seen
    assert (event.kind, event.crm_record_id, event.message_id) == (Kind.ESCALATION, "CRM-9", message.pk)
    assert event.payload["fallback"] == "call"
    assert event.payload["escalation_id"] == raised.pk
    assert "to" not in event.payload and "+1555" not in str(event.payload)


def test_a_failed_critical_message_escalates_with_its_failure(client: Any, clock: Any) -> None:
    critical()
    deliver(client, "genesys_sms", sms_receipt("c-1", 8, 1))
    clock.shift(timedelta(minutes=10))
    escalation.raise_escalations()
    raised = Escalation.objects.get()
    assert (raised.status, raised.failure_category) == ("rejected", "permanent_block")


def test_delivered_in_time_or_not_critical_raises_nothing(client: Any, clock: Any) -> None:
    critical("c-1")
    critical("c-2", priority="high")
    critical("c-3", priority="normal")
    deliver(client, "genesys_sms", sms_receipt("c-1", 2))
    clock.shift(timedelta(hours=1))
    assert escalation.raise_escalations() == 0


def test_a_retry_delivered_in_time_counts_for_the_chain(client: Any, clock: Any) -> None:
    original = critical(content={"text": "Your code is 1"})
    senders.register_sender("genesys_sms", FixedSender())
    try:
        deliver(client, "genesys_sms", sms_receipt("c-1", 3))
        clock.shift(timedelta(minutes=2))
        assert retries.send_retry(Retry.objects.get().pk) == "sent"
    finally:
        senders.unregister_sender("genesys_sms")
    deliver(client, "genesys_sms", sms_receipt("c-1-retry", 2))

    clock.shift(timedelta(minutes=30))
    assert escalation.raise_escalations() == 0
    assert Message.objects.get(replaces=original).priority == "critical"


def test_a_chain_not_delivered_escalates_once_on_its_first_message(client: Any, clock: Any) -> None:
    original = critical(content={"text": "Your code is 1"})
    senders.register_sender("genesys_sms", FixedSender())
    try:
        deliver(client, "genesys_sms", sms_receipt("c-1", 3))
        clock.shift(timedelta(minutes=2))
        retries.send_retry(Retry.objects.get().pk)
    finally:
        senders.unregister_sender("genesys_sms")

    clock.shift(timedelta(minutes=20))  # the retry is overdue too
    assert escalation.raise_escalations() == 1
    raised = Escalation.objects.get()
    assert raised.message == original
    assert raised.reason.endswith(f"its retry (message {Message.objects.get(replaces=original).pk}) is pending")


def test_a_critical_message_that_failed_for_good_escalates_at_once(client: Any, clock: Any) -> None:
    message = critical()
    deliver(client, "genesys_sms", sms_receipt("c-1", 8, 1))  # rejected, permanent_block: no retry can help
    assert not Retry.objects.exists()

    with recorded_events() as seen:
        assert escalation.raise_escalations() == 1
    clock.shift(timedelta(minutes=10))
    assert escalation.raise_escalations() == 0  # once

    raised = Escalation.objects.get()
    assert (raised.message, raised.status, raised.failure_category) == (message, "rejected", "permanent_block")
    assert raised.raised_at < raised.deadline
    assert raised.reason.startswith("failed for good before the 0:10:00 deadline")
    [event] = seen
    assert (event.kind, event.payload["reason"]) == (Kind.ESCALATION, "failed_before_deadline")


def test_a_failure_with_a_retry_pending_waits_and_escalates_when_the_retry_fails_for_good(
    client: Any, clock: Any
) -> None:
    original = critical(content={"text": "Your code is 1"})
    deliver(client, "genesys_sms", sms_receipt("c-1", 3))  # expired: retried once
    assert Retry.objects.get().state == "scheduled"
    assert escalation.raise_escalations() == 0  # the retry may still deliver

    senders.register_sender("genesys_sms", FixedSender())
    try:
        clock.shift(timedelta(minutes=2))
        assert retries.send_retry(Retry.objects.get().pk) == "sent"
    finally:
        senders.unregister_sender("genesys_sms")
    assert escalation.raise_escalations() == 0  # the retry is on its way
    deliver(client, "genesys_sms", sms_receipt("c-1-retry", 3))  # expired again: RETRY_MAX reached
    replacement = Message.objects.get(replaces=original)
    assert Retry.objects.get(message=replacement).state == "skipped"

    clock.shift(timedelta(minutes=1))  # 3 minutes in: well before the deadline
    assert escalation.raise_escalations() == 1
    raised = Escalation.objects.get()
    assert raised.message == original
    assert raised.reason.endswith(f"its retry (message {replacement.pk}) is expired")


def test_a_failure_that_is_not_critical_never_escalates(client: Any, clock: Any) -> None:
    critical("c-1", priority="high")
    deliver(client, "genesys_sms", sms_receipt("c-1", 8, 1))
    clock.shift(timedelta(hours=1))
    assert escalation.raise_escalations() == 0


def test_fallback_after_is_a_setting(client: Any, clock: Any, settings: Any) -> None:
    settings.FALLBACK_AFTER = timedelta(minutes=2)
    critical()
    clock.shift(timedelta(minutes=2))
    assert escalation.raise_escalations() == 1


def test_messages_older_than_the_lookback_are_not_escalated(clock: Any, settings: Any) -> None:
    critical()
    clock.shift(settings.FALLBACK_AFTER + settings.ESCALATION_LOOKBACK + timedelta(seconds=1))
    assert escalation.raise_escalations() == 0


def test_the_beat_task_raises_escalations_and_the_admin_shows_them(admin_client: Client, clock: Any) -> None:
    critical()
    clock.shift(timedelta(minutes=11))
    assert tasks.raise_escalations() == 1

    listed = admin_client.get("/admin/receipts/escalation/").content.decode()
    assert "not delivered within 0:10:00" in listed and "CRM-9" in listed
