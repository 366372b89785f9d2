"""The only code that changes messages and the inbox. Views, admin actions, tasks and commands call these.

The flow of one receipt (DESIGN.md): ``ingest`` stores the raw body and answers; ``process_due`` claims a batch
of stored bodies, parses them again, locks their messages, runs each receipt through the status machine and
writes the timeline, all in one transaction per batch.
"""

from __future__ import annotations

import logging
from collections import defaultdict
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from django.conf import settings
from django.db import IntegrityError, connection, transaction
from django.db.models import Exists, OuterRef, Q, QuerySet
from django.utils import timezone

from campaigns.models import Campaign
from receipts import machine, policy
from receipts.addresses import normalize_address
from receipts.db import insert_unless_conflict, update_rows
from receipts.events import DomainEvent, Kind, message_state, publish
from receipts.models import InboxState, Message, MessageEvent, ReceiptEvent
from receipts.normalized import MalformedReceipt, NormalizedReceipt, dedupe_key
from receipts.providers import PROVIDERS
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


# --- ingest ---------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class IngestResult:
    accepted: int
    duplicates: int
    event_id: int | None


def ingest(provider_name: str, body: bytes, content_type: str, remote_addr: str | None) -> IngestResult:
    """Check the body is this provider's format and store it. Raises MalformedReceipt after keeping it."""
    provider = PROVIDERS[provider_name]
    text = body.decode("utf-8", errors="replace")
    try:
        receipts = provider.parse(body, content_type)
    except MalformedReceipt as exc:
        ReceiptEvent.objects.create(
            provider=provider_name,
            state=InboxState.REJECTED,
            body=text,
            content_type=content_type,
            remote_addr=remote_addr,
            error=str(exc),
        )
        raise
    event = ReceiptEvent(
        provider=provider_name,
        dedupe_key=dedupe_key(receipts),
        body=text,
        content_type=content_type,
        remote_addr=remote_addr,
    )
    if insert_unless_conflict(event) is None:  # the same facts are stored already: a retried webhook
        return IngestResult(accepted=0, duplicates=len(receipts), event_id=None)
    return IngestResult(accepted=len(receipts), duplicates=0, event_id=event.pk)


def ingest_poll(provider_name: str, bodies: list[str], content_type: str = "application/json") -> IngestResult:
    """Store answers got by polling (receipts/polling.py) as inbox rows, source ``poll``, one body per message.

    Same format check and dedupe key as a webhook, so an answer identical to one already stored (the same
    receipts polled again) is a duplicate and never reaches the timeline twice. One INSERT per batch.
    """
    provider = PROVIDERS[provider_name]
    keyed: dict[str, str] = {}
    rejected = []
    for text in bodies:
        try:
            keyed.setdefault(dedupe_key(provider.parse(text.encode(), content_type)), text)
        except MalformedReceipt as exc:
            rejected.append(
                ReceiptEvent(
                    provider=provider_name,
                    source=Source.POLL,
                    state=InboxState.REJECTED,
                    body=text,
                    content_type=content_type,
                    error=str(exc),
                )
            )
    known: set[str | None] = set()  # dedupe_key is nullable, though the IN filter returns no NULL
    keys = list(keyed)
    for start in range(0, len(keys), 500):
        stored = ReceiptEvent.objects.filter(provider=provider_name, dedupe_key__in=keys[start : start + 500])
        known.update(stored.values_list("dedupe_key", flat=True))
    fresh = [
        ReceiptEvent(provider=provider_name, source=Source.POLL, dedupe_key=key, body=text, content_type=content_type)
        for key, text in keyed.items()
        if key not in known
    ]
    with transaction.atomic():
        # A concurrent poll or webhook may have stored the same facts since the check: conflicts are skipped.
        ReceiptEvent.objects.bulk_create(fresh + rejected, ignore_conflicts=True, batch_size=500)
        if fresh:
            transaction.on_commit(request_drain)
    return IngestResult(accepted=len(fresh), duplicates=len(bodies) - len(fresh) - len(rejected), event_id=None)


# --- registering messages -------------------------------------------------------------------------------


def register_message(data: dict[str, Any]) -> tuple[Message, bool]:
    """Record a message sent elsewhere. Idempotent on (provider, provider_message_id, to).

    Receipts that arrived before it (orphans) are queued to be matched again.
    """
    to = normalize_address(data["channel"], data["to"])
    campaign = None
    if data.get("campaign"):
        campaign, _ = Campaign.objects.get_or_create(name=data["campaign"])
    defaults = {
        "channel": data["channel"],
        "crm_record_id": data.get("crm_record_id", ""),
        "campaign": campaign,
        "priority": data.get("priority") or "normal",
        "conversation_id": data.get("conversation_id", ""),
        "correlation_id": data.get("correlation_id", ""),
        "metadata": data.get("metadata") or {},
        "content": data.get("content") or {},
    }
    from receipts.polling import first_poll_at  # polling imports this module

    defaults["next_poll_at"] = first_poll_at(data["provider"], defaults["priority"], data.get("sent_at"))
    lookup = {"provider": data["provider"], "provider_message_id": data["provider_message_id"], "to": to}
    with transaction.atomic():
        try:
            with transaction.atomic():
                message = Message.objects.create(**lookup, **defaults)
            created = True
        except IntegrityError:
            message, created = Message.objects.get(**lookup), False
        if created:
            requeued = requeue_orphans(
                ReceiptEvent.objects.filter(provider=message.provider, ref=message.provider_message_id)
            )
            if requeued:
                log.info("message %s matched %d waiting receipt(s)", message.pk, requeued)
                transaction.on_commit(request_drain)
    return message, created


