"""Processing the inbox: claim due rows, parse them again, lock their messages, run every receipt through the
status machine and write the timeline, all in one transaction per batch.

Safe in many workers at once (rows claimed with SKIP LOCKED on PostgreSQL, under SQLite's single writer lock in the
embedded mode); processing an event twice writes nothing twice. What a receipt means beyond the status (suppression,
retries) is ``receipts.actions.effects``, and a reply that confirms a message ``receipts.actions.confirmations``,
both called inside the same transaction.
"""

from __future__ import annotations

import logging
from collections import defaultdict
from dataclasses import dataclass, field
from datetime import datetime

from django.conf import settings
from django.db import transaction
from django.db.models import Q
from django.utils import timezone

from receipts import machine
from receipts.actions import confirmations, effects, transitions
from receipts.addresses import normalize_address
from receipts.db import for_update, plain_text, update_rows
from receipts.events import DomainEvent, publish
from receipts.logging import mask
from receipts.models import InboxState, Message, MessageEvent, ReceiptEvent
from receipts.normalized import MalformedReceipt, NormalizedReceipt
from receipts.providers.registry import PROVIDERS
from receipts.status import RANK, Engagement, Source, Status, is_final

log = logging.getLogger(__name__)

MESSAGE_STATE_FIELDS = [
    "status",
    "sent_at",
    "status_at",
    "assumed",
    "failure_category",
    "retryable",
    "provider_code",
    "needs_review",
    "review_reason",
    "read_count",
    "click_count",
    "first_read_at",
    "complained_at",
    "unsubscribed_at",
    "next_poll_at",
    "updated_at",
]


EVENT_STATE_FIELDS = ["state", "processed_at", "ref", "orphan_until", "error", "attempts", "next_attempt_at"]


def process_due(now: datetime | None = None, limit: int | None = None) -> int:
    """Claim up to ``limit`` due inbox rows and process them. Returns how many were claimed.

    Safe to run in many workers at once: rows are claimed with SKIP LOCKED (PostgreSQL) or under SQLite's
    single writer lock, and processing an event twice writes nothing twice.
    """
    now = now or timezone.now()
    limit = limit or settings.INBOX_BATCH_SIZE
    with transaction.atomic():
        events = list(for_update(ReceiptEvent.objects.due(now).order_by("id"), skip_locked=True)[:limit])
        if not events:
            return 0
        try:
            with transaction.atomic():
                apply_events(events, now)
        except Exception:
            log.warning("batch of %d failed; processing its events one by one", len(events), exc_info=True)
            for event in events:
                try:
                    with transaction.atomic():
                        apply_events([event], now)
                except Exception as exc:
                    record_failure(event, exc, now)
    return len(events)


def process_these(ids: list[int], now: datetime | None = None) -> None:
    """Process these inbox rows now, each on its own (an operator's replay, who waits for the outcome of each).
    Rows a worker holds already are left to it."""
    now = now or timezone.now()
    with transaction.atomic():
        claimed = ReceiptEvent.objects.due(now).filter(pk__in=ids).order_by("id")
        for event in for_update(claimed, skip_locked=True):
            try:
                with transaction.atomic():
                    apply_events([event], now)
            except Exception as exc:
                record_failure(event, exc, now)


def record_failure(event: ReceiptEvent, exc: Exception, now: datetime) -> None:
    """Count a failed attempt: back off, or ``dead`` after ``INBOX_MAX_ATTEMPTS``.

    Writes only the failure's own columns, from values that always store (the error masked, cut, made plain
    text), never the row's other fields: they may be what failed. In a savepoint of its own, so that even a
    failure here leaves the rest of the batch to be claimed and processed.
    """
    attempts = event.attempts + 1
    error = storable_error(exc)
    dead = attempts >= settings.INBOX_MAX_ATTEMPTS
    retry_at = now + min(settings.INBOX_RETRY_BASE * 2 ** (attempts - 1), settings.INBOX_RETRY_MAX)
    try:
        with transaction.atomic():
            ReceiptEvent.objects.filter(pk=event.pk).update(
                attempts=attempts,
                error=error,
                state=InboxState.DEAD if dead else InboxState.RECEIVED,
                next_attempt_at=event.next_attempt_at if dead else retry_at,
            )
    except Exception:
        log.exception("event %s: could not record its failure", event.pk)
        return
    if dead:
        log.error("event %s is dead after %d attempts: %s", event.pk, attempts, error)
    else:
        log.warning("event %s failed (attempt %d), retry at %s", event.pk, attempts, retry_at)


