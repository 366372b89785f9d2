"""Processed raw bodies go after INBOX_RETENTION_DAYS, in batches; their receipts stay on the timelines, and the
rows operators still need (rejected, dead, unmatched, waiting) stay whatever their age."""

from __future__ import annotations

import json
from datetime import timedelta
from typing import Any

import pytest
from django.test import Client
from django.utils import timezone

from receipts.actions import ingest
from receipts.models import InboxState, MessageEvent, ReceiptEvent
from tests.conftest import drain, post_webhook, register

pytestmark = pytest.mark.django_db


def delivered(client: Client, message_id: str) -> None:
    body = {"id": message_id, "status": "delivered", "timestamp": "2026-11-20T10:00:00Z"}
    assert post_webhook(client, "generic", json.dumps(body)).status_code == 200


def test_old_processed_rows_go_in_batches_and_the_timeline_keeps_their_receipts(client: Client, settings: Any) -> None:
    settings.INBOX_RETENTION_DAYS = 30
    for i in range(5):
        register(provider="generic", provider_message_id=f"old-{i}")
        delivered(client, f"old-{i}")
    register(provider="generic", provider_message_id="new-1")
    delivered(client, "new-1")
    drain()
    assert post_webhook(client, "generic", "not json").status_code == 400  # a rejected row, kept for operators
    long_ago = timezone.now() - timedelta(days=31)
    ReceiptEvent.objects.exclude(body__contains="new-1").update(received_at=long_ago)

    deleted = ingest.prune_inbox(chunk=2)

    assert deleted == 5
    assert list(ReceiptEvent.objects.values_list("state", flat=True).order_by("state")) == [
        InboxState.PROCESSED,
        InboxState.REJECTED,
    ]
    assert MessageEvent.objects.count() == 6  # every receipt still on its message's timeline
    assert MessageEvent.objects.filter(receipt_event=None).count() == 5


def test_zero_keeps_everything(client: Client, settings: Any) -> None:
    settings.INBOX_RETENTION_DAYS = 0
    register(provider="generic", provider_message_id="keep-1")
    delivered(client, "keep-1")
    drain()
    ReceiptEvent.objects.update(received_at=timezone.now() - timedelta(days=3650))

    assert ingest.prune_inbox() == 0
    assert ReceiptEvent.objects.count() == 1
