"""Critical messages not delivered in time: raise an escalation, once, so that a fallback (a call) can happen.

A critical message (``priority=critical``) not delivered ``FALLBACK_AFTER`` (default 10 minutes) after it was
registered raises one ``Escalation``: shown in the admin, and announced to the CRM as its own ``escalation``
event, in the same transaction. A retry counts as the same message: a chain whose replacement was delivered in
time is not escalated, and the escalation is raised on the first message of the chain, once.

A chain that has failed for good before the deadline escalates at once: its latest message failed, was
rejected, expired or bounced, and no retry of it is scheduled or being sent. Waiting out ``FALLBACK_AFTER``
would only delay the call.
"""

from __future__ import annotations

import logging
from datetime import datetime
from typing import Any

from django.conf import settings
from django.db import transaction
from django.db.models import Exists, OuterRef, Q, QuerySet
from django.utils import timezone

from receipts.db import for_update
from receipts.events import DomainEvent, Kind, message_state, publish
from receipts.models import Escalation, Message, Priority, Retry
from receipts.status import FINAL_STATUSES, Status

log = logging.getLogger(__name__)

BATCH = 500
FALLBACK = "call"  # what the CRM is asked to do instead


FAILED_FOR_GOOD = frozenset(FINAL_STATUSES - {Status.DELIVERED})
RETRY_PENDING = (Retry.State.SCHEDULED, Retry.State.SENDING)


def unescalated_roots(now: datetime) -> QuerySet[Message]:
    """Critical messages the CRM asked for (not retries), not escalated yet, recent enough to matter."""
    return Message.objects.filter(
        priority=Priority.CRITICAL,
        replaces=None,
        # Messages older than this when first seen (the sweep was off) are history, not an emergency.
        created_at__gt=now - settings.FALLBACK_AFTER - settings.ESCALATION_LOOKBACK,
    ).exclude(Exists(Escalation.objects.filter(message=OuterRef("pk"))))


def overdue(now: datetime) -> QuerySet[Message]:
    delivered = Q(status=Status.DELIVERED, assumed=False)
    replacement_delivered = Retry.objects.filter(
        root=OuterRef("pk"), new_message__status=Status.DELIVERED, new_message__assumed=False
    )
    return (
        unescalated_roots(now)
        .filter(created_at__lte=now - settings.FALLBACK_AFTER)
        .exclude(delivered)
        .exclude(Exists(replacement_delivered))
    )


def failed_for_good(now: datetime) -> list[int]:
    """Roots still inside ``FALLBACK_AFTER`` whose chain can no longer deliver: the latest message is a failure
    and no retry of it is pending. Three queries for any number."""
    chain_failed = Retry.objects.filter(root=OuterRef("pk"), new_message__status__in=FAILED_FOR_GOOD)
    roots = list(
        unescalated_roots(now)
        .filter(created_at__gt=now - settings.FALLBACK_AFTER)
        .filter(Q(status__in=FAILED_FOR_GOOD) | Exists(chain_failed))
        .only("id", "status")
    )
    if not roots:
        return []
    latest = latest_in_chain([m.pk for m in roots])
    last = {root.pk: latest.get(root.pk, root) for root in roots}
    pending = set(
        Retry.objects.filter(message_id__in=[m.pk for m in last.values()], state__in=RETRY_PENDING).values_list(
            "message_id", flat=True
        )
    )
    return [pk for pk, m in last.items() if m.status in FAILED_FOR_GOOD and m.pk not in pending]


def raise_escalations(now: datetime | None = None, limit: int = BATCH) -> int:
    """Raise the escalations that are due. Returns how many; call until 0."""
    now = now or timezone.now()
    with transaction.atomic():
        due = Q(pk__in=overdue(now).values("pk")) | Q(pk__in=failed_for_good(now))
        candidates = unescalated_roots(now).filter(due).select_related("campaign").order_by("created_at", "id")
        messages = list(for_update(candidates, skip_locked=True, of_self=True)[:limit])
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
                reason=describe(message, last, early=now < deadline),
            )
            raised.append(escalation)
        Escalation.objects.bulk_create(raised)
        for escalation in raised:
            message = escalation.message
            last = latest.get(message.pk)
            payload: dict[str, Any] = {
                **message_state(message),
                "escalation_id": escalation.pk,
                "reason": "failed_before_deadline" if now < escalation.deadline else "not_delivered_in_time",
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


def describe(message: Message, last: Message | None, early: bool = False) -> str:
    status = message.status + (f" ({message.failure_category})" if message.failure_category else "")
    if early:
        text = f"failed for good before the {settings.FALLBACK_AFTER} deadline, no retry pending: status {status}"
    else:
        text = f"not delivered within {settings.FALLBACK_AFTER}: status {status}"
    if last is not None:
        text += f"; its retry (message {last.pk}) is {last.status}"
    return text


def acknowledge(ids: list[int], user: Any = None, note: str = "", now: datetime | None = None) -> int:
    """An operator took over (called the customer, or decided not to). Returns how many were acknowledged."""
    return Escalation.objects.filter(pk__in=ids, acknowledged_at=None).update(
        acknowledged_at=now or timezone.now(), acknowledged_by=user, note=note
    )


def record_fallback(escalation_id: int, text: str) -> int:
    """Say on the escalation what was done for it on its own (a fallback planned on another channel), so that the
    operator who sees it knows before calling. Kept apart from the operator's ``note``, which acknowledging sets."""
    return Escalation.objects.filter(pk=escalation_id).update(fallback=text[:500])
