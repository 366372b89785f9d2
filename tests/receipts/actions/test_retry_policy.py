"""The retry policy: which failed SMS is sent again, when, how often, never to whom; and the sending seam,
exercised against a real HTTP server on 127.0.0.1 standing in for the provider."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from datetime import timedelta
from typing import Any

import pytest
from django.db import OperationalError, connection
from django.test.utils import CaptureQueriesContext
from django.utils import timezone

from config.celery import app as celery_app
from receipts import tasks
from receipts.actions import effects, process, retries, suppression
from receipts.models import InboxState, Message, ReceiptEvent, Retry
from receipts.providers import senders
from tests.conftest import drain, post_webhook, register
from tests.receipts.actions.support import deliver, genesys_receipt, sms_receipt, webex_delivery, webex_inbound
from tests.senders import HttpSender, LocalProvider

pytestmark = pytest.mark.django_db

NUMBER = "+15551234567"
TEXT = "Your code is 123456"


@pytest.fixture
def provider() -> Iterator[LocalProvider]:
    server = LocalProvider()
    for name in ("genesys_sms", "genesys_cloud"):
        senders.register_sender(name, HttpSender(server.url))
    try:
        yield server
    finally:
        for name in ("genesys_sms", "genesys_cloud"):
            senders.unregister_sender(name)
        server.close()


@pytest.fixture
def at_noon(time_machine: Any) -> Any:
    time_machine.move_to("2026-11-20T12:00:00Z", tick=False)
    return time_machine


def sms(message_id: str = "m-1", provider: str = "genesys_sms", **fields: Any) -> Message:
    fields.setdefault("content", {"text": TEXT})
    return register(channel="sms", provider=provider, provider_message_id=message_id, to=NUMBER, **fields)


def due_in(retry: Retry) -> timedelta:
    assert retry.due_at is not None
    return retry.due_at - timezone.now()


# --- what is retried, and how -------------------------------------------------------------------------


def test_expired_sms_is_sent_again_after_the_delay_as_a_new_message_linked_to_it(
    client: Any, provider: LocalProvider, at_noon: Any
) -> None:
    original = sms(crm_record_id="CRM-1", campaign="reminders", priority="high", correlation_id="corr-1")
    deliver(client, "genesys_sms", sms_receipt("m-1", 3))

    retry = Retry.objects.get()
    assert (retry.message, retry.state, retry.number, retry.failure_category) == (
        original,
        "scheduled",
        1,
        "temporary_network",
    )
    assert due_in(retry) == timedelta(seconds=120)
    assert retries.send_retry(retry.pk) == "not due"
    assert provider.requests == []

    at_noon.shift(timedelta(seconds=120))
    assert retries.send_retry(retry.pk) == "sent"

    assert provider.requests == [{"to": NUMBER, "text": TEXT, "replaces": original.pk}]
    retry.refresh_from_db()
    new = retry.new_message
    assert (new.replaces, new.provider_message_id, new.to, new.content) == (original, "new-1", NUMBER, {"text": TEXT})
    assert (new.crm_record_id, new.campaign.name, new.priority, new.correlation_id) == (
        "CRM-1",
        "reminders",
        "high",
        "corr-1",
    )
    assert list(original.replaced_by.all()) == [new]

    deliver(client, "genesys_sms", sms_receipt("new-1", 2))  # the new message's own receipts find it
    new.refresh_from_db()
    assert new.status == "delivered"


@pytest.mark.parametrize(
    ("provider_name", "body", "category"),
    [
        ("genesys_sms", sms_receipt("m-1", 3), "temporary_network"),  # EXPIRED
        ("genesys_sms", sms_receipt("m-1", 5, 6), "carrier_throttle"),
        ("genesys_sms", sms_receipt("m-1", 5, 98), "temporary_network"),
        ("genesys_cloud", genesys_receipt("m-1", "Failed", "MessageExpired"), "temporary_network"),
        ("genesys_cloud", genesys_receipt("m-1", "Failed", "RateLimited"), "carrier_throttle"),
        ("genesys_cloud", genesys_receipt("m-1", "Failed", "ServerError"), "temporary_network"),
    ],
)
def test_retryable_categories_are_scheduled(client: Any, provider_name: str, body: Any, category: str) -> None:
    sms(provider=provider_name)
    deliver(client, provider_name, body)
    retry = Retry.objects.get()
    assert (retry.state, retry.failure_category) == ("scheduled", category)


@pytest.mark.parametrize(
    ("provider_name", "body"),
    [
        ("genesys_sms", sms_receipt("m-1", 2)),  # delivered
        ("genesys_sms", sms_receipt("m-1", 5, 3)),  # invalid destination
        ("genesys_sms", sms_receipt("m-1", 8, 1)),  # permanent block
        ("genesys_sms", sms_receipt("m-1", 8, 8)),  # content rejected
        ("genesys_sms", sms_receipt("m-1", 5, 99)),  # unknown
        ("genesys_cloud", genesys_receipt("m-1", "Failed", "RecipientOptedOut")),
        ("genesys_cloud", genesys_receipt("m-1", "Failed", "InvalidDestination")),
    ],
)
def test_delivered_and_permanent_failures_are_never_retried(client: Any, provider_name: str, body: Any) -> None:
    sms(provider=provider_name)
    deliver(client, provider_name, body)
    assert not Retry.objects.exists()


def test_email_soft_bounces_and_failures_are_left_to_the_provider(client: Any) -> None:
    register(
        channel="email", provider="webex_connect", provider_message_id="t-1", to="a@example.com", content={"text": "x"}
    )
    register(
        channel="email", provider="webex_connect", provider_message_id="t-2", to="b@example.com", content={"text": "x"}
    )
    deliver(
        client,
        "webex_connect",
        webex_delivery("t-1", "7520", to="a@example.com", description="Transient_MailboxFull", status="Bounce"),
        webex_delivery("t-2", "7208", to="b@example.com", status="Failed"),
    )
    assert Message.objects.get(provider_message_id="t-2").status == "expired"
    assert not Retry.objects.exists()


def test_a_late_delivery_receipt_cancels_the_retry_before_it_is_sent(
    client: Any, provider: LocalProvider, at_noon: Any
) -> None:
    sms()
    deliver(client, "genesys_sms", sms_receipt("m-1", 3))
    at_noon.shift(timedelta(seconds=30))
    deliver(client, "genesys_sms", sms_receipt("m-1", 2))  # later: the final receipt with the latest time wins
    assert Message.objects.get().status == "delivered"

    at_noon.shift(timedelta(minutes=5))
    retry = Retry.objects.get()
    assert retries.send_retry(retry.pk) == "cancelled"
    retry.refresh_from_db()
    assert retry.note == "the message is now delivered, not to be sent again"
    assert provider.requests == []


def test_no_retry_after_the_recipient_opted_out(client: Any) -> None:
    sms()
    deliver(client, "webex_connect", webex_inbound("MO", NUMBER, text="STOP"))
    deliver(client, "genesys_sms", sms_receipt("m-1", 3))
    retry = Retry.objects.get()
    assert (retry.state, retry.note) == ("skipped", "the recipient opted out")


def test_never_sent_to_a_suppressed_address(client: Any) -> None:
    suppression.suppress("sms", NUMBER, "manual", source="operator", note="legal hold")
    sms()
    deliver(client, "genesys_sms", sms_receipt("m-1", 5, 6))
    retry = Retry.objects.get()
    assert (retry.state, retry.note) == ("skipped", "address suppressed (manual)")


def test_a_suppression_added_after_the_decision_cancels_the_send(
    client: Any, provider: LocalProvider, at_noon: Any
) -> None:
    sms()
    deliver(client, "genesys_sms", sms_receipt("m-1", 3))
    suppression.suppress("sms", NUMBER, "complaint", source="api")
    at_noon.shift(timedelta(minutes=3))

    assert retries.send_retry(Retry.objects.get().pk) == "cancelled"
    assert "address suppressed (complaint)" in Retry.objects.get().note
    assert provider.requests == []


def test_a_message_without_content_cannot_be_retried_and_says_so(client: Any) -> None:
    sms(content={})
    deliver(client, "genesys_sms", sms_receipt("m-1", 3))
    retry = Retry.objects.get()
    assert (retry.state, retry.note) == ("skipped", "no content to send again (register the message with content)")


def test_at_most_retry_max_retries_in_a_chain(client: Any, provider: LocalProvider, at_noon: Any) -> None:
    original = sms()
    deliver(client, "genesys_sms", sms_receipt("m-1", 3))
    at_noon.shift(timedelta(minutes=2))
    retries.send_retry(Retry.objects.get().pk)

    deliver(client, "genesys_sms", sms_receipt("new-1", 3))  # the retry expires too

    second = Retry.objects.get(message__provider_message_id="new-1")
    assert (second.state, second.number, second.root) == ("skipped", 2, original)
    assert second.note == "retry limit reached (RETRY_MAX=1)"


def test_retry_max_and_delay_are_settings(client: Any, provider: LocalProvider, settings: Any, at_noon: Any) -> None:
    settings.RETRY_MAX, settings.RETRY_DELAY = 2, timedelta(minutes=10)
    original = sms()
    deliver(client, "genesys_sms", sms_receipt("m-1", 3))
    first = Retry.objects.get()
    assert due_in(first) == timedelta(minutes=10)
    at_noon.shift(timedelta(minutes=10))
    retries.send_retry(first.pk)
    deliver(client, "genesys_sms", sms_receipt("new-1", 5, 6))

    second = Retry.objects.get(number=2)
    assert (second.state, second.root) == ("scheduled", original)
    at_noon.shift(timedelta(minutes=10))
    assert retries.send_retry(second.pk) == "sent"
    assert Message.objects.get(provider_message_id="new-2").replaces.provider_message_id == "new-1"


def test_the_same_failure_processed_twice_is_retried_once(client: Any) -> None:
    sms()
    deliver(client, "genesys_sms", sms_receipt("m-1", 3))
    ReceiptEvent.objects.update(state=InboxState.RECEIVED)
    drain()
    deliver(client, "genesys_sms", sms_receipt("m-1", 5, 98))  # another retryable failure of the same message
    assert Retry.objects.count() == 1


# --- sending --------------------------------------------------------------------------------------------


def test_a_passing_provider_error_is_tried_again_with_backoff_then_given_up(
    client: Any, provider: LocalProvider, at_noon: Any
) -> None:
    sms()
    deliver(client, "genesys_sms", sms_receipt("m-1", 3))
    retry = Retry.objects.get()
    provider.answers = [503, 503, 503]
    at_noon.shift(timedelta(minutes=2))

    assert retries.send_retry(retry.pk) == "scheduled"
    retry.refresh_from_db()
    assert (due_in(retry), retry.attempts, retry.note) == (timedelta(seconds=30), 1, "attempt 1 failed: HTTP 503")
    at_noon.shift(timedelta(seconds=30))
    assert retries.send_retry(retry.pk) == "scheduled"
    assert due_in(Retry.objects.get()) == timedelta(seconds=60)
    at_noon.shift(timedelta(seconds=60))
    assert retries.send_retry(retry.pk) == "failed"

    retry.refresh_from_db()
    assert (retry.attempts, retry.note, retry.new_message) == (3, "provider refused: HTTP 503", None)
    assert len(provider.requests) == 3


def test_a_refusal_fails_the_retry_at_once(client: Any, provider: LocalProvider, at_noon: Any) -> None:
    sms()
    deliver(client, "genesys_sms", sms_receipt("m-1", 3))
    provider.answers = [400]
    at_noon.shift(timedelta(minutes=2))
    assert retries.send_retry(Retry.objects.get().pk) == "failed"
    assert len(provider.requests) == 1


def test_no_sender_for_the_provider_fails_the_retry_saying_so(client: Any, at_noon: Any) -> None:
    sms(provider="genesys_sms")
    deliver(client, "genesys_sms", sms_receipt("m-1", 3))
    at_noon.shift(timedelta(minutes=2))
    assert retries.send_retry(Retry.objects.get().pk) == "failed"
    assert Retry.objects.get().note == "no sender registered for provider genesys_sms"


def test_senders_can_come_from_the_senders_setting(settings: Any) -> None:
    settings.SENDERS = {"generic": "tests.receipts.actions.test_retry_policy.FixedSender"}
    try:
        assert senders.sender_for("generic").send(Message()) == "fixed-1"
    finally:
        senders.unregister_sender("generic")


class FixedSender:
    def send(self, message: Message) -> str:
        return "fixed-1"


def test_a_send_whose_worker_died_is_never_sent_twice(client: Any, provider: LocalProvider, at_noon: Any) -> None:
    sms()
    deliver(client, "genesys_sms", sms_receipt("m-1", 3))
    at_noon.shift(timedelta(minutes=2))
    retry = Retry.objects.get()
    # The worker claimed it and died during the provider call.
    Retry.objects.filter(pk=retry.pk).update(state="sending", claimed_at=timezone.now(), attempts=1)

    assert retries.send_retry(retry.pk) == "not due"  # the task, redelivered, finds it claimed
    assert retries.fail_stale_sends() == 0
    at_noon.shift(timedelta(minutes=11))
    assert retries.fail_stale_sends() == 1

    retry.refresh_from_db()
    assert retry.state == "failed" and "not sent again" in retry.note
    assert provider.requests == []


def test_a_send_the_provider_took_is_recorded_even_when_registering_it_fails(
    client: Any, provider: LocalProvider, at_noon: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The provider accepted the resend, then the database failed registering the new message: its id was
    written first, the sweeper registers it later, and the receipts that came meanwhile attach to it."""
    original = sms()
    deliver(client, "genesys_sms", sms_receipt("m-1", 3))
    at_noon.shift(timedelta(minutes=2))
    retry = Retry.objects.get()

    def database_down(*args: Any, **kwargs: Any) -> None:
        raise OperationalError("server closed the connection unexpectedly")

    monkeypatch.setattr(retries, "record_replacement", database_down)
    assert retries.send_retry(retry.pk) == "sending"
    retry.refresh_from_db()
    assert (retry.state, retry.provider_message_id, retry.new_message) == ("sending", "new-1", None)
    deliver(client, "genesys_sms", sms_receipt("new-1", 2))  # its receipt comes before it is registered
    assert ReceiptEvent.objects.filter(state=InboxState.ORPHAN).count() == 1

    monkeypatch.undo()
    at_noon.shift(timedelta(minutes=11))
    assert retries.fail_stale_sends() == 0  # none failed: it was finished

    retry.refresh_from_db()
    assert retry.state == "sent" and retry.new_message.provider_message_id == "new-1"
    assert retry.new_message.replaces == original
    drain()
    retry.new_message.refresh_from_db()
    assert retry.new_message.status == "delivered"
    assert len(provider.requests) == 1, "sent once"


