"""Deliveries nobody can be sure of: the receipt timeout, and operators settling what needs review.

Every settlement keeps who, when, how and why (``ReviewResolution``), goes on the message's timeline (source
``operator``) and is announced to the CRM outbox (``review_resolved``, plus ``status_changed`` when the status
moved), in the transaction that made it.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, replace
from datetime import datetime
from typing import Any

from django.conf import settings
from django.db import transaction
from django.db.models import QuerySet
from django.utils import timezone

from receipts import machine
from receipts.actions.transitions import state_of, status_changed, timeline_key, write
from receipts.db import for_update, update_rows
from receipts.events import DomainEvent, Kind, message_state, publish
from receipts.kicks import request_poll
from receipts.models import NOT_FINAL, Message, MessageEvent, ReviewResolution
from receipts.status import FINAL_STATUSES, FailureCategory, ReviewReason, Source, Status

log = logging.getLogger(__name__)

Action = ReviewResolution.Action
TIMEOUT_BATCH = 500


def locked(queryset: QuerySet[Message]) -> QuerySet[Message]:
    return for_update(queryset.select_related("campaign").order_by("id"), skip_locked=True, of_self=True)


def poll_entry(
    message: Message, code: str, description: str, now: datetime, source: str = Source.POLL, **fields: Any
) -> MessageEvent:
    """A timeline entry of our own making (no provider receipt behind it): the polling side's, or the receipt
    timeout's."""
    return MessageEvent(
        message=message,
        source=source,
        receipt_key=timeline_key(code, message.pk, now.isoformat()),
        provider_code=code,
        description=description,
        occurred_at=now,
        received_at=now,
        **fields,
    )


# --- the receipt timeout ----------------------------------------------------------------------------------


def expire_receipts(now: datetime | None = None, limit: int = TIMEOUT_BATCH) -> int:
    """Messages with no final receipt ``RECEIPT_TIMEOUT`` after sent (or after registration, when no receipt
    came at all) become delivered, ``assumed``, flagged ``no_receipt``. Returns how many; call until 0."""
    now = now or timezone.now()
    cutoff = now - settings.RECEIPT_TIMEOUT
    in_flight = Message.objects.filter(NOT_FINAL).select_related("campaign")
    # Two ranges of the in-flight index (sent_at, created_at), each read in the index's own order: that partial
    # index is then the only cheap plan. Ordered by id, the planner walked the primary key from the start,
    # expecting overdue rows spread evenly; after a big campaign they all sit at its end, millions of settled rows
    # later (issue 23, item 3).
    sent = in_flight.filter(sent_at__lt=cutoff).order_by("sent_at", "created_at")
    never_sent = in_flight.filter(sent_at=None, created_at__lt=cutoff).order_by("created_at")
    with transaction.atomic():
        messages = list(for_update(sent, skip_locked=True, of_self=True)[:limit])
        if len(messages) < limit:
            messages += for_update(never_sent, skip_locked=True, of_self=True)[: limit - len(messages)]
        if not messages:
            return 0
        timeline, changes = [], []
        for message in messages:
            previous = message.status
            write(message, replace(machine.assume_delivered(state_of(message)).state, status_at=now))
            message.needs_review, message.review_reason = True, ReviewReason.NO_RECEIPT
            message.next_poll_at, message.updated_at = None, now
            description = f"no final receipt within {settings.RECEIPT_TIMEOUT}; delivery assumed"
            timeline.append(
                poll_entry(
                    message,
                    "receipt_timeout",
                    description,
                    now,
                    source=Source.TIMEOUT,
                    status=Status.DELIVERED,
                    applied=True,
                )
            )
            changes.append(status_changed(message, previous, "timeout", now))
        fields = ["status", "assumed", "status_at", "failure_category", "retryable", "needs_review"]
        update_rows(messages, [*fields, "review_reason", "next_poll_at", "updated_at"])
        MessageEvent.objects.bulk_create(timeline)
        publish(changes)
    log.info(
        "%d message(s) assumed delivered after %s without a final receipt", len(messages), settings.RECEIPT_TIMEOUT
    )
    return len(messages)


# --- the provider does not know the message -------------------------------------------------------------


