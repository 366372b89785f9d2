"""Every change writes an outbox row in the transaction that made it, whatever its kind."""

from __future__ import annotations

import json
from typing import Any

import pytest
from django.db import transaction

from crm_sync.actions import stream_of
from crm_sync.models import OutboxMessage, OutboxState
from receipts.events import DomainEvent, Kind, publish
from tests.conftest import drain, post_webhook, register
from tests.crm_sync.conftest import T0, change, publish_changes

pytestmark = pytest.mark.django_db

EVERY_KIND = [
    Kind.STATUS_CHANGED,
    Kind.REVIEW_RESOLVED,
    Kind.ESCALATION,
    Kind.SUPPRESSION_ADDED,
    Kind.SUPPRESSION_LIFTED,
]


def test_every_kind_of_change_writes_one_row_with_its_key_record_and_payload() -> None:
    publish_changes(*[change(kind, record=f"R-{i}", message_id=i, n=i) for i, kind in enumerate(EVERY_KIND)])

    rows = list(OutboxMessage.objects.order_by("id"))
    assert [r.kind for r in rows] == EVERY_KIND
    assert [r.crm_record_id for r in rows] == [f"R-{i}" for i in range(5)]
    assert [r.payload for r in rows] == [{"n": i} for i in range(5)]
    assert all(r.state == OutboxState.PENDING and r.attempts == 0 and r.occurred_at == T0 for r in rows)
    assert len({r.idempotency_key for r in rows}) == 5
    assert all(r.idempotency_key.startswith("chg_") for r in rows)


def test_a_kind_nobody_has_invented_yet_is_recorded_the_same_way() -> None:
    publish_changes(change("campaign_paused", record="R-9", message_id=None, campaign="spring"))

    row = OutboxMessage.objects.get()
    assert (row.kind, row.payload, row.stream) == ("campaign_paused", {"campaign": "spring"}, "record:R-9")


def test_a_rolled_back_change_leaves_no_row() -> None:
    class Boom(Exception):
        pass

    with pytest.raises(Boom), transaction.atomic():
        publish([change()])
        assert OutboxMessage.objects.count() == 1  # written inside the transaction...
        raise Boom
    assert OutboxMessage.objects.count() == 0  # ...and gone with it


def test_payload_values_json_cannot_carry_natively_are_stored_as_text() -> None:
    publish_changes(change(at=T0, reason="hard_bounce"))

    assert OutboxMessage.objects.get().payload == {"at": "2026-11-20T10:00:00Z", "reason": "hard_bounce"}


def test_a_batch_of_events_is_written_in_one_query(django_assert_num_queries: Any) -> None:
    events = [change(record=f"R-{i}", message_id=i) for i in range(50)]
    with transaction.atomic(), django_assert_num_queries(1):
        publish(events)
    assert OutboxMessage.objects.count() == 50


def test_a_status_change_through_the_pipeline_lands_in_the_outbox_with_the_message_state(client: Any) -> None:
    message = register(provider_message_id="out-1", crm_record_id="003XX000004TmiQ")
    body = {"id": "out-1", "status": "delivered", "timestamp": "2026-11-20T10:00:05Z"}
    post_webhook(client, "generic", json.dumps(body))
    drain()

    row = OutboxMessage.objects.get()
    assert (row.kind, row.crm_record_id, row.message_id) == ("status_changed", "003XX000004TmiQ", message.pk)
    assert row.payload["status"] == "delivered"
    assert row.payload["previous_status"] == "pending"
    assert row.stream == "record:003XX000004TmiQ"


@pytest.mark.parametrize(
    ("event", "stream"),
    [
        (DomainEvent("status_changed", T0, {}, 5, "003A"), "record:003A"),
        (DomainEvent("status_changed", T0, {}, 5, ""), "message:5"),
        (DomainEvent("suppression_added", T0, {"channel": "email", "address": "a@example.com"}), "address:"),
        (DomainEvent("escalation", T0, {}), "unkeyed"),
    ],
)
def test_changes_keep_order_with_their_record_else_message_else_address(event: DomainEvent, stream: str) -> None:
    assert stream_of(event).startswith(stream)


def test_the_same_address_is_one_stream_whatever_the_kind() -> None:
    added = DomainEvent("suppression_added", T0, {"channel": "sms", "address": "+15551234567"})
    lifted = DomainEvent("suppression_lifted", T0, {"channel": "sms", "address": "+15551234567"})
    other = DomainEvent("suppression_added", T0, {"channel": "sms", "address": "+15557654321"})
    assert stream_of(added) == stream_of(lifted) != stream_of(other)
    assert "+1555" not in stream_of(added)  # no address in the clear
