"""The polling tiers' own bookkeeping on messages: claim the due ones, put off the unpolled, count the polled.

The answers themselves go in as inbox rows (``receipts.actions.ingest.ingest_poll``); a provider that does not
know a message flags it for review (``receipts.actions.review.flag_provider_unknown``).
"""

from __future__ import annotations

import logging
from datetime import datetime

from django.db import transaction
from django.db.models import F

from receipts.db import for_update
from receipts.models import Message
from receipts.schedule import POLLABLE, next_poll

log = logging.getLogger(__name__)

POLL_FIELDS = (
    "id",
    "provider",
    "provider_message_id",
    "conversation_id",
    "channel",
    "status",
    "priority",
    "poll_count",
    "created_at",
    "sent_at",
    "next_poll_at",
)


def claim_due(now: datetime, limit: int, ids: list[int] | None = None) -> list[Message]:
    """Take up to ``limit`` due messages and move their ``next_poll_at`` on, in one transaction."""
    with transaction.atomic():
        due = Message.objects.due_for_poll(now).filter(provider__in=POLLABLE)
        if ids is not None:
            due = due.filter(pk__in=ids)
        due = for_update(due.order_by("next_poll_at", "id").only(*POLL_FIELDS), skip_locked=True, of_self=True)
        messages = list(due[:limit])
        for message in messages:
            message.next_poll_at = next_poll(message, now)
        if messages:
            Message.objects.bulk_update(messages, ["next_poll_at"])
    return messages


def clear_unpollable(ids: list[int]) -> int:
    """An operator asked to poll messages of a provider without a status API: nothing will poll them."""
    unpollable = Message.objects.filter(pk__in=ids).exclude(provider__in=POLLABLE).exclude(next_poll_at=None)
    cleared = unpollable.update(next_poll_at=None)
    if cleared:
        log.info("%d message(s) of a provider without a status API cannot be polled", cleared)
    return cleared


def postpone(ids: list[int], until: datetime) -> None:
    """Claimed but not polled (circuit open, budget spent, provider down): due again at ``until``."""
    for start in range(0, len(ids), 500):
        Message.objects.filter(pk__in=ids[start : start + 500]).update(next_poll_at=until)


def poll_soon(ids: list[int], now: datetime) -> None:
    """Hand messages to the per-message tier, due now: failures whose reason the bulk tier had no budget left to
    look up this round. That tier polls them within the shared rate budget, details and reasons included."""
    postpone(ids, now)


def mark_polled(ids: list[int], now: datetime) -> None:
    for start in range(0, len(ids), 500):
        chunk = ids[start : start + 500]
        Message.objects.filter(pk__in=chunk).update(poll_count=F("poll_count") + 1, last_polled_at=now)
