"""The suppression list: who must not be sent to, on which channel, why, since when, and on whose word.

The only code that writes ``Suppression`` and ``SuppressionChange`` rows. Receipts (``receipts.actions.effects``),
operators (the admin), the API and CSV imports all come through ``apply`` (or its one-row wrappers ``suppress``
and ``lift``), which works on a batch with a fixed number of queries, keeps the history of every change and
announces it to the CRM (``suppression_added`` / ``suppression_lifted``) in the same transaction.

An address (channel + normalised address) can carry several suppressions at once, one per reason: an opt-out
and a hard bounce are separate facts, and a ``Subscribe`` lifts only the first.
"""

from __future__ import annotations

import hashlib
import logging
from collections import defaultdict
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from django.conf import settings
from django.db import IntegrityError, connection, transaction
from django.db.models import Q, QuerySet
from django.utils import timezone
from django.utils.dateparse import parse_datetime

from receipts.addresses import normalize_address, normalize_fast
from receipts.db import for_update
from receipts.events import DomainEvent, Kind, publish
from receipts.logging import mask
from receipts.models import (
    Erasure,
    Message,
    SoftBounce,
    Suppression,
    SuppressionChange,
    SuppressionReason,
    SuppressionSource,
)
from receipts.normalized import MalformedReceipt, parse_time
from receipts.personal import address_digest
from receipts.status import Channel

log = logging.getLogger(__name__)

Reason = SuppressionReason
Source = SuppressionSource
Pair = tuple[str, str]  # (channel, normalised address)

# Addresses per IN (...) query: well under every backend's parameter limit, and a cheap index probe each.
CHUNK = 1000
# What the CRM gets as flags: the reasons that mean "bounced".
BOUNCE_REASONS = frozenset({Reason.HARD_BOUNCE, Reason.SOFT_BOUNCE_THRESHOLD, Reason.INVALID_DESTINATION})


def chunked(items: list[Any], size: int = CHUNK) -> Iterator[list[Any]]:
    for start in range(0, len(items), size):
        yield items[start : start + size]


def address_hash(address: str) -> str:
    """Lets the CRM match an address it knows without the payload carrying the address itself."""
    return hashlib.sha256(address.encode()).hexdigest()


# --- changes --------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Add:
    channel: str
    address: str  # normalised
    reason: str
    source: str
    actor: str = ""
    user: Any = None
    note: str = ""
    evidence: dict[str, Any] = field(default_factory=dict)
    message: Message | None = None
    expires_at: datetime | None = None
    # The receipt behind it: a receipt processed again changes nothing.
    receipt_key: str = ""

    @property
    def pair(self) -> Pair:
        return (self.channel, self.address)


@dataclass(frozen=True)
class Lift:
    channel: str
    address: str
    # Lift the active suppressions of these reasons (a Subscribe: only unsubscribe)...
    reasons: frozenset[str]
    source: str
    actor: str = ""
    user: Any = None
    note: str = ""
    evidence: dict[str, Any] = field(default_factory=dict)
    receipt_key: str = ""
    # ...or exactly this one (operators and the API lift one entry).
    suppression_id: int | None = None

    @property
    def pair(self) -> Pair:
        return (self.channel, self.address)


Change = Add | Lift


@dataclass
class Book:
    """The open (not lifted) suppressions of some addresses, locked, as a batch sees and changes them."""

    rows: dict[Pair, dict[str, Suppression]] = field(default_factory=lambda: defaultdict(dict))
    loaded: set[Pair] = field(default_factory=set)

    @classmethod
    def load(cls, pairs: Iterable[Pair], lock: bool = True) -> Book:
        book = cls()
        book.extend(pairs, lock)
        return book

    def extend(self, pairs: Iterable[Pair], lock: bool = True) -> None:
        wanted = sorted(set(pairs) - self.loaded)
        by_channel: dict[str, list[str]] = defaultdict(list)
        for channel, address in wanted:
            by_channel[channel].append(address)
        for channel, addresses in by_channel.items():
            for chunk in chunked(addresses):
                rows = Suppression.objects.filter(channel=channel, address__in=chunk, lifted_at=None).order_by("id")
                if lock:
                    rows = for_update(rows)
                for row in rows:
                    self.rows[(row.channel, row.address)][row.reason] = row
        self.loaded.update(wanted)

    def active(self, pair: Pair, now: datetime) -> list[Suppression]:
        return [row for row in self.rows.get(pair, {}).values() if row.is_active(now)]

    def active_reasons(self, pair: Pair, now: datetime) -> list[str]:
        return sorted(row.reason for row in self.active(pair, now))


