"""How long what we hold is kept: messages and their timelines age out after ``MESSAGE_RETENTION_DAYS``, and an
address can be erased on request (the right to erasure), with an audit line that does not itself hold it.

Raw inbox bodies have their own, shorter retention (``receipts.actions.ingest.prune_inbox``).
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from datetime import datetime, timedelta
from typing import cast

from django.conf import settings
from django.contrib.admin.models import LogEntry
from django.db import transaction
from django.db.models import Q
from django.utils import timezone

from receipts import personal
from receipts.actions import rollups, suppression
from receipts.addresses import normalize_address
from receipts.logging import mask
from receipts.models import Erasure, Message, MessageEvent, ReceiptEvent, SoftBounce, Suppression, SuppressionSource
from receipts.personal import address_digest
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


def erase_address(raw_address: str, *, requested_by: str, note: str = "", channel: str | None = None) -> Erasure:
    """Erase everything held about one address, wherever ``receipts.personal`` says it can be: its messages with
    their timelines, the raw inbox bodies that carry it (in any state), its soft bounces, its suppressions with
    their history, the operators' log lines that quote it, and through ``erasing`` the contacts with it, the text
    of the sends to it and the address in CRM changes.

    The ``Erasure`` audit line names the address by its hash only (its note is masked) and blocks it: nothing is
    sent to it and no contact is added with it until an operator allows it again on purpose (``allow_again``),
    which restores the suppressions it had. Raises ValueError for an address that is neither a phone number nor
    an email."""
    channel = channel or (Channel.EMAIL if "@" in raw_address else Channel.SMS)
    address = normalize_address(channel, raw_address)
    with transaction.atomic():
        message_ids = list(Message.objects.filter(channel=channel, to=address).values_list("pk", flat=True))
        linked = set(
            MessageEvent.objects.filter(message_id__in=message_ids, receipt_event__isnull=False).values_list(
                "receipt_event_id", flat=True
            )
        )
        # Rows no message took (orphans, rejected, dead, unmatched, replies) can carry the address too: look in
        # their text, whatever their state. Bodies write numbers with or without the "+"; emails in any case.
        found = quoting(address, channel)
        unlinked = set(
            ReceiptEvent.objects.filter(found("body") | found("error") | found("ref")).values_list("pk", flat=True)
        )
        inbox = sorted(linked | unlinked)
        rollups.mark_stale(message_ids)
        for start in range(0, len(message_ids), 2000):
            delete_messages(message_ids[start : start + 2000])
        for start in range(0, len(inbox), 2000):
            ReceiptEvent.objects.filter(pk__in=inbox[start : start + 2000]).delete()
        soft_bounces = SoftBounce.objects.filter(channel=channel, address=address).delete()[0]
        held = list(Suppression.objects.filter(channel=channel, address=address))
        suppressed_for = sorted({row.reason for row in held if row.is_active()})
        suppressions = len(held)
        Suppression.objects.filter(pk__in=[row.pk for row in held]).delete()  # with its history
        others: dict[str, int] = {}
        log_lines = LogEntry.objects.filter(found("object_repr") | found("change_message")).delete()[0]
        if log_lines:
            others["admin.LogEntry"] = log_lines
        for _, counts in personal.erasing.send(sender=Erasure, channel=channel, address=address):
            for label, rows in cast(dict[str, int], counts or {}).items():
                others[label] = others.get(label, 0) + rows
        erasure = Erasure.objects.create(
            channel=channel,
            address_sha256=address_digest(channel, address),
            requested_by=requested_by,
            note=mask(note),
            messages=len(message_ids),
            inbox_rows=len(inbox),
            soft_bounces=soft_bounces,
            suppressions=suppressions,
            suppressed_for=suppressed_for,
            others=others,
        )
    log.info(
        "erased %s %s: %d message(s), %d inbox row(s), %d soft bounce(s), %d suppression(s), %s, for %s",
        channel,
        mask(address),
        len(message_ids),
        len(inbox),
        soft_bounces,
        suppressions,
        others,
        requested_by,
    )
    return erasure


def quoting(address: str, channel: str) -> Callable[[str], Q]:
    """A filter for a text column that quotes the address: an email in any case, a number with or without its
    "+" (URL-encoded, it is ``%2B`` and the digits)."""
    if channel == Channel.EMAIL:
        return lambda column: Q(**{f"{column}__icontains": address})
    digits = address.lstrip("+")
    return lambda column: Q(**{f"{column}__contains": digits})


def allow_again(raw_address: str, *, by: str, note: str = "", channel: str | None = None) -> list[Erasure]:
    """Lift the block of an erased address, on purpose: the operator types the address again (we hold only its
    hash), and the suppressions it had when erased are added again, so an opt-out stays an opt-out. Returns the
    erasures lifted (none: the address was not blocked)."""
    channel = channel or (Channel.EMAIL if "@" in raw_address else Channel.SMS)
    address = normalize_address(channel, raw_address)
    now = timezone.now()
    with transaction.atomic():
        lifted = list(
            Erasure.objects.select_for_update().filter(
                channel=channel, address_sha256=address_digest(channel, address), lifted_at=None
            )
        )
        reasons = sorted({reason for erasure in lifted for reason in erasure.suppressed_for})
        for erasure in lifted:
            erasure.lifted_at, erasure.lifted_by, erasure.lift_note = now, by, mask(note)
            erasure.save(update_fields=["lifted_at", "lifted_by", "lift_note"])
        for reason in reasons:
            suppression.suppress(
                channel,
                address,
                reason,
                source=SuppressionSource.OPERATOR,
                note="restored when its erasure was lifted",
                actor=by,
            )
    if lifted:
        log.info("erased %s %s allowed again by %s (%s restored)", channel, mask(address), by, reasons or "nothing")
    return lifted