def storable_error(exc: BaseException) -> str:
    """The error as operators read it: addresses masked, no NUL or lone surrogate, at most 2,000 characters."""
    return plain_text(mask(f"{type(exc).__name__}: {exc}")[:2000])


@dataclass
class Batch:
    """The messages one batch touches, locked in id order so concurrent batches cannot deadlock."""

    by_ref: dict[tuple[str, str], list[Message]] = field(default_factory=lambda: defaultdict(list))
    by_address: dict[tuple[str, str], Message] = field(default_factory=dict)
    seen: set[tuple[int, str]] = field(default_factory=set)
    touched: dict[int, Message] = field(default_factory=dict)
    timeline: list[MessageEvent] = field(default_factory=list)
    changes: list[DomainEvent] = field(default_factory=list)
    effects: list[effects.Effect] = field(default_factory=list)


def apply_events(events: list[ReceiptEvent], now: datetime) -> None:
    parsed: list[tuple[ReceiptEvent, list[NormalizedReceipt]]] = []
    for event in events:
        try:
            receipts = PROVIDERS[event.provider].read(event.body.encode(), event.content_type)
        except MalformedReceipt as exc:  # a replayed rejected body that still does not parse
            event.state, event.error, event.processed_at = InboxState.REJECTED, str(exc), now
            continue
        parsed.append((event, receipts))

    batch = lock_messages([r for _, receipts in parsed for r in receipts])
    for event, receipts in parsed:
        waiting = []
        for receipt in receipts:
            message = find_message(batch, receipt)
            if message is None:
                if receipt.is_inbound:
                    batch.effects.append(effects.Effect(receipt, None, None))
                else:
                    waiting.append(receipt)
                continue
            entry = apply_receipt(batch, message, receipt, source=event.source, receipt_event=event, now=now)
            batch.effects.append(effects.Effect(receipt, message, entry))
        if waiting:
            event.state = InboxState.ORPHAN
            event.ref = waiting[0].provider_message_id
            event.orphan_until = event.orphan_until or event.received_at + settings.ORPHAN_WINDOW
        else:
            event.state, event.ref = InboxState.PROCESSED, ""
        event.processed_at, event.error = now, ""

    if batch.touched:
        update_rows(list(batch.touched.values()), MESSAGE_STATE_FIELDS)
    MessageEvent.objects.bulk_create(batch.timeline)
    update_rows(events, EVENT_STATE_FIELDS)
    effects.apply_receipt_effects(batch.effects, now)
    batch.changes += confirmations.record_confirmations(batch.effects, now)
    publish(batch.changes)
    orphans = sum(1 for e in events if e.state == InboxState.ORPHAN)
    log.info("inbox batch: %d event(s), %d change(s), %d orphan(s)", len(events), len(batch.changes), orphans)


def lock_messages(receipts: list[NormalizedReceipt]) -> Batch:
    batch = Batch()
    refs = {(r.provider, r.provider_message_id) for r in receipts if r.provider_message_id}
    addresses = {(r.channel, r.address) for r in receipts if r.is_inbound}
    wanted = Q(pk__in=[])
    for provider in {p for p, _ in refs}:
        wanted |= Q(provider=provider, provider_message_id__in=[m for p, m in refs if p == provider])
    ids = set(Message.objects.filter(wanted).values_list("id", flat=True)) if refs else set()
    for channel, address in addresses:
        # An opt-out or a reply concerns the address; it goes on the timeline of its latest message.
        try:
            normalised = normalize_address(channel, address)
        except ValueError:
            continue
        latest = Message.objects.filter(channel=channel, to=normalised).order_by("-created_at", "-id").first()
        if latest:
            ids.add(latest.pk)
            batch.by_address[(channel, address)] = latest
    if not ids:
        return batch
    locked = for_update(Message.objects.filter(pk__in=ids).select_related("campaign").order_by("id"), of_self=True)
    messages = {m.pk: m for m in locked}
    for m in messages.values():
        batch.by_ref[(m.provider, m.provider_message_id)].append(m)
    batch.by_address = {k: messages[m.pk] for k, m in batch.by_address.items()}
    keys = [r.key for r in receipts]
    batch.seen = set(
        MessageEvent.objects.filter(message_id__in=ids, receipt_key__in=keys).values_list("message_id", "receipt_key")
    )
    return batch