@dataclass
class Result:
    added: list[Suppression] = field(default_factory=list)
    lifted: list[Suppression] = field(default_factory=list)
    # An add that found the same reason already active (that row), a lift that found nothing to lift (None).
    unchanged: list[Suppression | None] = field(default_factory=list)
    # What to tell the CRM, in the order it happened.
    announcements: list[tuple[str, Suppression]] = field(default_factory=list)


def apply(changes: list[Change], now: datetime | None = None, book: Book | None = None) -> Result:
    """Apply adds and lifts in order, with a fixed number of queries whatever their number. Call it inside a
    transaction (the rows of the addresses involved are locked until it ends)."""
    now = now or timezone.now()
    result = Result()
    if not changes:
        return result
    book = book or Book()
    book.extend(c.pair for c in changes)
    keys = {c.receipt_key for c in changes if c.receipt_key}
    if keys:
        done = set(SuppressionChange.objects.filter(receipt_key__in=keys).values_list("receipt_key", flat=True))
    else:
        done = set()

    created: list[Suppression] = []
    closed: list[Suppression] = []  # existing rows lifted or expired
    history: list[SuppressionChange] = []
    for change in changes:
        if change.receipt_key and change.receipt_key in done:
            continue
        open_rows = book.rows[change.pair]
        if isinstance(change, Add):
            current = open_rows.get(change.reason)
            if current is not None and current.is_active(now):
                result.unchanged.append(current)
                continue
            if current is not None:  # expired, not yet closed: close it, then open a new one
                close(current, now, lifted_at=current.expires_at, source=Source.SYSTEM, actor="system", note="expired")
                closed.append(current)
                history.append(entry(current, SuppressionChange.Action.EXPIRED, Source.SYSTEM, "system", now))
            row = Suppression(
                channel=change.channel,
                address=change.address,
                reason=change.reason,
                source=change.source,
                note=change.note,
                evidence=change.evidence,
                message=change.message,
                created_at=now,
                created_by=change.actor,
                user=change.user,
                expires_at=change.expires_at,
            )
            open_rows[change.reason] = row
            created.append(row)
            result.added.append(row)
            result.announcements.append((Kind.SUPPRESSION_ADDED, row))
            history.append(
                entry(row, SuppressionChange.Action.ADDED, change.source, change.actor, now, change, change.note)
            )
        else:
            targets = [
                row
                for row in book.active(change.pair, now)
                if (row.pk == change.suppression_id if change.suppression_id else row.reason in change.reasons)
            ]
            opted_in_at = fact_time(change.evidence) if change.receipt_key else None
            if opted_in_at is not None:
                # A receipt's opt-in is weighed against when each opt-out happened, not when it was processed:
                # a START sent before a STOP must not lift the STOP that another batch happened to record first.
                stale = [row for row in targets if opted_out_at(row) > opted_in_at]
                for row in stale:
                    log.info(
                        "%s %s: opt-in of %s is older than the opt-out of %s; the opt-out stands",
                        row.channel,
                        mask(row.address),
                        opted_in_at.isoformat(),
                        opted_out_at(row).isoformat(),
                    )
                targets = [row for row in targets if row not in stale]
            if not targets:
                result.unchanged.append(None)
                continue
            for row in targets:
                close(row, now, lifted_at=now, source=change.source, actor=change.actor, note=change.note)
                del open_rows[row.reason]
                if row.pk is not None:
                    closed.append(row)
                result.lifted.append(row)
                result.announcements.append((Kind.SUPPRESSION_LIFTED, row))
                history.append(
                    entry(row, SuppressionChange.Action.LIFTED, change.source, change.actor, now, change, change.note)
                )

    # Close first: a new row for the same reason needs the old one out of the unique index.
    if closed:
        Suppression.objects.bulk_update(closed, ["lifted_at", "lifted_by", "lift_source", "lift_reason"])
    if created:
        Suppression.objects.bulk_create(created)
    if history:
        SuppressionChange.objects.bulk_create(history)
    announce(result, book, now)
    for row in result.added:
        log.info("suppressed %s %s (%s, %s)", row.channel, mask(row.address), row.reason, row.source)
    for row in result.lifted:
        log.info("lifted %s suppression of %s %s (%s)", row.reason, row.channel, mask(row.address), row.lift_source)
    return result


