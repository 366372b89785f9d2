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
import time
import uuid
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from django.conf import settings
from django.db import IntegrityError, transaction
from django.db.models import F, Q, QuerySet
from django.utils import timezone

from campaigns import lifecycle, throttle
from campaigns.models import PRIORITY_RANK, Campaign, Send
from receipts.actions import suppression
from receipts.actions.messages import register_message
from receipts.addresses import normalize_address
from receipts.db import for_update
from receipts.logging import mask
from receipts.models import Message
from receipts.providers.base import SendError
from receipts.providers.limits import CircuitOpenError, RateLimitWait
from receipts.providers.registry import capabilities
from receipts.providers.senders import sender_for

log = logging.getLogger(__name__)


class IdempotencyConflict(Exception):
    """The key was used for a different send."""


PLANNED_FIELDS = ("channel", "provider", "to", "content", "crm_record_id", "priority", "metadata")
DEFAULTS: dict[str, Any] = {"content": {}, "crm_record_id": "", "priority": "normal", "metadata": {}}


def plan(data: dict[str, Any], idempotency_key: str | None, client: int | None = None) -> tuple[Send, bool]:
    """A planned send, or the one this key planned already (False). A key is its API client's own: another
    client's send under the same key is neither found nor named. Raises IdempotencyConflict when the key was used
    for another message, ValueError for an address that does not normalise."""
    given = {**data, "to": normalize_address(data["channel"], data["to"])}
    fields = {name: given.get(name, DEFAULTS.get(name)) for name in PLANNED_FIELDS}
    fields["rank"] = PRIORITY_RANK.get(str(fields["priority"]), 2)
    mine = Send.objects.filter(client=client) if client is not None else Send.objects.filter(client__isnull=True)
    if idempotency_key is not None:
        existing = mine.filter(idempotency_key=idempotency_key).first()
        if existing is not None:
            return same_or_conflict(existing, fields), False
    try:
        with transaction.atomic():
            return Send.objects.create(idempotency_key=idempotency_key, client=client, **fields), True
    except IntegrityError:  # the same key, planned by a concurrent request of the same client
        return same_or_conflict(mine.get(idempotency_key=idempotency_key), fields), False


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
    retried: int = 0  # not taken (connection refused, 503, 429): planned again after a wait
    held: int = 0  # given back unsent: no token in time or the provider's breaker open
    deferred: int = 0  # given back unsent until the contact's quiet hours end
    stopped: int = 0  # its campaign was paused (given back) or cancelled (cancelled) while the batch was out

    @property
    def claimed(self) -> int:
        return (
            self.sent
            + self.suppressed
            + self.failed
            + self.unknown
            + self.retried
            + self.held
            + self.deferred
            + self.stopped
        )


def idempotent(provider: str) -> bool:
    """The provider takes our own message id and answers a repeat with the first answer: sending again is safe."""
    return capabilities(provider).idempotent_resend


def dispatch(
    limit: int | None = None,
    provider: str | None = None,
    now: datetime | None = None,
    max_wait: float | None = None,
    deadline: float | None = None,
) -> Dispatched:
    """Claim up to ``limit`` planned sends (critical first) and send them within the providers' limits. Safe in
    many workers at once. Answers what became of them. Past ``deadline`` (``time.monotonic()``) no send starts:
    the rest of the batch goes back to the queue."""
    fixed_now, now = now, now or timezone.now()
    limit = limit or settings.SEND_BATCH
    max_wait = settings.SEND_MAX_WAIT if max_wait is None else max_wait
    queue = due(now, provider)
    with transaction.atomic():
        claimed = list(for_update(queue.order_by("rank", "id"), skip_locked=True)[:limit])
        Send.objects.filter(pk__in=[s.pk for s in claimed]).update(state=Send.State.CLAIMED, claimed_at=now)
    campaigns = Campaign.objects.in_bulk({s.campaign_id for s in claimed if s.campaign_id})
    done = Dispatched()
    failing: set[int] = set()
    for index, send in enumerate(claimed):
        if deadline is not None and time.monotonic() > deadline:
            done.held += give_back(claimed[index:])
            break
        campaign = campaigns.get(send.campaign_id) if send.campaign_id else None
        if campaign is not None:
            send.campaign = campaign  # read once for the batch, not once a send
            # Its state, though, before every send: a pause or a cancel stops the batch at the next send, not
            # after the SEND_BATCH sends a worker holds (20 s of sending at one a second).
            if stopped(send, campaign, fixed_now or timezone.now()):
                done.stopped += 1
                continue
        # Each send at its own time (a slow provider's batch takes seconds), unless the caller fixed the time.
        outcome = send_one(send, campaign, max_wait, fixed_now or timezone.now())
        setattr(done, outcome, getattr(done, outcome) + 1)
        if campaign is not None and outcome in ("failed", "unknown", "retried"):
            failing.add(campaign.pk)
        if outcome == "held":
            done.held += give_back(claimed[index + 1 :])  # the provider is not taking more now
            break
    for campaign_id in failing:
        lifecycle.trip_if_failing(campaign_id)
    if done.claimed:
        log.info(
            "dispatch: %d sent, %d suppressed, %d failed, %d unknown, %d retried, %d held, %d deferred, %d stopped",
            done.sent,
            done.suppressed,
            done.failed,
            done.unknown,
            done.retried,
            done.held,
            done.deferred,
            done.stopped,
        )
    return done