def flag_provider_unknown(message_ids: list[int], now: datetime, detail: str) -> int:
    """Flag ``provider_unknown`` on messages the provider says it has never heard of (Genesys Cloud answering 404
    for their id once ``POLL_NOT_FOUND_GRACE`` has passed since they were sent). Their status stays; a message
    already waiting for review, or final, is left alone. Returns how many were flagged."""
    candidates = Message.objects.filter(pk__in=message_ids, needs_review=False).exclude(status__in=FINAL_STATUSES)
    with transaction.atomic():
        messages = list(locked(candidates))
        if not messages:
            return 0
        timeline, changes = [], []
        for message in messages:
            message.needs_review, message.review_reason, message.updated_at = True, ReviewReason.PROVIDER_UNKNOWN, now
            timeline.append(poll_entry(message, "not_found", detail, now))
            changes.append(status_changed(message, message.status, "poll", now))
        update_rows(messages, ["needs_review", "review_reason", "updated_at"])
        MessageEvent.objects.bulk_create(timeline)
        publish(changes)
    log.warning("%d message(s) unknown to the provider flagged for review (%s)", len(messages), detail)
    return len(messages)


# --- operators settle reviews ---------------------------------------------------------------------------


@dataclass(frozen=True)
class Settlement:
    action: str
    note: str = ""
    category: str = ""


def validate(settlement: Settlement) -> None:
    if settlement.action not in Action.values:
        raise ValueError(f"unknown review action {settlement.action!r}")
    if settlement.action == Action.MARK_FAILED and settlement.category not in FailureCategory.values:
        raise ValueError("marking failed needs a failure category")
    if settlement.action == Action.RESOLVE and not settlement.note.strip():
        raise ValueError("resolving needs a note saying why")


def settle(message_ids: list[int], settlement: Settlement, user: Any = None) -> int:
    """Apply one operator decision to several messages. Returns how many were settled."""
    validate(settlement)
    now = timezone.now()
    done = 0
    with transaction.atomic():
        queryset = for_update(
            Message.objects.filter(pk__in=message_ids).select_related("campaign").order_by("id"), of_self=True
        )
        changes: list[DomainEvent] = []
        for message in queryset:
            changes += settle_one(message, settlement, user, now)
            done += 1
        publish(changes)
    if settlement.action == Action.POLL_AGAIN and done:
        transaction.on_commit(lambda: request_poll(message_ids))
    return done


def settle_one(message: Message, settlement: Settlement, user: Any, now: datetime) -> list[DomainEvent]:
    previous, reason = message.status, message.review_reason
    resolution = ReviewResolution.objects.create(
        message=message,
        action=settlement.action,
        review_reason=reason,
        failure_category=settlement.category,
        note=settlement.note,
        user=user if getattr(user, "pk", None) else None,
        created_at=now,
    )
    if settlement.action == Action.CONFIRM_DELIVERED:
        write(message, machine.decided(state_of(message), Status.DELIVERED, "", now))
    elif settlement.action == Action.MARK_FAILED:
        write(message, machine.decided(state_of(message), Status.FAILED, settlement.category, now))
    if settlement.action == Action.POLL_AGAIN:
        message.next_poll_at = now  # stays under review until a receipt or an operator settles it
    else:
        message.needs_review, message.review_reason, message.next_poll_at = False, "", None
    message.updated_at = now
    message.save()

    who = getattr(user, "get_username", lambda: "system")()
    MessageEvent.objects.create(
        message=message,
        source=Source.OPERATOR,
        receipt_key=timeline_key("review", resolution.pk),
        provider_code=f"operator:{settlement.action}",
        status=message.status if message.status != previous else "",
        failure_category=settlement.category,
        applied=message.status != previous,
        description=f"{resolution.get_action_display()} by {who}" + (f": {settlement.note}" if settlement.note else ""),
        details={"review_reason": reason, "user": who, "resolution_id": resolution.pk},
        occurred_at=now,
        received_at=now,
    )
    log.info("message %s review %s by %s (was %s)", message.pk, settlement.action, who, reason or "-")
    events = [
        DomainEvent(
            Kind.REVIEW_RESOLVED,
            occurred_at=now,
            payload={
                **message_state(message),
                "action": settlement.action,
                "review_reason": reason,
                "failure_category": message.failure_category,
                "note": settlement.note,
                "user": who,
            },
            message_id=message.pk,
            crm_record_id=message.crm_record_id,
        )
    ]
    if message.status != previous:
        events.append(status_changed(message, previous, "operator", now))
    return events