def fact_time(evidence: dict[str, Any]) -> datetime | None:
    """When the receipt behind a change happened, by the provider's clock (None when no receipt says)."""
    occurred = evidence.get("occurred_at") if evidence else None
    return aware(occurred) if occurred else None


def opted_out_at(row: Suppression) -> datetime:
    """When the opt-out (or other entry) happened: its receipt's time, else when it was recorded."""
    return fact_time(row.evidence) or row.created_at


def close(row: Suppression, now: datetime, *, lifted_at: datetime | None, source: str, actor: str, note: str) -> None:
    row.lifted_at = lifted_at or now
    row.lift_source, row.lifted_by, row.lift_reason = source, actor, note


def entry(
    row: Suppression,
    action: str,
    source: str,
    actor: str,
    now: datetime,
    change: Change | None = None,
    note: str = "",
) -> SuppressionChange:
    return SuppressionChange(
        suppression=row,
        action=action,
        source=source,
        actor=actor,
        user=change.user if change else None,
        note=note or (row.lift_reason if action == SuppressionChange.Action.EXPIRED else ""),
        evidence=change.evidence if change else {},
        receipt_key=change.receipt_key if change else "",
        at=now,
    )


# --- telling the CRM ------------------------------------------------------------------------------------


def latest_messages(pairs: Iterable[Pair]) -> dict[Pair, tuple[int, str]]:
    """(message id, crm_record_id) of the latest message to each address: the latest with a CRM record id
    where there is one, else the latest at all."""
    by_channel: dict[str, list[str]] = defaultdict(list)
    for channel, address in sorted(set(pairs)):
        by_channel[channel].append(address)
    best: dict[Pair, tuple[tuple[bool, datetime, int], int, str]] = {}
    for channel, addresses in by_channel.items():
        for chunk in chunked(addresses):
            rows = Message.objects.filter(channel=channel, to__in=chunk).values_list(
                "to", "id", "crm_record_id", "created_at"
            )
            for to, pk, crm_record_id, created_at in rows:
                rank = (bool(crm_record_id), created_at, pk)
                if (channel, to) not in best or rank > best[(channel, to)][0]:
                    best[(channel, to)] = (rank, pk, crm_record_id)
    return {pair: (pk, crm) for pair, (_, pk, crm) in best.items()}


def state_flags(reasons: list[str]) -> dict[str, Any]:
    """What the CRM keeps on its record: may we send, and if not, is it an opt-out, a bounce, a complaint."""
    return {
        "suppressed": bool(reasons),
        "active_reasons": reasons,
        "opted_out": Reason.UNSUBSCRIBE in reasons,
        "bounced": any(r in BOUNCE_REASONS for r in reasons),
        "complained": Reason.COMPLAINT in reasons,
    }


def detail(row: Suppression) -> str:
    """A short reason in words for the CRM (a bounce's SMTP answer, say), addresses masked, 255 characters."""
    evidence = row.evidence or {}
    parts = [str(evidence[k]) for k in ("bounce_type", "additional_info") if evidence.get(k)]
    return mask(": ".join(parts) or row.note or row.reason)[:255]


def announce(result: Result, book: Book, now: datetime) -> None:
    changed = result.announcements
    if not changed:
        return
    latest = latest_messages((row.channel, row.address) for _, row in changed)
    events = []
    for kind, row in changed:
        pair = (row.channel, row.address)
        message_id, crm_record_id = latest.get(pair, (None, ""))
        payload: dict[str, Any] = {
            "suppression_id": row.pk,
            "channel": row.channel,
            "reason": row.reason,
            "source": row.source if kind == Kind.SUPPRESSION_ADDED else row.lift_source,
            "created_at": row.created_at.isoformat(),
            "expires_at": row.expires_at.isoformat() if row.expires_at else None,
            "lifted_at": row.lifted_at.isoformat() if row.lifted_at else None,
            "evidence_message_id": row.message_id,
            "detail": detail(row),
            "address_sha256": address_hash(row.address),
            # The state of the address once this batch of changes is in, every reason counted.
            **state_flags(book.active_reasons(pair, now)),
        }
        if not crm_record_id:
            payload["address"] = row.address  # nothing else to key on
        events.append(DomainEvent(kind, now, payload, message_id=message_id, crm_record_id=crm_record_id))
    publish(events)


