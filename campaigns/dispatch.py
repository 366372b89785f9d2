"""Sending: a planned ``Send`` is claimed once, checked against the suppression list, sent through its provider's
sender, and registered for tracking with the provider's id, so that its receipts find it.

No message is sent twice: a row is claimed with ``SKIP LOCKED`` and marked ``sending`` in its own transaction
before anything leaves. A provider error that says nothing left (refused, unreachable before the request) marks it
``failed``; one that leaves the outcome open (a timeout once the request was out, a worker killed between the
provider's answer and the registration) leaves it ``unknown``, for an operator, never sent again on its own.
None is lost: ``unknown`` rows are counted and listed in the admin, and a ``sending`` row whose worker died is
found by ``reconcile_stuck``.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from django.conf import settings
from django.db import IntegrityError, transaction
from django.utils import timezone

from campaigns.models import Send
from receipts.actions import suppression
from receipts.actions.messages import register_message
from receipts.addresses import normalize_address
from receipts.db import for_update
from receipts.logging import mask
from receipts.models import Message
from receipts.providers.base import SendError
from receipts.providers.senders import sender_for

log = logging.getLogger(__name__)


class IdempotencyConflict(Exception):
    """The key was used for a different send."""


PLANNED_FIELDS = ("channel", "provider", "to", "content", "crm_record_id", "priority", "metadata")
DEFAULTS: dict[str, Any] = {"content": {}, "crm_record_id": "", "priority": "normal", "metadata": {}}


def plan(data: dict[str, Any], idempotency_key: str | None) -> tuple[Send, bool]:
    """A planned send, or the one this key planned already (False). Raises IdempotencyConflict when the key was
    used for another message, ValueError for an address that does not normalise."""
    given = {**data, "to": normalize_address(data["channel"], data["to"])}
    fields = {name: given.get(name, DEFAULTS.get(name)) for name in PLANNED_FIELDS}
    if idempotency_key is not None:
        existing = Send.objects.filter(idempotency_key=idempotency_key).first()
        if existing is not None:
            return same_or_conflict(existing, fields), False
    try:
        with transaction.atomic():
            return Send.objects.create(idempotency_key=idempotency_key, **fields), True
    except IntegrityError:  # the same key, planned by a concurrent request
        return same_or_conflict(Send.objects.get(idempotency_key=idempotency_key), fields), False


def same_or_conflict(existing: Send, fields: dict[str, Any]) -> Send:
    if any(getattr(existing, name) != value for name, value in fields.items()):
        raise IdempotencyConflict("this Idempotency-Key was used for a different message")
    return existing


@dataclass
class Dispatched:
    sent: int = 0
    suppressed: int = 0
    failed: int = 0
    unknown: int = 0


def dispatch(limit: int = 50, now: datetime | None = None) -> Dispatched:
    """Claim up to ``limit`` planned sends and send them. Safe in many workers at once."""
    now = now or timezone.now()
    with transaction.atomic():
        claimed = list(
            for_update(Send.objects.filter(state=Send.State.PLANNED).order_by("id"), skip_locked=True)[:limit]
        )
        Send.objects.filter(pk__in=[s.pk for s in claimed]).update(state=Send.State.SENDING, claimed_at=now, attempts=1)
    done = Dispatched()
    for send in claimed:
        outcome = send_one(send, now)
        setattr(done, outcome, getattr(done, outcome) + 1)
    if claimed:
        log.info(
            "dispatch: %d sent, %d suppressed, %d failed, %d unknown",
            done.sent,
            done.suppressed,
            done.failed,
            done.unknown,
        )
    return done


def send_one(send: Send, now: datetime) -> str:
    reasons = suppression.is_suppressed(send.channel, send.to, now)
    if reasons:
        finish(send, Send.State.SUPPRESSED, error=f"suppressed: {', '.join(reasons)}")
        return "suppressed"
    sender = sender_for(send.provider)
    if sender is None:
        finish(send, Send.State.FAILED, error=f"no sender is configured for {send.provider}")
        return "failed"
    outgoing = Message(
        channel=send.channel,
        provider=send.provider,
        to=send.to,
        content=send.content,
        priority=send.priority,
        crm_record_id=send.crm_record_id,
        metadata=send.metadata,
    )
    try:
        provider_message_id = sender.send(outgoing)
    except SendError as exc:
        # Unreachable or refused before anything was accepted: failed. A transient error may have come after the
        # provider took the message: unknown, for a person to check, never sent again on its own.
        state = Send.State.UNKNOWN if exc.transient else Send.State.FAILED
        finish(send, state, error=mask(str(exc)))
        return "unknown" if exc.transient else "failed"
    Send.objects.filter(pk=send.pk).update(provider_message_id=provider_message_id[:255])
    track(send, provider_message_id, now)
    return "sent"


def track(send: Send, provider_message_id: str, sent_at: datetime | None) -> None:
    """Register the sent message for tracking (its receipts find it by the provider's id) and mark it sent."""
    message, _ = register_message(
        {
            "channel": send.channel,
            "provider": send.provider,
            "provider_message_id": provider_message_id,
            "to": send.to,
            "crm_record_id": send.crm_record_id,
            "campaign": send.campaign.name if send.campaign is not None else "",
            "priority": send.priority,
            "metadata": send.metadata,
            "content": send.content,
            "sent_at": sent_at,
        }
    )
    finish(send, Send.State.SENT, message_id=message.pk, sent_at=sent_at)


def finish(send: Send, state: str, **fields: Any) -> None:
    Send.objects.filter(pk=send.pk, state=Send.State.SENDING).update(state=state, **fields)


def reconcile_stuck(now: datetime | None = None) -> int:
    """``sending`` rows claimed longer than SEND_CLAIM_TIMEOUT ago: their worker died between the claim and the
    end. With a provider id they were sent (registered now); without one, they may have been: ``unknown``."""
    now = now or timezone.now()
    stale = Send.objects.filter(
        state=Send.State.SENDING, claimed_at__lt=now - timedelta(seconds=settings.SEND_CLAIM_TIMEOUT)
    )
    count = 0
    for send in stale.order_by("id")[:500]:
        if send.provider_message_id:
            track(send, send.provider_message_id, send.claimed_at)
        else:
            finish(send, Send.State.UNKNOWN, error="the worker stopped while sending: check before sending again")
        count += 1
    return count
