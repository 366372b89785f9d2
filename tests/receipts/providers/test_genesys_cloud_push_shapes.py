"""Genesys Cloud pushes receipts in the shape its documentation shows, with or without ``type: Receipt`` (open
messaging, "Outbound message receipts": ``id``, ``channel``, ``status``, ``direction``, ``isFinalReceipt``,
``reasons``). Both read as receipts, never as a MessageData with a status it does not know."""

from __future__ import annotations

import json
from typing import Any

import pytest

from receipts.providers.registry import PROVIDERS
from receipts.status import Status

CLOUD = PROVIDERS["genesys_cloud"]


def documented_receipt(status: str, **extra: Any) -> dict[str, Any]:
    return {
        "id": "efd2b1e5-1d5c-4b4c-bb2c-0c1d2e3f4a5b",
        "channel": {
            "id": "5a6b7c8d-9e0f-4a1b-2c3d-4e5f6a7b8c9d",
            "platform": "Open",
            "type": "Private",
            "to": {"id": "+15551234567"},
            "from": {"id": "+15559876543"},
            "time": "2026-11-20T10:00:05.000Z",
            "messageId": "m-documented-1",
        },
        "status": status,
        "direction": "Outbound",
        "isFinalReceipt": status in ("Delivered", "Failed"),
        **extra,
    }


@pytest.mark.parametrize("with_type", [False, True])
def test_the_documented_delivered_receipt_reads_as_delivered(with_type: bool) -> None:
    body = documented_receipt("Delivered") | ({"type": "Receipt"} if with_type else {})

    [receipt] = CLOUD.read(json.dumps(body).encode(), "application/json")

    assert receipt.provider_message_id == "m-documented-1"
    assert receipt.outcome.status == Status.DELIVERED and not receipt.outcome.unmapped
    assert receipt.to == "+15551234567"
    assert receipt.occurred_at is not None and receipt.occurred_at.isoformat().startswith("2026-11-20T10:00:05")


def test_the_documented_failed_receipt_keeps_its_reason() -> None:
    reasons = [{"code": "MessageExpired", "message": "The message expired before delivery"}]
    body = documented_receipt("Failed", reasons=reasons)
    body.pop("isFinalReceipt")  # the shape is told by its fields, not by this one alone

    [receipt] = CLOUD.read(json.dumps(body).encode(), "application/json")

    assert receipt.outcome.status == Status.EXPIRED and receipt.outcome.retryable
    assert "expired" in receipt.description


def test_a_message_data_is_still_a_message_data() -> None:
    body = {
        "id": "m-md-1",
        "status": "delivery-success",
        "messengerType": "sms",
        "toAddress": "+15551234567",
        "fromAddress": "+15559876543",
        "timestamp": "2026-11-20T10:00:05.000Z",
    }

    receipts = CLOUD.read(json.dumps(body).encode(), "application/json")

    assert [r.provider_message_id for r in receipts] == ["m-md-1"]
    assert receipts[0].outcome.status == Status.DELIVERED


def test_the_message_text_is_not_kept_with_the_receipt() -> None:
    """MessageData carries the text (``textBody``, or ``normalizedMessage`` since SDK 269): not a receipt's."""
    body = {
        "id": "m-md-2",
        "status": "delivery-success",
        "messengerType": "sms",
        "textBody": "Your appointment is at 10:00",
        "normalizedMessage": {"type": "Text", "text": "Your appointment is at 10:00", "direction": "Outbound"},
    }

    [receipt] = CLOUD.read(json.dumps(body).encode(), "application/json")

    assert "appointment" not in json.dumps(receipt.raw)


OPEN_MESSAGING_OUTBOUND = {
    # An outbound open messaging message as the integration's outboundNotificationWebhookUrl receives it
    # (developer.genesys.cloud, open messaging, outbound messages): not a receipt.
    "id": "b2a3c4d5-e6f7-4a8b-9c0d-1e2f3a4b5c6d",
    "channel": {"platform": "Open", "type": "Private", "to": {"id": "+15551234567"}, "time": "2026-11-20T10:00:00Z"},
    "type": "Text",
    "text": "Your appointment is tomorrow at 10:00",
    "direction": "Outbound",
}


@pytest.mark.django_db
def test_an_open_messaging_message_is_answered_200_and_not_stored(client: Any) -> None:
    from receipts.models import ReceiptEvent
    from tests.conftest import post_webhook

    response = post_webhook(client, "genesys_cloud", json.dumps(OPEN_MESSAGING_OUTBOUND))

    assert response.status_code == 200
    assert response.json() == {"accepted": 0, "duplicates": 0, "ignored": 1}
    assert ReceiptEvent.objects.count() == 0


@pytest.mark.django_db
def test_a_message_and_a_receipt_together_store_the_receipt(client: Any) -> None:
    from tests.conftest import post_webhook

    body = [OPEN_MESSAGING_OUTBOUND, documented_receipt("Delivered")]

    response = post_webhook(client, "genesys_cloud", json.dumps(body))

    assert response.status_code == 200 and response.json()["accepted"] == 1