# --- one-row wrappers (API, admin) ----------------------------------------------------------------------


class NotActive(Exception):
    """The suppression was already lifted or has expired."""


def suppress(
    channel: str,
    address: str,
    reason: str,
    *,
    source: str,
    actor: str = "",
    user: Any = None,
    note: str = "",
    expires_at: datetime | None = None,
    evidence: dict[str, Any] | None = None,
    message: Message | None = None,
    now: datetime | None = None,
) -> tuple[Suppression, bool]:
    """Add one suppression. Returns it and whether it is new (False: the same reason was already active).
    Raises ValueError for an address that does not normalise or an unknown reason."""
    if reason not in Reason.values:
        raise ValueError(f"unknown reason {reason!r}")
    now = now or timezone.now()
    if expires_at is not None and expires_at <= now:
        raise ValueError("expires_at is in the past")
    change = Add(
        channel=channel,
        address=normalize_address(channel, address),
        reason=reason,
        source=source,
        actor=actor,
        user=user,
        note=note,
        evidence=evidence or {},
        message=message,
        expires_at=expires_at,
    )
    for attempt in range(2):
        try:
            with transaction.atomic():
                result = apply([change], now)
            break
        except IntegrityError:  # a concurrent add of the same reason won the race: read it back
            if attempt:
                raise
    if result.added:
        return result.added[0], True
    existing = result.unchanged[0]
    assert existing is not None
    return existing, False


def lift(
    suppression_id: int,
    *,
    reason: str,
    source: str,
    actor: str = "",
    user: Any = None,
    now: datetime | None = None,
) -> Suppression:
    """Lift one suppression, saying why. Raises Suppression.DoesNotExist, NotActive, or ValueError (no reason)."""
    lifted, _ = lift_many([suppression_id], reason=reason, source=source, actor=actor, user=user, now=now)
    if not lifted:
        row = Suppression.objects.get(pk=suppression_id)
        raise NotActive(f"suppression {row.pk} is not active ({'lifted' if row.lifted_at else 'expired'})")
    return lifted[0]


def lift_many(
    ids: list[int],
    *,
    reason: str,
    source: str,
    actor: str = "",
    user: Any = None,
    now: datetime | None = None,
) -> tuple[list[Suppression], int]:
    """Lift these suppressions. Returns the lifted rows and how many were not active (already lifted/expired)."""
    if not reason.strip():
        raise ValueError("a lift needs a reason")
    now = now or timezone.now()
    with transaction.atomic():
        found = list(for_update(Suppression.objects.filter(pk__in=ids).order_by("id")))
        if len(found) < len(set(ids)) and len(ids) == 1:
            raise Suppression.DoesNotExist(f"no suppression {ids[0]}")
        active = [row for row in found if row.is_active(now)]
        changes: list[Change] = [
            Lift(
                row.channel,
                row.address,
                frozenset({row.reason}),
                source=source,
                actor=actor,
                user=user,
                note=reason.strip(),
                suppression_id=row.pk,
            )
            for row in active
        ]
        result = apply(changes, now)
    return result.lifted, len(found) - len(result.lifted)


# --- checking -------------------------------------------------------------------------------------------