def stopped(send: Send, campaign: Campaign, now: datetime) -> bool:
    """True when the campaign no longer runs: the send goes back to the queue (paused) or is cancelled with the
    rest of its campaign (cancelled; ``lifecycle.cancel`` leaves what a worker holds to the worker)."""
    state = Campaign.objects.filter(pk=campaign.pk).values_list("state", flat=True).first()
    if state == Campaign.State.RUNNING:
        return False
    if state == Campaign.State.CANCELLED:
        finish(send, Send.State.CANCELLED, finished_at=now)
    else:
        give_back([send])
    return True


def due(now: datetime, provider: str | None = None) -> QuerySet[Send]:
    """The planned sends that may leave now: single sends, and those of running campaigns whose time has come."""
    running = list(Campaign.objects.filter(state=Campaign.State.RUNNING).values_list("pk", flat=True))
    queue = Send.objects.filter(
        Q(campaign__isnull=True) | Q(campaign_id__in=running),
        Q(not_before__isnull=True) | Q(not_before__lte=now),
        state=Send.State.PLANNED,
    )
    return queue.filter(provider=provider) if provider else queue


def give_back(
    sends: list[Send], not_before: datetime | None = None, held: str = Send.State.CLAIMED, **fields: Any
) -> int:
    """Sends back to the queue, from the state this worker ``held`` them in (``claimed``: nothing was sent;
    ``sending``: nothing was taken, or the provider takes our id once)."""
    return Send.objects.filter(pk__in=[s.pk for s in sends], state=held).update(
        state=Send.State.PLANNED, claimed_at=None, not_before=not_before, **fields
    )


def send_one(send: Send, campaign: Campaign | None, max_wait: float, now: datetime) -> str:
    if campaign is not None and campaign.quiet_start is not None:
        zone = send.time_zone or campaign.time_zone
        allowed = lifecycle.next_allowed(now, zone, campaign.quiet_start, campaign.quiet_end)
        if allowed > now:
            give_back([send], not_before=allowed)
            return "deferred"
    reasons = suppression.is_suppressed(send.channel, send.to, now)
    if reasons:
        finish(send, Send.State.SUPPRESSED, error=f"suppressed: {', '.join(reasons)}", finished_at=now)
        return "suppressed"
    sender = sender_for(send.provider)
    if sender is None:
        finish(send, Send.State.FAILED, error=f"no sender is configured for {send.provider}", finished_at=now)
        return "failed"
    gate = throttle.gate(send.provider, (send.content or {}).get("from", ""))
    try:
        gate.enter(max_wait)
    except RateLimitWait:
        give_back([send])
        return "held"
    except CircuitOpenError as exc:
        give_back([send], not_before=now + timedelta(seconds=exc.retry_in))
        return "held"
    # Our own id, where the provider takes one, is kept before the request: a repeat sends it again harmlessly.
    own_id = send.provider_message_id or (str(uuid.uuid4()) if idempotent(send.provider) else "")
    Send.objects.filter(pk=send.pk, state=Send.State.CLAIMED).update(
        state=Send.State.SENDING, attempts=F("attempts") + 1, provider_message_id=own_id
    )
    send.attempts += 1
    outgoing = Message(
        channel=send.channel,
        provider=send.provider,
        provider_message_id=own_id,
        correlation_id=correlation_of(send),
        to=send.to,
        content=send.content,
        priority=send.priority,
        crm_record_id=send.crm_record_id,
        metadata=send.metadata,
    )
    try:
        provider_message_id = sender.send(outgoing)
    except SendError as exc:
        if exc.held:  # the sender's own limits: nothing left; back to the queue, the batch stops
            wait = timedelta(seconds=exc.retry_after or 0.0)
            give_back([send], now + wait, held=Send.State.SENDING, attempts=F("attempts") - 1)
            return "held"
        gate.record(success=not exc.transient or exc.throttled)  # a 4xx or a 429 is the provider answering
        if exc.throttled:
            gate.pause(exc.retry_after if exc.retry_after is not None else 1.0)
        elif send.campaign_id:
            throttle.count_attempt(send.campaign_id, failed=True)
        return failed_attempt(send, exc, now)
    gate.record(success=True)
    if send.campaign_id:
        throttle.count_attempt(send.campaign_id, failed=False)
    Send.objects.filter(pk=send.pk).update(provider_message_id=provider_message_id[:255])
    track(send, provider_message_id, now)
    return "sent"


