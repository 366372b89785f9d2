"""From inbox row to message status: processing, idempotency, orphans, retries, dead events and replay."""

from __future__ import annotations

import json
import threading
from datetime import timedelta
from typing import Any

import pytest
from django.utils import timezone

from receipts import tasks
from receipts.actions import ingest, process
from receipts.models import InboxState, Message, MessageEvent, ReceiptEvent
from receipts.providers.registry import PROVIDERS
from tests.conftest import drain, post_webhook, register, sample

pytestmark = pytest.mark.django_db


def generic(message_id: str, status: str, at: str, **extra: Any) -> bytes:
    return json.dumps({"id": message_id, "status": status, "timestamp": at, **extra}).encode()


def sms_receipt(message_id: str, state: int, result: int = 0) -> bytes:
    return f"type=receipt&message_id={message_id}&message_state={state}&result_code={result}".encode()


def test_webhook_receipt_moves_message_once_processed(client: Any) -> None:
    message = register(provider="genesys_sms", provider_message_id="m-1")
    post_webhook(client, "genesys_sms", sms_receipt("m-1", 6), "application/x-www-form-urlencoded")
    post_webhook(client, "genesys_sms", sms_receipt("m-1", 2), "application/x-www-form-urlencoded")
    message.refresh_from_db()
    assert message.status == "pending"  # nothing happens in the request

    assert drain() == 2

    message.refresh_from_db()
    assert message.status == "delivered"
    assert [e.provider_code for e in message.events.order_by("id")] == ["state=6;result=0", "state=2;result=0"]
    assert set(ReceiptEvent.objects.values_list("state", flat=True)) == {InboxState.PROCESSED}


def test_processing_an_event_twice_writes_its_timeline_once(client: Any) -> None:
    message = register(provider_message_id="g-1")
    post_webhook(client, "generic", generic("g-1", "delivered", "2026-11-20T10:00:00Z"))
    drain()
    ReceiptEvent.objects.update(state=InboxState.RECEIVED)  # as if a killed worker's task came back

    drain()

    assert message.events.count() == 1
    message.refresh_from_db()
    assert message.status == "delivered"


def test_the_same_receipt_inside_two_different_bodies_lands_once(client: Any) -> None:
    message = register(provider_message_id="g-2")
    one = json.loads(generic("g-2", "sent", "2026-11-20T10:00:00Z"))
    two = json.loads(generic("g-2", "delivered", "2026-11-20T10:00:05Z"))
    post_webhook(client, "generic", json.dumps([one]))
    post_webhook(client, "generic", json.dumps([one, two]))

    drain()

    assert sorted(message.events.values_list("status", flat=True)) == ["delivered", "sent"]


def test_receipt_before_its_message_waits_as_orphan_and_matches_on_registration(client: Any) -> None:
    post_webhook(client, "generic", generic("early-1", "delivered", "2026-11-20T10:00:00Z"))
    drain()
    event = ReceiptEvent.objects.get()
    assert event.state == InboxState.ORPHAN
    assert event.ref == "early-1"
    assert event.orphan_until == event.received_at + timedelta(hours=24)

    message = register(provider_message_id="early-1")
    drain()

    message.refresh_from_db()
    assert message.status == "delivered"
    event.refresh_from_db()
    assert event.state == InboxState.PROCESSED


def test_orphan_window_is_configurable_and_unmatched_orphans_are_kept(client: Any, settings: Any) -> None:
    settings.ORPHAN_WINDOW = timedelta(minutes=30)
    post_webhook(client, "generic", generic("never-1", "delivered", "2026-11-20T10:00:00Z"))
    drain()

    assert ingest.expire_orphans(timezone.now() + timedelta(minutes=29)) == 0
    assert ingest.expire_orphans(timezone.now() + timedelta(minutes=31)) == 1

    event = ReceiptEvent.objects.get()
    assert event.state == InboxState.UNMATCHED
    assert "orphan window" in event.error


def test_sweeper_matches_an_orphan_whose_registration_raced_it(client: Any) -> None:
    post_webhook(client, "generic", generic("race-1", "delivered", "2026-11-20T10:00:00Z"))
    drain()
    # The message commits without seeing the orphan (it was not committed yet when registration looked).
    Message.objects.create(channel="sms", provider="generic", provider_message_id="race-1", to="+15551234567")

    assert ingest.rematch_orphans() == 1
    drain()

    assert Message.objects.get(provider_message_id="race-1").status == "delivered"