def active_in(channel: str, addresses: list[str], now: datetime) -> dict[str, list[tuple[str, datetime | None]]]:
    """Active (reason, expires_at) per normalised address: an indexed lookup over (channel, address) in chunks.

    Plain SQL on purpose: the ORM spends ~2 us preparing each value of an IN list, more than the lookup itself
    costs. The partial unique index (channel, address, reason) WHERE lifted_at IS NULL serves it. On PostgreSQL
    a chunk travels as one text split by the server (a third faster than adapting a list into an array), unless
    an address holds the separator (normalised ones never do).
    """
    found: dict[str, list[tuple[str, datetime | None]]] = defaultdict(list)
    table = connection.ops.quote_name(Suppression._meta.db_table)
    erasures = connection.ops.quote_name(Erasure._meta.db_table)
    when = connection.ops.adapt_datetimefield_value(now)
    postgres = connection.vendor == "postgresql"
    with connection.cursor() as cursor:
        for chunk in chunked(addresses):
            # An erasure blocks its address by hash (it holds nothing else of it): looked up in the same query.
            digests = {address_digest(channel, a): a for a in chunk}
            params: list[Any]
            if postgres and not any(" " in a for a in chunk):
                matches, erased_in, params = (
                    "= ANY(string_to_array(%s, ' '))",
                    "= ANY(string_to_array(%s, ' '))",
                    [" ".join(chunk), " ".join(digests)],
                )
            elif postgres:
                matches, erased_in, params = "= ANY(%s)", "= ANY(%s)", [chunk, list(digests)]
            else:
                matches = f"IN ({', '.join(['%s'] * len(chunk))})"
                erased_in, params = matches, [*chunk, *digests]
            sql = (
                f"SELECT address, reason, expires_at FROM {table} WHERE channel = %s AND address {matches} "  # noqa: S608 - names from the model, values bound
                "AND lifted_at IS NULL AND (expires_at IS NULL OR expires_at > %s) "
                f"UNION ALL SELECT address_sha256, %s, NULL FROM {erasures} WHERE channel = %s "
                f"AND address_sha256 {erased_in} AND lifted_at IS NULL"
            )
            addressed, hashed = (params[:1], params[1:]) if postgres else (params[: len(chunk)], params[len(chunk) :])
            cursor.execute(sql, [channel, *addressed, when, ERASED, channel, *hashed])
            for address, reason, expires_at in cursor.fetchall():
                if reason == ERASED and address in digests:
                    found[digests[address]].append((ERASED, None))
                else:
                    found[address].append((reason, aware(expires_at)))
    return found


ERASED = "erased"  # an erasure on request blocks the address until an operator allows it again


def erased(channel: str, addresses: list[str]) -> set[str]:
    """Those of the normalised ``addresses`` whose erasure still blocks them."""
    digests = {address_digest(channel, a): a for a in addresses}
    blocked = Erasure.objects.filter(channel=channel, lifted_at=None, address_sha256__in=list(digests))
    return {digests[d] for d in blocked.values_list("address_sha256", flat=True)}


def aware(value: datetime | str | None) -> datetime | None:
    """A datetime column read with plain SQL (SQLite gives naive UTC text)."""
    if value is None or isinstance(value, datetime):
        return value if value is None or value.tzinfo else value.replace(tzinfo=UTC)
    parsed = parse_datetime(value)
    assert parsed is not None
    return parsed if parsed.tzinfo else parsed.replace(tzinfo=UTC)


def check(channel: str, raws: list[str], now: datetime | None = None) -> list[dict[str, Any]]:
    """For each given address, in order: its normal form, whether it is suppressed, and why (or why it is not
    an address at all)."""
    now = now or timezone.now()
    normal: list[str | None] = []
    errors: dict[int, str] = {}
    for i, raw in enumerate(raws):
        try:
            normal.append(normalize_fast(channel, raw))
        except ValueError as exc:
            normal.append(None)
            errors[i] = str(exc)
    found = active_in(channel, sorted({a for a in normal if a}), now)
    results: list[dict[str, Any]] = []
    for i, (raw, address) in enumerate(zip(raws, normal, strict=True)):
        if address is None:
            results.append({"address": raw, "normalized": None, "suppressed": False, "error": errors[i]})
            continue
        hits = found.get(address)
        if not hits:
            results.append({"address": raw, "normalized": address, "suppressed": False})
            continue
        expiries = [e for _, e in hits]
        results.append(
            {
                "address": raw,
                "normalized": address,
                "suppressed": True,
                "reasons": sorted(r for r, _ in hits),
                # The address is mailable again only when every reason is gone: the latest expiry, or never.
                "until": None if None in expiries else max(e for e in expiries if e).isoformat(),
            }
        )
    return results


def is_suppressed(channel: str, address: str, now: datetime | None = None) -> list[str]:
    """The active reasons for one normalised address (empty: not suppressed)."""
    return sorted(r for r, _ in active_in(channel, [address], now or timezone.now()).get(address, []))


