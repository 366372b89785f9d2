"""Critical messages not delivered in time: raise an escalation, once, so that a fallback (a call) can happen.

A critical message (``priority=critical``) not delivered ``FALLBACK_AFTER`` (default 10 minutes) after it was
registered raises one ``Escalation``: shown in the admin, and announced to the CRM as its own ``escalation``
event, in the same transaction. A retry counts as the same message: a chain whose replacement was delivered in
time is not escalated, and the escalation is raised on the first message of the chain, once.
"""

from __future__ import annotations

import logging
from datetime import datetime
from typing import Any

from django.conf import settings
from django.db import connection, transaction
from django.db.models import Exists, OuterRef, Q, QuerySet
from django.utils import timezone

from receipts.events import DomainEvent, Kind, message_state, publish
from receipts.models import Escalation, Message, Priority, Retry
from receipts.status import Status

log = logging.getLogger(__name__)

BATCH = 500
FALLBACK = "call"  # what the CRM is asked to do instead


def overdue(now: datetime) -> QuerySet[Message]:
    delivered = Q(status=Status.DELIVERED, assumed=False)
    replacement_delivered = Retry.objects.filter(
        root=OuterRef("pk"), new_message__status=Status.DELIVERED, new_message__assumed=False
    )
    return (
        Message.objects.filter(
            priority=Priority.CRITICAL,
            replaces=None,
            created_at__lte=now - settings.FALLBACK_AFTER,
            # Messages older than this when first seen (the sweep was off) are history, not an emergency.
            created_at__gt=now - settings.FALLBACK_AFTER - settings.ESCALATION_LOOKBACK,
        )
        .exclude(delivered)
        .exclude(Exists(Escalation.objects.filter(message=OuterRef("pk"))))
        .exclude(Exists(replacement_delivered))
    )


def raise_escalations(now: datetime | None = None, limit: int = BATCH) -> int:
    """Raise the escalations that are due. Returns how many; call until 0."""
    now = now or timezone.now()
    with transaction.atomic():
        candidates = overdue(now).select_related("campaign").order_by("created_at", "id")
        if connection.features.has_select_for_update_skip_locked:
            candidates = candidates.select_for_update(skip_locked=True, of=("self",))
        messages = list(candidates[:limit])
        if not messages:
            return 0
        latest = latest_in_chain([m.pk for m in messages])
        raised, events = [], []
        for message in messages:
            deadline = message.created_at + settings.FALLBACK_AFTER
            last = latest.get(message.pk)
            escalation = Escalation(
                message=message,
                raised_at=now,
                deadline=deadline,
                status=message.status,
                failure_category=message.failure_category,
                reason=describe(message, last),
            )
            raised.append(escalation)
        Escalation.objects.bulk_create(raised)
        for escalation in raised:
            message = escalation.message
            last = latest.get(message.pk)
            payload: dict[str, Any] = {
                **message_state(message),
                "escalation_id": escalation.pk,
                "reason": "not_delivered_in_time",
                "description": escalation.reason,
                "priority": message.priority,
                "deadline": escalation.deadline.isoformat(),
                "fallback": FALLBACK,
                "latest_message_id": last.pk if last else message.pk,
                "latest_status": last.status if last else message.status,
            }
            events.append(DomainEvent(Kind.ESCALATION, now, payload, message.pk, message.crm_record_id))
        publish(events)
    for escalation in raised:
        log.warning("escalation %s: message %s %s", escalation.pk, escalation.message_id, escalation.reason)
    return len(raised)


def latest_in_chain(root_ids: list[int]) -> dict[int, Message]:
    """The latest replacement (retry) of each root message, if any."""
    retries = Retry.objects.filter(root_id__in=root_ids, new_message__isnull=False).select_related("new_message")
    latest: dict[int, Message] = {}
    for retry in retries.order_by("number", "id"):
        assert retry.new_message is not None
        latest[retry.root_id] = retry.new_message
    return latest


def describe(message: Message, last: Message | None) -> str:
    status = message.status + (f" ({message.failure_category})" if message.failure_category else "")
    text = f"not delivered within {settings.FALLBACK_AFTER}: status {status}"
    if last is not None:
        text += f"; its retry (message {last.pk}) is {last.status}"
    return text


def acknowledge(ids: list[int], user: Any = None, note: str = "", now: datetime | None = None) -> int:
    """An operator took over (called the customer, or decided not to). Returns how many were acknowledged."""
    return Escalation.objects.filter(pk__in=ids, acknowledged_at=None).update(
        acknowledged_at=now or timezone.now(), acknowledged_by=user, note=note
    )
