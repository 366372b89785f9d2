"""Receipts in: the raw body stored as an inbox row (``ReceiptEvent``), and the upkeep of rows still waiting.

``ingest`` is the webhook's one write (one ``INSERT ... ON CONFLICT DO NOTHING``); ``ingest_poll`` stores what
polling got, with the same format check and dedupe key. Orphans (receipts whose message is not registered yet) are
matched again when it appears, and given up after ``ORPHAN_WINDOW``. Operators replay dead, rejected and unmatched
rows. Processing itself is ``receipts.actions.process``.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta

from django.conf import settings
from django.db import transaction
from django.db.models import Exists, OuterRef, QuerySet
from django.utils import timezone

from receipts.db import insert_unless_conflict, plain_text
from receipts.kicks import request_drain
from receipts.logging import mask
from receipts.models import InboxState, Message, ReceiptEvent
from receipts.normalized import MalformedReceipt, NothingToTrack, dedupe_key
from receipts.providers.registry import PROVIDERS
from receipts.status import Source


@dataclass(frozen=True)
class IngestResult:
    accepted: int
    duplicates: int
    event_id: int | None
    ignored: int = 0  # well-formed bodies that carry no receipt: answered, not stored


CONTENT_TYPE_MAX = 200  # ReceiptEvent.content_type


def ingest(provider_name: str, body: bytes, content_type: str, remote_addr: str | None) -> IngestResult:
    """Check the body is this provider's format and that processing can store all it says, then store it.

    Raises MalformedReceipt after keeping the body as a rejected row (made safe to store: NUL and bytes that are
    not UTF-8 replaced), so that operators see what came.
    """
    provider = PROVIDERS[provider_name]
    try:
        if len(content_type) > CONTENT_TYPE_MAX:
            raise MalformedReceipt(f"the Content-Type header is over {CONTENT_TYPE_MAX} characters")
        receipts = provider.read(body, content_type)
        text = body.decode("utf-8")  # what processing parses again must be these very bytes
    except NothingToTrack as nothing:
        return IngestResult(accepted=0, duplicates=0, event_id=None, ignored=nothing.count)
    except (MalformedReceipt, UnicodeDecodeError) as exc:
        problem = exc if isinstance(exc, MalformedReceipt) else MalformedReceipt("body is not UTF-8")
        text = body.decode("utf-8", errors="replace")
        rejected(provider_name, Source.WEBHOOK, text, content_type, problem, remote_addr).save()
        raise problem from exc
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


def prune_inbox(now: datetime | None = None, chunk: int = 5000) -> int:
    """Delete processed inbox rows older than ``INBOX_RETENTION_DAYS``, oldest first, ``chunk`` rows a statement
    (so no statement holds the table long). Their receipts stay on the timelines (MessageEvent keeps the
    normalised facts and the raw receipt; its link to the inbox row becomes empty)."""
    if settings.INBOX_RETENTION_DAYS <= 0:
        return 0
    cutoff = (now or timezone.now()) - timedelta(days=settings.INBOX_RETENTION_DAYS)
    total = 0
    while True:
        ids = list(
            ReceiptEvent.objects.filter(state=InboxState.PROCESSED, received_at__lt=cutoff)
            .order_by("received_at")
            .values_list("id", flat=True)[:chunk]
        )
        if not ids:
            return total
        total += ReceiptEvent.objects.filter(pk__in=ids).delete()[0]


def ingest_poll(provider_name: str, bodies: list[str], content_type: str = "application/json") -> IngestResult:
    """Store answers got by polling (receipts.polling) as inbox rows, source ``poll``, one body per message.

    Same format check and dedupe key as a webhook, so an answer identical to one already stored (the same
    receipts polled again) is a duplicate and never reaches the timeline twice. One INSERT per batch.
    """
    provider = PROVIDERS[provider_name]
    keyed: dict[str, str] = {}
    refused: list[ReceiptEvent] = []
    for text in bodies:
        try:
            keyed.setdefault(dedupe_key(provider.read(text.encode(), content_type)), text)
        except MalformedReceipt as exc:
            refused.append(rejected(provider_name, Source.POLL, text, content_type, exc))
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
        ReceiptEvent.objects.bulk_create(fresh + refused, ignore_conflicts=True, batch_size=500)
        if fresh:
            transaction.on_commit(request_drain)
    return IngestResult(accepted=len(fresh), duplicates=len(bodies) - len(fresh) - len(refused), event_id=None)


def rejected(
    provider_name: str,
    source: str,
    text: str,
    content_type: str,
    problem: MalformedReceipt,
    remote_addr: str | None = None,
) -> ReceiptEvent:
    """An unsaved ``rejected`` inbox row keeping what came, made storable (NUL, lone surrogates, the column's
    length), with the problem's text, addresses masked."""
    return ReceiptEvent(
        provider=provider_name,
        source=source,
        state=InboxState.REJECTED,
        body=plain_text(text),
        content_type=plain_text(content_type)[:CONTENT_TYPE_MAX],
        remote_addr=remote_addr,
        error=plain_text(mask(str(problem))),
    )


def requeue_orphans(events: QuerySet[ReceiptEvent]) -> int:
    return events.filter(state=InboxState.ORPHAN).update(state=InboxState.RECEIVED, next_attempt_at=timezone.now())


def rematch_orphans() -> int:
    """Orphans whose message has appeared since they were processed (covers a registration racing the orphan's
    own commit). Only a message new to the orphan counts: one it has already been matched against and could not
    attach to (an email receipt for another recipient) does not send it round again at every sweep."""
    registered = Message.objects.filter(
        provider=OuterRef("provider"),
        provider_message_id=OuterRef("ref"),
        created_at__gt=OuterRef("processed_at") - race_margin(),
    )
    return requeue_orphans(ReceiptEvent.objects.filter(Exists(registered)))


def race_margin() -> timedelta:
    """A registration can commit while the batch that made a receipt an orphan is still open, and miss it: a batch
    lives no longer than its task (``CELERY_TASK_TIME_LIMIT``), so a message created that long before the orphan
    was processed may be one it never saw."""
    return timedelta(seconds=settings.CELERY_TASK_TIME_LIMIT)


def expire_orphans(now: datetime | None = None) -> int:
    now = now or timezone.now()
    return ReceiptEvent.objects.filter(state=InboxState.ORPHAN, orphan_until__lt=now).update(
        state=InboxState.UNMATCHED, error="no message registered within the orphan window"
    )


def replay_events(events: QuerySet[ReceiptEvent]) -> list[int]:
    """Operators: send dead, rejected and unmatched events through processing again. Returns the ids queued."""
    replayable = events.filter(state__in=[InboxState.DEAD, InboxState.REJECTED, InboxState.UNMATCHED])
    ids = list(replayable.values_list("pk", flat=True))
    ReceiptEvent.objects.filter(pk__in=ids).update(
        state=InboxState.RECEIVED, attempts=0, error="", next_attempt_at=timezone.now(), orphan_until=None
    )
    if ids:
        transaction.on_commit(request_drain)
    return ids