# --- soft bounces ---------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Bounce:
    channel: str
    address: str
    receipt_key: str
    at: datetime
    message: Message | None


def count_soft_bounces(bounces: list[Bounce], now: datetime) -> list[Add]:
    """Record soft bounces (each receipt once) and return a suppression for each address that now has
    ``SOFT_BOUNCE_THRESHOLD`` of them within ``SOFT_BOUNCE_WINDOW_DAYS``, whatever order they arrived in."""
    threshold = settings.SOFT_BOUNCE_THRESHOLD
    if not bounces or threshold <= 0:
        return []
    window = settings.SOFT_BOUNCE_WINDOW
    SoftBounce.objects.bulk_create(
        [
            SoftBounce(
                channel=b.channel, address=b.address, receipt_key=b.receipt_key, message=b.message, bounced_at=b.at
            )
            for b in bounces
        ],
        ignore_conflicts=True,
    )
    pairs = {(b.channel, b.address) for b in bounces}
    wanted = Q(pk__in=[])
    for channel in {c for c, _ in pairs}:
        wanted |= Q(channel=channel, address__in=[a for c, a in pairs if c == channel])
    earliest = min(b.at for b in bounces) - window
    latest = max(b.at for b in bounces) + window
    seen: dict[Pair, list[tuple[datetime, str, int | None]]] = defaultdict(list)
    for channel, address, at, key, message_id in (
        SoftBounce.objects.filter(wanted, bounced_at__gte=earliest, bounced_at__lte=latest)
        .order_by("bounced_at", "id")
        .values_list("channel", "address", "bounced_at", "receipt_key", "message_id")
    ):
        seen[(channel, address)].append((at, key, message_id))

    adds: list[Add] = []
    for bounce in bounces:
        pair = (bounce.channel, bounce.address)
        times = seen[pair]
        run = over_threshold(times, bounce.at, threshold, window)
        if run is None or any(a.pair == pair for a in adds):
            continue
        adds.append(
            Add(
                channel=bounce.channel,
                address=bounce.address,
                reason=Reason.SOFT_BOUNCE_THRESHOLD,
                source=Source.RECEIPT,
                actor="receipt",
                note=f"{len(run)} soft bounces within {settings.SOFT_BOUNCE_WINDOW_DAYS:g} days",
                evidence={
                    "soft_bounces": [
                        {"receipt_key": key, "message_id": message_id, "at": at.isoformat()}
                        for at, key, message_id in run
                    ]
                },
                message=bounce.message,
                expires_at=now + settings.SOFT_BOUNCE_SUPPRESS,
                receipt_key=bounce.receipt_key,
            )
        )
    return adds


def over_threshold(
    bounces: list[tuple[datetime, str, int | None]], at: datetime, threshold: int, window: Any
) -> list[tuple[datetime, str, int | None]] | None:
    """The first run of ``threshold`` bounces (sorted by time) spanning at most ``window`` that includes ``at``."""
    for start in range(len(bounces) - threshold + 1):
        run = bounces[start : start + threshold]
        if run[-1][0] - run[0][0] <= window and run[0][0] <= at <= run[-1][0]:
            return run
    return None


# --- expiry ---------------------------------------------------------------------------------------------


def prune_soft_bounces(now: datetime | None = None) -> int:
    """Forget soft bounces too old to count in any window (twice the window: late arrivals still find theirs)."""
    cutoff = (now or timezone.now()) - 2 * settings.SOFT_BOUNCE_WINDOW
    deleted, _ = SoftBounce.objects.filter(bounced_at__lt=cutoff).delete()
    return deleted


def expire_due(now: datetime | None = None, limit: int = 500) -> int:
    """Close suppressions whose time is up (soft-bounce suppressions), with history, and tell the CRM the
    address may be sent to again. Returns how many; call until 0."""
    now = now or timezone.now()
    with transaction.atomic():
        rows = list(for_update(Suppression.objects.expired(now).order_by("expires_at", "id"), skip_locked=True)[:limit])
        if not rows:
            return 0
        book = Book.load({(r.channel, r.address) for r in rows})
        history = []
        for row in rows:
            close(row, now, lifted_at=row.expires_at, source=Source.SYSTEM, actor="system", note="expired")
            book.rows[(row.channel, row.address)].pop(row.reason, None)
            history.append(entry(row, SuppressionChange.Action.EXPIRED, Source.SYSTEM, "system", now))
        Suppression.objects.bulk_update(rows, ["lifted_at", "lifted_by", "lift_source", "lift_reason"])
        SuppressionChange.objects.bulk_create(history)
        announce(Result(lifted=rows, announcements=[(Kind.SUPPRESSION_LIFTED, r) for r in rows]), book, now)
    log.info("%d suppression(s) expired", len(rows))
    return len(rows)


