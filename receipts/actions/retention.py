"""How long what we hold is kept: messages and their timelines age out after ``MESSAGE_RETENTION_DAYS``, and an
address can be erased on request (the right to erasure), with an audit line that does not itself hold it.

Raw inbox bodies have their own, shorter retention (``receipts.actions.ingest.prune_inbox``).
"""

from __future__ import annotations

import hashlib
import logging
from datetime import datetime, timedelta

from django.conf import settings
from django.db import transaction
from django.db.models import Q
from django.utils import timezone

from receipts.actions import rollups
from receipts.addresses import normalize_address
from receipts.logging import mask
from receipts.models import Erasure, InboxState, Message, MessageEvent, ReceiptEvent, SoftBounce
from receipts.status import Channel

log = logging.getLogger(__name__)


def prune_messages(now: datetime | None = None, chunk: int = 2000) -> int:
    """Delete messages created more than ``MESSAGE_RETENTION_DAYS`` ago, oldest first, ``chunk`` at a time (each
    batch its own transaction, so no statement holds the tables long), with their timelines, review history,
    retries and escalations. Suppressions they caused stay (their link to the message becomes empty).
    ``MESSAGE_RETENTION_DAYS`` 0 keeps everything. Returns the number of messages deleted."""
    if settings.MESSAGE_RETENTION_DAYS <= 0:
        return 0
    cutoff = (now or timezone.now()) - timedelta(days=settings.MESSAGE_RETENTION_DAYS)
    total = 0
    while True:
        # created_at is indexed: the oldest rows are a range of it, not a scan of the table.
        ids = list(
            Message.objects.filter(created_at__lt=cutoff).order_by("created_at").values_list("pk", flat=True)[:chunk]
        )
        if not ids:
            return total
        with transaction.atomic():
            delete_messages(ids)
        total += len(ids)


def delete_messages(ids: list[int]) -> None:
    """Messages and what hangs on them: Django's collector deletes each timeline in one statement (nothing refers
    to a timeline entry, so none is loaded), and loads only the few review decisions, retries and escalations."""
    Message.objects.filter(pk__in=ids).delete()


def address_digest(channel: str, address: str) -> str:
    """How an audit line names an address without holding it: sha256 of "channel:address" (the suppression
    changes the CRM gets hash the address alone, ``suppression.address_hash``)."""
    return hashlib.sha256(f"{channel}:{address}".encode()).hexdigest()


def erase_address(raw_address: str, *, requested_by: str, note: str = "", channel: str | None = None) -> Erasure:
    """Erase everything held about one address: its messages with their timelines, the raw inbox bodies that carry
    it, its soft-bounce history. Suppressions stay: they are what keeps the address from being contacted again
    (lift them first if the request covers them). Writes one ``Erasure`` audit line holding the address's hash,
    never the address. Raises ValueError for an address that is neither a phone number nor an email."""
    channel = channel or (Channel.EMAIL if "@" in raw_address else Channel.SMS)
    address = normalize_address(channel, raw_address)
    with transaction.atomic():
        message_ids = list(Message.objects.filter(channel=channel, to=address).values_list("pk", flat=True))
        linked = set(
            MessageEvent.objects.filter(message_id__in=message_ids, receipt_event__isnull=False).values_list(
                "receipt_event_id", flat=True
            )
        )
        # Rows no message took (orphans, rejected, dead, unmatched) can carry the address too: look in their text.
        # SMS bodies write numbers with or without the "+"; emails in any case.
        needle = Q(body__icontains=address) if channel == Channel.EMAIL else Q(body__contains=address.lstrip("+"))
        waiting = ReceiptEvent.objects.exclude(state=InboxState.PROCESSED)
        unlinked = set(waiting.filter(needle).values_list("pk", flat=True))
        inbox = sorted(linked | unlinked)
        rollups.mark_stale(message_ids)
        for start in range(0, len(message_ids), 2000):
            delete_messages(message_ids[start : start + 2000])
        for start in range(0, len(inbox), 2000):
            ReceiptEvent.objects.filter(pk__in=inbox[start : start + 2000]).delete()
        soft_bounces = SoftBounce.objects.filter(channel=channel, address=address).delete()[0]
        erasure = Erasure.objects.create(
            channel=channel,
            address_sha256=address_digest(channel, address),
            requested_by=requested_by,
            note=note,
            messages=len(message_ids),
            inbox_rows=len(inbox),
            soft_bounces=soft_bounces,
        )
    log.info(
        "erased %s %s: %d message(s), %d inbox row(s), %d soft bounce(s), for %s",
        channel,
        mask(address),
        len(message_ids),
        len(inbox),
        soft_bounces,
        requested_by,
    )
    return erasure