@contextmanager
def eager_celery() -> Iterator[None]:
    """Tasks queued inside run at once, in this thread (only around the beat task: not the webhooks' kicks)."""
    celery_app.conf.task_always_eager = True
    try:
        yield
    finally:
        celery_app.conf.task_always_eager = False


def test_the_beat_task_sends_every_due_retry(client: Any, provider: LocalProvider, at_noon: Any) -> None:
    sms("m-1")
    sms("m-2")
    deliver(client, "genesys_sms", sms_receipt("m-1", 3), sms_receipt("m-2", 5, 6))
    with eager_celery():
        assert tasks.dispatch_retries() == 0
        at_noon.shift(timedelta(minutes=2))
        assert tasks.dispatch_retries() == 2

    assert sorted(Retry.objects.values_list("state", flat=True)) == ["sent", "sent"]
    assert len(provider.requests) == 2


def test_beat_runs_the_retry_escalation_and_expiry_tasks(settings: Any) -> None:
    scheduled = {entry["task"] for entry in settings.CELERY_BEAT_SCHEDULE.values()}
    assert {
        "receipts.dispatch_retries",
        "receipts.raise_escalations",
        "receipts.expire_suppressions",
    } <= scheduled
    celery_app.loader.import_default_modules()  # what a worker does at start, task autodiscovery included
    assert scheduled <= set(celery_app.tasks)


# --- cost -----------------------------------------------------------------------------------------------


def test_retry_decisions_cost_a_fixed_number_of_queries(client: Any, monkeypatch: pytest.MonkeyPatch) -> None:
    counts: list[int] = []
    original = effects.apply_receipt_effects

    def counted(effects: Any, now: Any) -> None:
        with CaptureQueriesContext(connection) as queries:
            original(effects, now)
        counts.append(len(queries))

    monkeypatch.setattr(effects, "apply_receipt_effects", counted)
    for size, offset in ((3, 0), (30, 3)):
        for i in range(offset, offset + size):
            register(provider="genesys_sms", provider_message_id=f"r-{i}", to=f"+1555300{i:04d}", content={"text": "x"})
            deliver_without_drain(client, f"r-{i}")
        assert process.process_due() == size
    # Open suppressions of the numbers, earlier decisions, insert the decisions: the same for 30 as for 3.
    assert counts == [3, 3]
    assert Retry.objects.filter(state="scheduled").count() == 33


def deliver_without_drain(client: Any, message_id: str) -> None:
    post_webhook(client, "genesys_sms", sms_receipt(message_id, 3), "application/x-www-form-urlencoded")