# --- CSV import -----------------------------------------------------------------------------------------

IMPORT_COLUMNS = ["channel", "address", "reason", "note", "expires_at"]


@dataclass
class ImportReport:
    added: int = 0
    already: int = 0
    refused: list[tuple[int, str, dict[str, str]]] = field(default_factory=list)  # (line, why, row)


def parse_expiry(value: str, now: datetime) -> datetime | None:
    value = value.strip()
    if not value:
        return None

    try:
        parsed = parse_time(value if "T" in value or ":" in value else f"{value}T00:00:00")
    except MalformedReceipt as exc:
        raise ValueError(f"expires_at {value!r} is not an ISO 8601 date or time") from exc
    assert parsed is not None
    if parsed <= now:
        raise ValueError(f"expires_at {value} is in the past")
    return parsed


def import_rows(
    rows: Iterable[tuple[int, dict[str, str]]], *, actor: str, user: Any = None, now: datetime | None = None
) -> ImportReport:
    """Add suppressions from (line number, row) pairs; rows that cannot be added are refused with the reason."""
    now = now or timezone.now()
    report = ImportReport()
    changes: list[Add] = []
    seen: dict[tuple[str, str, str], int] = {}
    for line, row in rows:
        try:
            change = import_change(row, now, actor, user)
        except ValueError as exc:
            report.refused.append((line, str(exc), row))
            continue
        key = (change.channel, change.address, change.reason)
        if key in seen:
            report.refused.append((line, f"duplicate of line {seen[key]}", row))
            continue
        seen[key] = line
        changes.append(change)
    for chunk in chunked(changes):
        with transaction.atomic():
            result = apply(list(chunk), now)
        report.added += len(result.added)
        report.already += len(result.unchanged)
    return report


def import_change(row: dict[str, str], now: datetime, actor: str, user: Any) -> Add:
    channel = (row.get("channel") or "").strip().lower()
    if channel not in Channel.values:
        raise ValueError(f"channel must be one of {', '.join(Channel.values)}, got {channel!r}")
    reason = (row.get("reason") or "").strip().lower() or Reason.MANUAL
    if reason not in Reason.values:
        raise ValueError(f"reason must be one of {', '.join(Reason.values)}, got {reason!r}")
    address = normalize_address(channel, row.get("address") or "")
    return Add(
        channel=channel,
        address=address,
        reason=reason,
        source=Source.IMPORT,
        actor=actor,
        user=user,
        note=(row.get("note") or "").strip(),
        expires_at=parse_expiry(row.get("expires_at") or "", now),
        evidence={"import": actor},
    )


def export_rows(queryset: QuerySet[Suppression], now: datetime | None = None) -> Iterator[list[str]]:
    """Rows for a CSV: the import columns first (an export imports again), then the record."""
    now = now or timezone.now()
    yield [*IMPORT_COLUMNS, "id", "source", "active", "created_at", "created_by", "lifted_at", "lifted_by",
           "lift_reason"]  # fmt: skip
    for row in queryset.order_by("id").iterator(chunk_size=2000):
        yield [
            row.channel,
            row.address,
            row.reason,
            spreadsheet_safe(row.note),
            row.expires_at.isoformat() if row.expires_at else "",
            str(row.pk),
            row.source,
            "yes" if row.is_active(now) else "no",
            row.created_at.isoformat(),
            spreadsheet_safe(row.created_by),
            row.lifted_at.isoformat() if row.lifted_at else "",
            spreadsheet_safe(row.lifted_by),
            spreadsheet_safe(row.lift_reason),
        ]


def spreadsheet_safe(text: str) -> str:
    """Free text that a spreadsheet would run as a formula gets a leading quote."""
    return f"'{text}" if text[:1] in ("=", "+", "-", "@", "\t", "\r") else text