def failed_attempt(send: Send, exc: SendError, now: datetime) -> str:
    """Refused: failed. Not taken, or maybe taken by a provider that dedupes our id: planned again after a wait,
    up to SEND_MAX_ATTEMPTS. Maybe taken by one that does not: unknown, for a person; never sent again on its own."""
    error = mask(str(exc))[:1000]
    if not exc.transient:
        finish(send, Send.State.FAILED, error=error, finished_at=now)
        return "failed"
    if exc.may_have_sent and not idempotent(send.provider):
        finish(send, Send.State.UNKNOWN, error=error, finished_at=now)
        return "unknown"
    if send.attempts >= settings.SEND_MAX_ATTEMPTS and not exc.throttled:
        finish(send, Send.State.FAILED, error=f"gave up after {send.attempts} attempts: {error}", finished_at=now)
        return "failed"
    wait = exc.retry_after if exc.retry_after is not None else settings.SEND_RETRY_DELAY * 2 ** (send.attempts - 1)
    give_back([send], now + timedelta(seconds=wait), held=Send.State.SENDING, error=error)
    return "retried"


def track(send: Send, provider_message_id: str, sent_at: datetime | None) -> None:
    """Register the sent message for tracking (its receipts find it by the provider's id) and mark it sent."""
    message, _ = register_message(
        {
            "channel": send.channel,
            "provider": send.provider,
            "provider_message_id": provider_message_id,
            "correlation_id": correlation_of(send),
            "to": send.to,
            "crm_record_id": send.crm_record_id,
            "campaign_id": send.campaign_id,
            "priority": send.priority,
            "metadata": send.metadata,
            "content": send.content,
            "sent_at": sent_at,
        }
    )
    finish(send, Send.State.SENT, message_id=message.pk, sent_at=sent_at, finished_at=timezone.now(), error="")


def correlation_of(send: Send) -> str:
    """Our name for a send at the provider (Webex Connect's ``correlationid``) and on its message."""
    return f"send-{send.pk}"


def finish(send: Send, state: str, **fields: Any) -> None:
    held = Send.objects.filter(pk=send.pk, state__in=[Send.State.CLAIMED, Send.State.SENDING])
    if held.update(state=state, **fields):
        throttle.count_send(send.provider, state)  # /metrics: campaigns_sends_finished_total


def reconcile_stuck(now: datetime | None = None) -> dict[str, int]:
    """Sends whose worker died between the claim and the end (held longer than SEND_CLAIM_TIMEOUT):

    - ``claimed``: nothing left yet; back to the queue;
    - ``sending`` through a provider that dedupes our id: back to the queue, to be sent again with the same id;
    - ``sending`` with the provider's answer kept: it was sent; registered now;
    - ``sending`` otherwise: it may have been sent; ``unknown``, for a person.
    """
    now = now or timezone.now()
    stale = Send.objects.filter(
        state__in=[Send.State.CLAIMED, Send.State.SENDING],
        claimed_at__lt=now - timedelta(seconds=settings.SEND_CLAIM_TIMEOUT),
    )
    counts = {"requeued": 0, "registered": 0, "unknown": 0}
    for send in stale.order_by("claimed_at")[:500]:
        if send.state == Send.State.CLAIMED:
            counts["requeued"] += give_back([send])
        elif idempotent(send.provider):
            counts["requeued"] += give_back([send], send.not_before, held=Send.State.SENDING)
        elif send.provider_message_id:
            track(send, send.provider_message_id, send.claimed_at)
            counts["registered"] += 1
        else:
            finish(
                send,
                Send.State.UNKNOWN,
                error="the worker stopped while sending: check before sending again",
                finished_at=now,
            )
            counts["unknown"] += 1
    return counts