def test_one_email_to_several_recipients_is_told_apart_by_destination(client: Any) -> None:
    first = register(channel="email", provider="webex_connect", provider_message_id="t-1", to="a@example.com")
    second = register(channel="email", provider="webex_connect", provider_message_id="t-1", to="b@example.com")
    body = json.loads(sample("webex-connect/email-7500-delivered.json"))
    body["deliveryInfoNotification"]["transid"] = "t-1"
    body["deliveryInfoNotification"]["deliveryInfo"]["destination"] = "B@Example.com"
    post_webhook(client, "webex_connect", json.dumps(body))

    drain()

    first.refresh_from_db()
    second.refresh_from_db()
    assert (first.status, second.status) == ("pending", "delivered")


def test_email_receipt_for_an_unregistered_recipient_waits_instead_of_landing_on_another(client: Any) -> None:
    register(channel="email", provider="webex_connect", provider_message_id="t-2", to="a@example.com")
    body = json.loads(sample("webex-connect/email-7500-delivered.json"))
    body["deliveryInfoNotification"]["transid"] = "t-2"
    body["deliveryInfoNotification"]["deliveryInfo"]["destination"] = "c@example.com"
    post_webhook(client, "webex_connect", json.dumps(body))

    drain()

    assert ReceiptEvent.objects.get().state == InboxState.ORPHAN
    assert Message.objects.get().status == "pending"


def test_read_and_click_are_counted_with_their_details_and_read_implies_delivered(client: Any) -> None:
    message = register(
        channel="email",
        provider="webex_connect",
        provider_message_id="c71c2927-6bb3-2021-9c8e-226b48d66ba0_0",
        to="destination@domain.tld",
    )
    post_webhook(client, "webex_connect", sample("webex-connect/email-7502-read.json"))
    clicked = json.loads(sample("webex-connect/email-7528-clicked.json"))
    clicked["deliveryInfoNotification"]["transid"] = message.provider_message_id
    post_webhook(client, "webex_connect", json.dumps(clicked))

    drain()

    message.refresh_from_db()
    assert message.status == "delivered"
    assert (message.read_count, message.click_count) == (1, 1)
    click = message.events.get(engagement="clicked")
    assert click.details["url"] == "https://your.link.tld/files/sample.pdf"
    assert click.details["ip"] == "192.0.2.1"
    assert click.details["user_agent"].startswith("Mozilla/5.0")
    assert click.applied is False


def test_provider_unknown_state_flags_review_and_leaves_status(client: Any) -> None:
    message = register(provider="genesys_sms", provider_message_id="u-1")
    post_webhook(client, "genesys_sms", sms_receipt("u-1", 6), "application/x-www-form-urlencoded")
    post_webhook(client, "genesys_sms", sms_receipt("u-1", 7), "application/x-www-form-urlencoded")

    drain()

    message.refresh_from_db()
    assert (message.status, message.needs_review, message.review_reason) == ("sent", True, "provider_unknown")


def test_conflicting_finals_keep_the_later_provider_time_and_flag_review(client: Any) -> None:
    message = register(provider_message_id="x-1")
    post_webhook(client, "generic", generic("x-1", "failed", "2026-11-20T10:00:09Z", errorCode="carrier_rejected"))
    drain()
    post_webhook(client, "generic", generic("x-1", "delivered", "2026-11-20T10:00:05Z"))
    drain()

    message.refresh_from_db()
    assert (message.status, message.failure_category) == ("failed", "permanent_block")
    assert (message.needs_review, message.review_reason) == (True, "conflicting_receipts")
    assert message.events.count() == 2


def test_inbound_opt_out_goes_on_the_latest_message_to_that_address(client: Any) -> None:
    register(channel="email", provider="webex_connect", provider_message_id="old", to="customer@domain.tld")
    latest = register(channel="email", provider="webex_connect", provider_message_id="new", to="customer@domain.tld")
    post_webhook(client, "webex_connect", sample("webex-connect/inbound-unsubscribe.json"))

    drain()

    latest.refresh_from_db()
    assert latest.unsubscribed_at is not None
    assert latest.events.get().engagement == "unsubscribed"
    assert ReceiptEvent.objects.get().state == InboxState.PROCESSED