def find_message(batch: Batch, receipt: NormalizedReceipt) -> Message | None:
    if receipt.is_inbound:
        return batch.by_address.get((receipt.channel, receipt.address))
    candidates = batch.by_ref.get((receipt.provider, receipt.provider_message_id), [])
    wanted = receipt.to.strip().lower()
    for message in candidates:
        if wanted and message.to.lower() == wanted:
            return message
    # One email can go to several recipients under one id; only there must the recipient match.
    if len(candidates) == 1 and not (wanted and candidates[0].channel == "email"):
        return candidates[0]
    return None


def apply_receipt(
    batch: Batch,
    message: Message,
    receipt: NormalizedReceipt,
    *,
    source: str = Source.WEBHOOK,
    receipt_event: ReceiptEvent | None = None,
    now: datetime,
) -> MessageEvent | None:
    """Run one receipt through the status machine and put it on the message's timeline (once)."""
    key = receipt.key
    if (message.pk, key) in batch.seen:
        return None
    batch.seen.add((message.pk, key))
    occurred_at = receipt.occurred_at or (receipt_event.received_at if receipt_event else now)
    before = transitions.state_of(message)
    outcome = receipt.outcome
    transition = machine.advance(before, outcome, occurred_at)
    after = transition.state
    transitions.write(message, after)
    if transition.changed:
        message.provider_code = receipt.provider_code[:200]
        log.debug("message %s %s -> %s (%s)", message.pk, before.status, after.status, receipt.provider_code)
    if is_final(message.status):
        message.next_poll_at = None  # final: nothing left to poll for
    if message.sent_at is None and RANK.get(message.status, 0) >= RANK[Status.SENT]:
        message.sent_at = occurred_at
    review_before = (message.needs_review, message.review_reason)
    if transition.flag:
        message.needs_review, message.review_reason = True, transition.flag
    elif transition.clear_flag and message.review_reason == transition.clear_flag:
        message.needs_review, message.review_reason = False, ""
    if transition.changed or review_before != (message.needs_review, message.review_reason):
        batch.changes.append(transitions.status_changed(message, before.status, source, now))
    record_engagement(message, outcome.engagement, occurred_at)
    message.updated_at = now
    batch.touched[message.pk] = message

    entry = MessageEvent(
        message=message,
        receipt_event=receipt_event,
        source=source,
        receipt_key=key,
        provider_code=receipt.provider_code[:200],
        status=outcome.status or "",
        engagement=outcome.engagement,
        failure_category=outcome.category,
        retryable=outcome.retryable,
        unmapped=outcome.unmapped,
        applied=transition.changed,
        description=receipt.description,
        details={**receipt.details, **({"soft_bounce": True} if outcome.soft_bounce else {})},
        raw=receipt.raw,
        occurred_at=occurred_at,
        received_at=receipt_event.received_at if receipt_event else now,
    )
    batch.timeline.append(entry)
    return entry


def record_engagement(message: Message, engagement: str, at: datetime) -> None:
    if engagement == Engagement.READ:
        message.read_count += 1
        message.first_read_at = min(filter(None, [message.first_read_at, at]))
    elif engagement == Engagement.CLICKED:
        message.click_count += 1
    elif engagement == Engagement.COMPLAINED:
        message.complained_at = message.complained_at or at
    elif engagement == Engagement.UNSUBSCRIBED:
        message.unsubscribed_at = message.unsubscribed_at or at