def requeue_orphans(events: QuerySet[ReceiptEvent]) -> int:
    return events.filter(state=InboxState.ORPHAN).update(state=InboxState.RECEIVED, next_attempt_at=timezone.now())


def rematch_orphans() -> int:
    """Orphans whose message has since appeared (covers a registration racing the orphan's own commit)."""
    registered = Message.objects.filter(provider=OuterRef("provider"), provider_message_id=OuterRef("ref"))
    return requeue_orphans(ReceiptEvent.objects.filter(Exists(registered)))


def expire_orphans(now: datetime | None = None) -> int:
    now = now or timezone.now()
    return ReceiptEvent.objects.filter(state=InboxState.ORPHAN, orphan_until__lt=now).update(
        state=InboxState.UNMATCHED, error="no message registered within the orphan window"
    )


def replay_events(events: QuerySet[ReceiptEvent]) -> int:
    """Operators: send dead, rejected and unmatched events through processing again."""
    count = events.filter(state__in=[InboxState.DEAD, InboxState.REJECTED, InboxState.UNMATCHED]).update(
        state=InboxState.RECEIVED, attempts=0, error="", next_attempt_at=timezone.now(), orphan_until=None
    )
    if count:
        transaction.on_commit(request_drain)
    return count


def request_drain() -> None:
    from receipts.dispatch import request_drain as kick

    kick()


# --- processing -----------------------------------------------------------------------------------------


def process_due(now: datetime | None = None, limit: int | None = None) -> int:
    """Claim up to ``limit`` due inbox rows and process them. Returns how many were claimed.

    Safe to run in many workers at once: rows are claimed with SKIP LOCKED (PostgreSQL) or under SQLite's
    single writer lock, and processing an event twice writes nothing twice.
    """
    now = now or timezone.now()
    limit = limit or settings.INBOX_BATCH_SIZE
    with transaction.atomic():
        due = ReceiptEvent.objects.due(now).order_by("id")
        if connection.features.has_select_for_update_skip_locked:
            due = due.select_for_update(skip_locked=True)
        events = list(due[:limit])
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


def record_failure(event: ReceiptEvent, exc: Exception, now: datetime) -> None:
    event.attempts += 1
    event.error = f"{type(exc).__name__}: {exc}"[:2000]
    if event.attempts >= settings.INBOX_MAX_ATTEMPTS:
        event.state = InboxState.DEAD
        log.error("event %s is dead after %d attempts: %s", event.pk, event.attempts, event.error)
    else:
        backoff = settings.INBOX_RETRY_BASE * 2 ** (event.attempts - 1)
        event.state = InboxState.RECEIVED
        event.next_attempt_at = now + min(backoff, settings.INBOX_RETRY_MAX)
        log.warning("event %s failed (attempt %d), retry at %s", event.pk, event.attempts, event.next_attempt_at)
    event.save(update_fields=EVENT_STATE_FIELDS)


@dataclass
class Batch:
    """The messages one batch touches, locked in id order so concurrent batches cannot deadlock."""

    by_ref: dict[tuple[str, str], list[Message]] = field(default_factory=lambda: defaultdict(list))
    by_address: dict[tuple[str, str], Message] = field(default_factory=dict)
    seen: set[tuple[int, str]] = field(default_factory=set)
    touched: dict[int, Message] = field(default_factory=dict)
    timeline: list[MessageEvent] = field(default_factory=list)
    changes: list[DomainEvent] = field(default_factory=list)
    effects: list[policy.Effect] = field(default_factory=list)


def apply_events(events: list[ReceiptEvent], now: datetime) -> None:
    parsed: list[tuple[ReceiptEvent, list[NormalizedReceipt]]] = []
    for event in events:
        try:
            receipts = PROVIDERS[event.provider].parse(event.body.encode(), event.content_type)
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
                    batch.effects.append(policy.Effect(receipt, None, None))
                else:
                    waiting.append(receipt)
                continue
            entry = apply_receipt(batch, message, receipt, source=event.source, receipt_event=event, now=now)
            batch.effects.append(policy.Effect(receipt, message, entry))
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
    policy.apply_receipt_effects(batch.effects, now)
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
    locked = Message.objects.filter(pk__in=ids).select_related("campaign").order_by("id")
    if connection.features.has_select_for_update:
        locked = locked.select_for_update(of=("self",) if connection.features.has_select_for_update_of else ())
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
    before = machine.State(
        message.status, message.status_at, message.assumed, message.failure_category, message.retryable
    )
    outcome = receipt.outcome
    transition = machine.advance(before, outcome, occurred_at)
    after = transition.state
    message.status, message.status_at, message.assumed = after.status, after.status_at, after.assumed
    message.failure_category, message.retryable = after.failure_category, after.retryable
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
        batch.changes.append(
            DomainEvent(
                Kind.STATUS_CHANGED,
                occurred_at=now,
                payload={**message_state(message), "previous_status": before.status, "source": source},
                message_id=message.pk,
                crm_record_id=message.crm_record_id,
            )
        )
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