def test_inbound_event_for_an_unknown_address_is_processed_not_orphaned(client: Any) -> None:
    post_webhook(client, "webex_connect", sample("webex-connect/inbound-subscribe.json"))
    drain()
    assert ReceiptEvent.objects.get().state == InboxState.PROCESSED
    assert MessageEvent.objects.count() == 0


@pytest.fixture
def break_processing(monkeypatch: pytest.MonkeyPatch) -> Any:
    """A bug in processing, not in the webhook: bodies with "boom" parse at ingest, then fail in the worker."""

    def activate() -> None:
        provider = PROVIDERS["generic"]
        original = type(provider).parse

        def parse(self: Any, body: bytes, content_type: str) -> Any:
            if b"boom" in body:
                raise RuntimeError("processing bug")
            return original(self, body, content_type)

        monkeypatch.setattr(type(provider), "parse", parse)

    return activate


def test_a_failing_event_is_retried_with_backoff_then_dead(
    client: Any, settings: Any, break_processing: Any, time_machine: Any
) -> None:
    settings.INBOX_MAX_ATTEMPTS = 3
    time_machine.move_to("2026-11-22T10:00:00Z", tick=False)
    post_webhook(client, "generic", generic("boom", "delivered", "2026-11-20T10:00:00Z"))
    break_processing()

    drain()
    event = ReceiptEvent.objects.get()
    assert (event.state, event.attempts) == (InboxState.RECEIVED, 1)
    assert event.next_attempt_at == timezone.now() + timedelta(seconds=10)
    assert "processing bug" in event.error

    assert drain() == 0  # not due yet
    time_machine.shift(timedelta(seconds=10))
    drain()
    event.refresh_from_db()
    assert event.attempts == 2
    assert event.next_attempt_at == timezone.now() + timedelta(seconds=20)

    time_machine.shift(timedelta(seconds=20))
    drain()
    event.refresh_from_db()
    assert (event.state, event.attempts) == (InboxState.DEAD, 3)


def test_one_failing_event_does_not_hold_back_its_batch(client: Any, break_processing: Any) -> None:
    good = register(provider_message_id="fine-1")
    post_webhook(client, "generic", generic("fine-1", "delivered", "2026-11-20T10:00:00Z"))
    post_webhook(client, "generic", generic("boom", "delivered", "2026-11-20T10:00:00Z"))
    break_processing()

    drain()

    good.refresh_from_db()
    assert good.status == "delivered"
    states = dict(ReceiptEvent.objects.values_list("body", "state"))
    assert sorted(states.values()) == [InboxState.PROCESSED, InboxState.RECEIVED]


def test_replay_sends_dead_and_unmatched_events_through_again(client: Any) -> None:
    post_webhook(client, "generic", generic("late-1", "delivered", "2026-11-20T10:00:00Z"))
    drain()
    ReceiptEvent.objects.update(state=InboxState.DEAD, attempts=5, error="gave up")
    register(provider_message_id="late-1")

    assert len(ingest.replay_events(ReceiptEvent.objects.all())) == 1
    drain()

    event = ReceiptEvent.objects.get()
    assert (event.state, event.attempts, event.error) == (InboxState.PROCESSED, 0, "")
    assert Message.objects.get().status == "delivered"


def test_replayed_rejected_body_that_still_does_not_parse_stays_rejected(client: Any) -> None:
    post_webhook(client, "generic", b'{"id": "r-1"}')
    event = ReceiptEvent.objects.get()
    assert event.state == InboxState.REJECTED

    ingest.replay_events(ReceiptEvent.objects.all())
    drain()

    event.refresh_from_db()
    assert event.state == InboxState.REJECTED
    assert "status" in event.error


def test_processed_events_are_not_replayed(client: Any) -> None:
    register(provider_message_id="p-1")
    post_webhook(client, "generic", generic("p-1", "sent", "2026-11-20T10:00:00Z"))
    drain()
    assert ingest.replay_events(ReceiptEvent.objects.all()) == []


