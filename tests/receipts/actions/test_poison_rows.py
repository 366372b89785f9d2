"""One inbox row can never block the others: a row that fails, and even one whose data cannot be saved, is
counted, backed off and finally dead, while the rest of the inbox goes on."""

from __future__ import annotations

import json
from datetime import timedelta
from typing import Any

import pytest
from django.db import DataError

from receipts.actions import process
from receipts.models import InboxState, ReceiptEvent
from tests.conftest import drain, post_webhook, register

pytestmark = pytest.mark.django_db


def generic(message_id: str, status: str = "delivered", **extra: Any) -> bytes:
    return json.dumps({"id": message_id, "status": status, "timestamp": "2026-11-20T10:00:00Z", **extra}).encode()


@pytest.fixture
def poison(monkeypatch: pytest.MonkeyPatch) -> None:
    """Processing a body that says "poison" fails after it has put an over-long ``ref`` on its row, as an orphan
    whose id did not fit the column used to: the bookkeeping of the failure must not save that field again."""
    original = process.apply_events

    def apply_events(events: list[ReceiptEvent], now: Any) -> None:
        for event in events:
            if "poison" in event.body:
                event.ref = "L" * 300
                raise DataError("value too long for type character varying(255), to +15551234567")
        original(events, now)

    monkeypatch.setattr(process, "apply_events", apply_events)


@pytest.mark.usefixtures("poison")
def test_a_poison_row_is_counted_and_backed_off_and_the_others_are_processed(client: Any, settings: Any) -> None:
    first, last = register(provider_message_id="ok-1"), register(provider_message_id="ok-2")
    post_webhook(client, "generic", generic("ok-1"))
    post_webhook(client, "generic", generic("poison-1"))
    post_webhook(client, "generic", generic("ok-2"))

    drain()

    for message in (first, last):
        message.refresh_from_db()
        assert message.status == "delivered"
    bad = ReceiptEvent.objects.get(body__contains="poison")
    assert (bad.state, bad.attempts, bad.ref) == (InboxState.RECEIVED, 1, "")
    assert "DataError: value too long" in bad.error
    assert "+15551234567" not in bad.error  # addresses masked in the stored error
    assert bad.next_attempt_at > bad.received_at + settings.INBOX_RETRY_BASE / 2


@pytest.mark.usefixtures("poison")
def test_a_poison_row_goes_dead_and_never_stops_later_receipts(client: Any, settings: Any, time_machine: Any) -> None:
    settings.INBOX_MAX_ATTEMPTS = 3
    time_machine.move_to("2026-11-22T10:00:00Z", tick=False)
    post_webhook(client, "generic", generic("poison-1"))
    for attempt in range(3):
        message = register(provider_message_id=f"later-{attempt}")
        post_webhook(client, "generic", generic(f"later-{attempt}"))
        drain()
        message.refresh_from_db()
        assert message.status == "delivered"
        time_machine.shift(settings.INBOX_RETRY_MAX + timedelta(seconds=1))

    bad = ReceiptEvent.objects.get(body__contains="poison")
    assert (bad.state, bad.attempts) == (InboxState.DEAD, 3)


def test_a_stored_row_whose_id_cannot_fit_is_rejected_not_retried_for_ever(client: Any) -> None:
    """A row stored before the webhook refused such ids: processing rejects it and goes on."""
    ReceiptEvent.objects.create(
        provider="genesys_sms",
        body="type=receipt&message_state=2&message_id=" + "L" * 300,
        content_type="application/x-www-form-urlencoded",
        dedupe_key="legacy",
    )
    message = register(provider="genesys_sms", provider_message_id="ok-1")
    post_webhook(
        client, "genesys_sms", b"type=receipt&message_state=2&message_id=ok-1", "application/x-www-form-urlencoded"
    )

    drain()

    legacy = ReceiptEvent.objects.get(dedupe_key="legacy")
    assert legacy.state == InboxState.REJECTED
    assert "over 255 characters" in legacy.error
    message.refresh_from_db()
    assert message.status == "delivered"