def test_batch_processing_costs_a_fixed_number_of_queries(client: Any, django_assert_num_queries: Any) -> None:
    for i in range(30):
        register(provider_message_id=f"q-{i}")
        post_webhook(client, "generic", generic(f"q-{i}", "delivered", "2026-11-20T10:00:00Z"))
    # claim (+ savepoint), find messages, lock them, existing timeline keys, update messages, insert
    # timeline, update events; the same for 30 events as for 3.
    # +1: the CRM outbox receiver (crm_sync) writes the batch's status changes in one INSERT.
    with django_assert_num_queries(12):
        assert process.process_due() == 30
    assert Message.objects.filter(status="delivered").count() == 30


def test_status_and_review_changes_are_announced_inside_the_transaction(client: Any) -> None:
    from django.db import connection

    from receipts.events import changes

    seen: list[tuple[str, str, str, bool]] = []

    def receiver(sender: Any, events: list, **kwargs: Any) -> None:
        assert connection.in_atomic_block  # a receiver's writes commit with the change
        seen.extend(
            (e.kind, e.payload["previous_status"], e.payload["status"], e.payload["needs_review"]) for e in events
        )

    register(provider_message_id="ev-1", crm_record_id="CRM-9")
    post_webhook(client, "generic", generic("ev-1", "delivered", "2026-11-20T10:00:05Z"))
    post_webhook(client, "generic", generic("ev-1", "sent", "2026-11-20T10:00:01Z"))  # no change: not announced
    post_webhook(client, "generic", generic("ev-1", "failed", "2026-11-20T10:00:03Z"))  # review flag only
    changes.connect(receiver)
    try:
        drain()
    finally:
        changes.disconnect(receiver)

    assert seen == [
        ("status_changed", "pending", "delivered", False),
        ("status_changed", "delivered", "delivered", True),
    ]


# --- the drain task -------------------------------------------------------------------------------------


@pytest.mark.parametrize("linger", [0.05, 0.0])
def test_a_drain_after_a_small_batch_lingers_for_more_then_ends_on_an_empty_inbox(
    client: Any, settings: Any, monkeypatch: pytest.MonkeyPatch, linger: float
) -> None:
    settings.INBOX_LINGER = linger
    message = register(provider_message_id="g-linger")
    post_webhook(client, "generic", generic("g-linger", "sent", "2026-11-20T10:00:00Z"))
    sleeps: list[float] = []
    real_sleep, drain_thread = tasks.time.sleep, threading.current_thread()

    def sleep(seconds: float) -> None:  # another receipt arrives while the drain waits
        if threading.current_thread() is not drain_thread:  # the web side's kicker thread sleeps too
            return real_sleep(seconds)
        sleeps.append(seconds)
        if len(sleeps) == 1:
            post_webhook(client, "generic", generic("g-linger", "delivered", "2026-11-20T10:00:05Z"))

    monkeypatch.setattr(tasks.time, "sleep", sleep)

    processed = tasks.drain_inbox()

    message.refresh_from_db()
    if linger:
        # Batch of one, wait, batch of one (the receipt that came meanwhile), wait, nothing: done.
        assert (processed, sleeps, message.status) == (2, [linger, linger], "delivered")
    else:
        assert (processed, sleeps, message.status) == (1, [], "sent")


def test_an_orphan_that_cannot_attach_is_not_sent_round_at_every_sweep(client: Any, time_machine: Any) -> None:
    """An email receipt for a recipient the message was not sent to stays an orphan; once it has been matched
    against the message and failed, the sweeper leaves it until something new is registered."""
    time_machine.move_to("2026-11-22T10:00:00Z", tick=False)
    register(channel="email", provider="generic", provider_message_id="mail-1", to="a@example.com")
    body = json.loads(generic("mail-1", "delivered", "2026-11-20T10:00:00Z"))
    post_webhook(client, "generic", json.dumps({**body, "type": "email", "to": "b@example.com"}))
    drain()
    assert ReceiptEvent.objects.get().state == InboxState.ORPHAN

    # Registered just before the orphan was processed: it might have raced the orphan's commit, so one more look.
    time_machine.shift(timedelta(minutes=3))
    assert ingest.rematch_orphans() == 1
    drain()
    assert ReceiptEvent.objects.get().state == InboxState.ORPHAN
    for _ in range(3):  # then no more: the sweeper used to send it round every 5 s for a day
        time_machine.shift(timedelta(seconds=5))
        assert ingest.rematch_orphans() == 0

    register(channel="email", provider="generic", provider_message_id="mail-1", to="b@example.com")
    drain()
    assert ReceiptEvent.objects.get().state == InboxState.PROCESSED
