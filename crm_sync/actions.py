"""The only code that writes the outbox: recording changes, relaying them, retrying, pruning.

Recording: ``record_changes`` is the receiver of ``receipts.events.changes``. It runs inside the transaction that
made the change and writes one outbox row per event in one INSERT, so the row commits or rolls back with it.

Relaying (``relay``): one relay at a time holds a lease and works in batches. A batch

1. claims due rows (``SELECT ... FOR UPDATE SKIP LOCKED``), oldest first, and holds back any row with an earlier
   row of its stream that is not done (backing off, in flight, or dead): changes of one stream go out in order;
2. marks the claimed rows in flight (one attempt more, not due again for ``CRM_RELAY_LEASE``) and commits;
3. coalesces them by message and sends them (no transaction is open during the HTTP call);
4. marks them sent, or backs them off (``CRM_RETRY_BASE`` doubling up to ``CRM_RETRY_MAX``, never sooner than a
   ``Retry-After``), or, after ``CRM_MAX_ATTEMPTS``, dead.

While the CRM holds a batch, a heartbeat renews the lease and the rows' in-flight time every quarter lease, so
the lease can be short whatever the CRM's latency. A relay killed between 3 and 4 leaves its rows pending; they
are due again when the lease runs out (``CRM_RELAY_LEASE``, 8 s) and go out again with the same idempotency keys:
a duplicate of one batch at most, never a loss.

A relay that is only stalled (a loaded machine, its heartbeat starved) past its lease is fenced: each taking of the
lease draws a higher token, steps 1 and 4 check it in their transaction (a relay that lost the lease claims and
settles nothing), and the generic batch carries it, so the CRM refuses a batch older than one it has applied.

Time: one relay run reads one clock for every decision (the lease, the pause, due times, backoffs): the time it
is given, or the wall clock.
"""

from __future__ import annotations

import hashlib
import logging
import os
import re
import socket
import threading
import time
import uuid
from collections import defaultdict
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any, cast

from django.conf import settings
from django.db import connection, transaction
from django.db.models import Count, F, Max, Min, Q, QuerySet, Value
from django.db.models.functions import Greatest
from django.utils import timezone

from crm_sync.adapters import get_adapter
from crm_sync.adapters.base import Adapter, Change, Entry, Fence, Result, coalesce
from crm_sync.models import OutboxMessage, OutboxState, RelayLease
from receipts.db import for_update
from receipts.events import DomainEvent

log = logging.getLogger(__name__)

RELAY_LEASE = "relay"

Clock = Callable[[], datetime]


def fixed(at: datetime) -> Clock:
    return lambda: at


# --- recording ------------------------------------------------------------------------------------------


def stream_of(event: DomainEvent) -> str:
    """What a change must stay in order with: its CRM record, else its message, else its address."""
    if event.crm_record_id:
        return f"record:{event.crm_record_id}"
    if event.message_id is not None:
        return f"message:{event.message_id}"
    address = event.payload.get("address") or event.payload.get("to")
    if address:
        digest = hashlib.sha256(f"{event.payload.get('channel', '')}:{address}".encode()).hexdigest()
        return f"address:{digest[:40]}"
    if event.payload.get("address_sha256"):  # suppression changes carry the address hashed
        return f"address:{event.payload.get('channel', '')}:{event.payload['address_sha256'][:40]}"
    return "unkeyed"


def record_changes(events: list[DomainEvent], now: datetime | None = None) -> list[OutboxMessage]:
    """One outbox row per event, in one INSERT, in the caller's transaction."""
    if not events:
        return []
    now = now or timezone.now()
    rows = [
        OutboxMessage(
            kind=event.kind,
            crm_record_id=event.crm_record_id or "",
            message_id=event.message_id,
            stream=stream_of(event)[:300],
            payload=event.payload,
            occurred_at=event.occurred_at or now,
            created_at=now,
            next_attempt_at=now,
        )
        for event in events
    ]
    # The whole list in one statement where the database allows it (SQLite caps the parameters per query).
    return OutboxMessage.objects.bulk_create(rows)


def on_changes(sender: Any, events: list[DomainEvent], **kwargs: Any) -> None:
    record_changes(events)


# --- the lease ------------------------------------------------------------------------------------------


def relay_owner() -> str:
    return f"{socket.gethostname()}:{os.getpid()}:{uuid.uuid4().hex[:8]}"


@dataclass(frozen=True)
class Hold:
    """A relay's hold on the lease: its owner name and the fencing token it drew when it took the lease."""

    owner: str
    token: int

    @property
    def fence(self) -> Fence:
        return Fence(RELAY_LEASE, self.token)

    def held(self) -> QuerySet[RelayLease]:
        return RelayLease.objects.filter(name=RELAY_LEASE, owner=self.owner, token=self.token)

    def renew(self, now: datetime) -> bool:
        """Still held? Renewed to ``now`` + ``CRM_RELAY_LEASE`` if so. On PostgreSQL the lease row stays locked to the
        end of the caller's transaction: no relay takes the lease between this check and that commit."""
        return self.held().update(expires_at=now + settings.CRM_RELAY_LEASE) == 1


def take_lease(owner: str, now: datetime) -> int | None:
    """Take the relay lease, or renew it if ``owner`` holds it: the holder's fencing token, or None while another
    relay holds it. A released lease is free whatever its time says; a held one once its time has run out.

    Each taking draws a token above every token drawn before (and at least the time in milliseconds, so that
    tokens keep rising past a database restored from a backup); a renewal keeps it."""
    if not owner:
        raise ValueError("a lease owner needs a name")
    expires = now + settings.CRM_RELAY_LEASE
    lease = RelayLease.objects.filter(name=RELAY_LEASE)
    if not lease.filter(owner=owner).update(expires_at=expires):
        free = lease.filter(Q(owner="") | Q(expires_at__lte=now))
        token = Greatest(F("token") + 1, Value(int(now.timestamp() * 1000)))
        if not free.update(owner=owner, expires_at=expires, token=token):
            if lease.exists():
                return None
            RelayLease.objects.bulk_create(
                [RelayLease(name=RELAY_LEASE, owner="", expires_at=now)], ignore_conflicts=True
            )
            if not free.update(owner=owner, expires_at=expires, token=token):
                return None
    return lease.filter(owner=owner).values_list("token", flat=True).first()


def release_lease(owner: str, token: int, now: datetime) -> None:
    """Free the lease if this hold still has it (a relay that lost it frees nothing), stamped in the relay's time."""
    Hold(owner, token).held().update(owner="", expires_at=now)


# --- relaying -------------------------------------------------------------------------------------------


@dataclass
class BatchReport:
    due: int = 0  # rows found due
    claimed: int = 0  # of those, rows sent to the CRM
    sent: int = 0
    skipped: int = 0
    failed: int = 0
    dead: int = 0
    held: int = 0  # due, but behind an unfinished earlier change of their stream
    refused: int = 0  # of the claimed rows, those the CRM did not take (backing off or dead now)
    lost: bool = False  # another relay took the lease: this batch claimed or settled nothing
    retry_after: float | None = None  # the longest Retry-After among the failures
    error: str = ""  # the first failure's error

    @property
    def all_failed(self) -> bool:
        return self.claimed > 0 and self.refused == self.claimed


@dataclass
class RelayReport:
    batches: int = 0
    sent: int = 0
    skipped: int = 0
    failed: int = 0
    dead: int = 0
    busy: bool = False  # another relay holds the lease
    paused_until: datetime | None = None  # the CRM refused a whole batch: nothing goes to it before then
    lost: bool = False  # another relay took the lease mid-run (this one was stalled past it) and this one stopped
    errors: list[str] = field(default_factory=list)

    def add(self, batch: BatchReport) -> None:
        self.batches += 1 if batch.due else 0
        self.sent += batch.sent
        self.skipped += batch.skipped
        self.failed += batch.failed
        self.dead += batch.dead


def relay(
    now: datetime | None = None,
    *,
    adapter: Adapter | None = None,
    max_seconds: float | None = None,
    clock: Clock | None = None,
) -> RelayReport:
    """Send due changes in batches until none is due, the CRM fails a whole batch, the time is spent, or another
    relay took the lease.

    Every decision reads one clock: ``now`` fixes it, ``clock`` supplies it (tests), else the wall clock, read
    afresh at each step.
    """
    report = RelayReport()
    clock = clock or (timezone.now if now is None else fixed(now))
    own_adapter = adapter is None
    adapter = adapter or get_adapter()
    if adapter is None:  # CRM_BACKEND=none: the outbox is kept, nothing is sent
        return report
    try:
        owner = relay_owner()
        token = take_lease(owner, clock())
        if token is None:
            report.busy = True
            return report
        try:
            # The heartbeat's thread renews in the clock's time: a fixed time would renew nothing.
            send_batches(Hold(owner, token), adapter, clock, report, heartbeat=now is None, max_seconds=max_seconds)
        finally:
            release_lease(owner, token, clock())
    finally:
        if own_adapter:
            adapter.close()
    return report


def send_batches(
    hold: Hold, adapter: Adapter, clock: Clock, report: RelayReport, *, heartbeat: bool, max_seconds: float | None
) -> None:
    """The body of one relay run, under ``hold``: batch after batch, until one of ``relay``'s reasons to stop."""
    deadline = time.monotonic() + (settings.CRM_RELAY_SECONDS if max_seconds is None else max_seconds)
    lease = RelayLease.objects.get(name=RELAY_LEASE)
    if lease.paused_until is not None and lease.paused_until > clock():
        report.paused_until = lease.paused_until
        return
    while True:
        # After a pause one change goes alone: one probe at a time, not a full batch into a CRM still down.
        batch = relay_batch(adapter, hold, clock, limit=1 if lease.probing else None, heartbeat=heartbeat)
        report.add(batch)
        if batch.lost:
            report.lost = True
            log.warning("relay lease lost to another relay mid-batch; stopping, the batch is the new holder's")
            return
        if (usage := getattr(adapter, "usage", "")) and usage != lease.usage:
            lease.usage = usage[:200]  # Salesforce's Sforce-Limit-Info: api-usage=18/15000
            hold.held().update(usage=lease.usage)
        if batch.all_failed:
            report.paused_until = pause(hold, lease, batch, clock())
            return
        if lease.probing and batch.claimed:
            resume(hold, lease)
        if batch.due == 0 or time.monotonic() >= deadline:
            return


class Heartbeat(threading.Thread):
    """While the CRM holds a batch: renews the relay's lease and the batch's in-flight time every quarter lease.

    So both can be short: a relay that dies mid-send frees its lease and its rows within ``CRM_RELAY_LEASE``, and
    a CRM slower than that never sees a second relay send the same rows while the first still waits. A heartbeat
    starved past the lease (a loaded machine) lets another relay take over: the fence, not the heartbeat, then keeps
    the stalled relay from delivering or settling, and the heartbeat stops at its first beat."""

    def __init__(self, hold: Hold, row_ids: list[int], clock: Clock) -> None:
        super().__init__(name="crm-relay-heartbeat", daemon=True)
        self.hold, self.row_ids, self.clock = hold, row_ids, clock
        self.done = threading.Event()

    def run(self) -> None:
        interval = max(settings.CRM_RELAY_LEASE.total_seconds() / 4, 0.25)
        try:
            while not self.done.wait(interval):
                if not self.beat():
                    log.warning("relay heartbeat: the lease is another relay's now; stopping")
                    return
        except Exception as exc:  # the database away: the lease runs out, and the rows go again after it
            log.warning("relay heartbeat stopped: %s", type(exc).__name__)
        finally:
            connection.close()

    def beat(self) -> bool:
        """Renew the lease and, only while it is still this relay's, the rows in flight."""
        now = self.clock()
        with transaction.atomic():
            if not self.hold.renew(now):
                return False
            pending = OutboxMessage.objects.pending().filter(pk__in=self.row_ids)
            pending.update(next_attempt_at=now + settings.CRM_RELAY_LEASE)
        return True

    def finish(self) -> None:
        self.done.set()
        self.join(timeout=30)


def pause(hold: Hold, lease: RelayLease, batch: BatchReport, now: datetime) -> datetime | None:
    """The CRM refused a whole batch: send it nothing until its Retry-After, or a backoff that doubles with each
    refusal in a row (``CRM_RETRY_BASE`` up to ``CRM_RETRY_MAX``), whichever is later. None if the lease is another
    relay's by now: the pause is the holder's to decide."""
    delay = backoff(lease.failures + 1)
    if batch.retry_after is not None:
        delay = max(delay, timedelta(seconds=min(batch.retry_after, 86400)))
    reason = batch.error[:500]
    if not hold.held().update(failures=lease.failures + 1, paused_until=now + delay, pause_reason=reason):
        return None
    lease.failures, lease.paused_until, lease.pause_reason = lease.failures + 1, now + delay, reason
    log.warning(
        "CRM refused a whole batch (%s); sending paused for %.0f s, then one change as a probe",
        lease.pause_reason[:200],
        delay.total_seconds(),
    )
    return lease.paused_until


def resume(hold: Hold, lease: RelayLease) -> None:
    log.info("CRM answered the probe; sending resumes after %d refused batches", lease.failures)
    lease.failures, lease.paused_until, lease.pause_reason = 0, None, ""
    hold.held().update(failures=0, paused_until=None, pause_reason="")


def relay_batch(
    adapter: Adapter, hold: Hold, clock: Clock = timezone.now, limit: int | None = None, heartbeat: bool = False
) -> BatchReport:
    """Claim, send and settle one batch (of ``limit`` changes at most, else ``CRM_BATCH_SIZE``) under ``hold``, in
    ``clock``'s time. With ``heartbeat`` the lease is kept alive on a thread of its own during the send."""
    report = BatchReport()
    rows = claim(clock(), report, limit or settings.CRM_BATCH_SIZE, hold)
    if not rows:
        return report
    changes = [
        Change(
            r.pk,
            cast(int, r.sequence),  # claim numbered every row it returns
            r.idempotency_key,
            r.kind,
            r.crm_record_id,
            r.message_id,
            r.stream,
            r.occurred_at,
            r.payload,
        )
        for r in rows
    ]
    entries = coalesce(changes)
    beating = Heartbeat(hold, [r.pk for r in rows], clock) if heartbeat else None
    if beating:
        beating.start()
    try:
        results = adapter.send(entries, hold.fence)
    except Exception as exc:  # a bug in an adapter must not leave the rows in flight until the lease runs out
        log.exception("CRM adapter %s raised", adapter.name)
        results = [Result.failed(f"{type(exc).__name__}: {exc}")] * len(entries)
    finally:
        if beating:
            beating.finish()
    settle(entries, results, {r.pk: r.attempts for r in rows}, clock(), report, hold)
    return report


def claim(now: datetime, report: BatchReport, limit: int, hold: Hold) -> list[OutboxMessage]:
    """Due rows that may go now, marked in flight. Rows behind an unfinished change of their stream wait. Nothing
    if ``hold`` lost the lease (``report.lost``)."""
    with transaction.atomic():
        # First, and locked to the commit: the rows are claimed, numbered and put in flight under this lease only.
        if not hold.renew(now):
            report.lost = True
            return []
        # Rows claimed before (backing off, due again) keep their place; new ones follow in the order they became
        # visible, which is the order they get their sequence numbers in.
        due = OutboxMessage.objects.due(now).order_by(F("sequence").asc(nulls_last=True), "id")
        rows = list(for_update(due, skip_locked=True)[:limit])
        if not rows:
            return []
        report.due = len(rows)
        number(rows)
        streams = {r.stream for r in rows}
        # Every unfinished row was claimed before (only claimed rows back off or die): it has a sequence number,
        # and rows of its stream with a higher one wait behind it.
        unfinished = Q(state=OutboxState.DEAD) | Q(state=OutboxState.PENDING, next_attempt_at__gt=now)
        blockers = {
            b["stream"]: b
            for b in OutboxMessage.objects.filter(unfinished, stream__in=streams, sequence__lt=rows[-1].sequence)
            .values("stream")
            .annotate(
                first=Min("sequence"),
                dead=Min("sequence", filter=Q(state=OutboxState.DEAD)),
                dead_id=Min("id", filter=Q(state=OutboxState.DEAD)),
                until=Max("next_attempt_at", filter=Q(state=OutboxState.PENDING)),
            )
        }
        ready: list[OutboxMessage] = []
        wait: dict[datetime, list[int]] = defaultdict(list)
        held: dict[int, list[int]] = defaultdict(list)
        for row in rows:
            blocker = blockers.get(row.stream)
            if blocker is None or row.sequence < blocker["first"]:
                ready.append(row)
            elif blocker["dead"] is not None and row.sequence > blocker["dead"]:
                held[blocker["dead_id"]].append(row.pk)
            else:
                wait[blocker["until"]].append(row.pk)
        for until, ids in wait.items():
            OutboxMessage.objects.filter(pk__in=ids).update(next_attempt_at=until)
        for dead_id, ids in held.items():
            OutboxMessage.objects.filter(pk__in=ids).update(
                state=OutboxState.DEAD, last_error=f"held behind dead change #{dead_id} of the same stream"
            )
        report.held = sum(len(ids) for ids in wait.values()) + sum(len(ids) for ids in held.values())
        report.dead += sum(len(ids) for ids in held.values())
        report.claimed = len(ready)
        if ready:
            OutboxMessage.objects.filter(pk__in=[r.pk for r in ready]).update(
                attempts=F("attempts") + 1, next_attempt_at=now + settings.CRM_RELAY_LEASE
            )
            for row in ready:
                row.attempts += 1
    return ready


def number(rows: list[OutboxMessage]) -> None:
    """Give the rows claimed for the first time their sequence numbers, in claim order, after every number given
    so far. The caller holds the rows locked, and one relay at a time claims (the lease)."""
    new = [row for row in rows if row.sequence is None]
    if not new:
        return
    last = OutboxMessage.objects.aggregate(last=Max("sequence"))["last"] or 0
    for offset, row in enumerate(new, start=1):
        row.sequence = last + offset
    OutboxMessage.objects.bulk_update(new, ["sequence"])


def backoff(attempts: int) -> timedelta:
    return min(settings.CRM_RETRY_BASE * 2 ** max(attempts - 1, 0), settings.CRM_RETRY_MAX)


def settle(
    entries: list[Entry],
    results: list[Result],
    attempts: dict[int, int],
    now: datetime,
    report: BatchReport,
    hold: Hold,
) -> None:
    """Write what became of each entry: sent, skipped, backed off or dead; nothing at all if ``hold`` lost the lease
    meanwhile (``report.lost``): its rows are the new holder's, who sends them again with the same keys."""
    sent: list[int] = []
    skipped: dict[str, list[int]] = defaultdict(list)
    failed: dict[tuple[str, datetime | None, str], list[int]] = defaultdict(list)
    deaths: list[tuple[Any, ...]] = []  # logged once written: a relay that lost its lease kills nothing
    for entry, result in zip(entries, results, strict=True):
        ids = entry.row_ids
        if result.skipped:
            skipped[result.error].extend(ids)
        elif result.ok:
            sent.extend(ids)
        elif result.permanent:
            failed[(OutboxState.DEAD, None, result.error)].extend(ids)
            deaths.append(("CRM refused changes %s for good: %s", ids, result.error))
        elif max(attempts[i] for i in ids) >= settings.CRM_MAX_ATTEMPTS:
            # The whole entry dies together: its later changes would only be held behind the first.
            failed[(OutboxState.DEAD, None, result.error)].extend(ids)
            attempted = max(attempts[i] for i in ids)
            deaths.append(("CRM changes %s are dead after %d attempts: %s", ids, attempted, result.error))
        else:
            for i in ids:
                delay = backoff(attempts[i])
                if result.retry_after is not None:
                    delay = max(delay, timedelta(seconds=min(result.retry_after, 86400)))
                failed[(OutboxState.PENDING, now + delay, result.error)].append(i)
    pending = OutboxMessage.objects.pending()
    with transaction.atomic():
        # The fence, checked and locked in the transaction that marks rows sent: a relay stalled past its lease
        # must not undo or pre-empt what the holder does with these rows.
        if not hold.renew(now):
            report.lost = True
            log.warning("CRM batch of %d changes not settled: the relay lost its lease while it was out", len(attempts))
            return
        if sent:
            pending.filter(pk__in=sent).update(state=OutboxState.SENT, sent_at=now, last_error="")
        for reason, ids in skipped.items():
            pending.filter(pk__in=ids).update(state=OutboxState.SKIPPED, sent_at=now, last_error=reason)
        for (state, next_at, error), ids in failed.items():
            update: dict[str, Any] = {"state": state, "last_error": error}
            if next_at is not None:
                update["next_attempt_at"] = next_at
            pending.filter(pk__in=ids).update(**update)
    for death in deaths:
        log.error(*death)
    report.sent = len(sent)
    report.skipped = sum(len(ids) for ids in skipped.values())
    report.dead += sum(len(ids) for (state, _, _), ids in failed.items() if state == OutboxState.DEAD)
    report.failed = sum(len(ids) for (state, _, _), ids in failed.items() if state == OutboxState.PENDING)
    # What says the CRM is unwell: changes it did not take for a passing reason (a permanent refusal is about the
    # change, not the CRM).
    refusals = [(e, r) for e, r in zip(entries, results, strict=True) if not r.ok and not r.permanent]
    report.refused = sum(len(entry.row_ids) for entry, _ in refusals)
    if refusals:
        report.error = refusals[0][1].error
        waits = [result.retry_after for _, result in refusals if result.retry_after is not None]
        report.retry_after = max(waits) if waits else None
    if report.failed:
        log.warning("CRM batch: %d changes failed and back off: %s", report.failed, next(iter(failed))[2][:200])


# --- operators ------------------------------------------------------------------------------------------


def retry(rows: Any, now: datetime | None = None) -> int:
    """Send the chosen changes again now: dead ones (with the changes held behind them) and backing-off ones."""
    now = now or timezone.now()
    with transaction.atomic():
        chosen = list(rows.filter(state__in=[OutboxState.DEAD, OutboxState.PENDING]).values_list("id", "stream"))
        if not chosen:
            return 0
        first_in_stream: dict[str, int] = {}
        for pk, stream in chosen:
            first_in_stream[stream] = min(pk, first_in_stream.get(stream, pk))
        behind = Q(pk__in=[pk for pk, _ in chosen])
        for stream, first in first_in_stream.items():
            behind |= Q(stream=stream, pk__gt=first)
        return (
            OutboxMessage.objects.filter(behind, state__in=[OutboxState.DEAD, OutboxState.PENDING])
            .filter(Q(state=OutboxState.DEAD) | Q(next_attempt_at__gt=now))
            .update(state=OutboxState.PENDING, attempts=0, next_attempt_at=now, last_error="")
        )


@dataclass(frozen=True)
class OutboxSummary:
    backend: str
    backlog: int  # pending, due or not
    due: int
    dead: int
    oldest_pending_at: datetime | None
    oldest_due_at: datetime | None
    now: datetime
    paused_until: datetime | None = None  # the CRM refused a whole batch: nothing is sent before then
    pause_reason: str = ""
    refused_batches: int = 0  # whole batches refused in a row; the next one is a single change (a probe)
    usage: str = ""  # the CRM's last word on its API limit (Salesforce: api-usage=18/15000)

    @property
    def api_usage(self) -> tuple[int, int] | None:
        """(used, limit) from Salesforce's ``api-usage=used/limit``."""
        match = re.search(r"api-usage=(\d+)/(\d+)", self.usage)
        return (int(match[1]), int(match[2])) if match else None

    @property
    def paused(self) -> bool:
        return self.paused_until is not None and self.paused_until > self.now

    @property
    def pause_left(self) -> timedelta:
        return self.paused_until - self.now if self.paused_until and self.paused else timedelta(0)

    @property
    def pushing(self) -> bool:
        """A CRM is configured to push to. With ``CRM_BACKEND=none`` the pending rows are the change feed's, and
        nothing waits for a relay: they are no backlog, no lag, nothing to alert on."""
        return self.backend != "none"

    @property
    def lag(self) -> timedelta | None:
        """How long the oldest change not yet sent has waited (None: none waits, or nothing is pushed)."""
        return self.now - self.oldest_pending_at if self.oldest_pending_at and self.pushing else None

    @property
    def due_lag(self) -> timedelta | None:
        return self.now - self.oldest_due_at if self.oldest_due_at and self.pushing else None


def summary(now: datetime | None = None) -> OutboxSummary:
    now = now or timezone.now()
    pending = OutboxMessage.objects.pending()
    totals = pending.aggregate(backlog=Count("id"), oldest=Min("created_at"))
    due = OutboxMessage.objects.due(now).aggregate(count=Count("id"), oldest=Min("created_at"))
    lease = RelayLease.objects.filter(name=RELAY_LEASE).first()
    return OutboxSummary(
        backend=settings.CRM_BACKEND,
        backlog=totals["backlog"],
        due=due["count"],
        dead=OutboxMessage.objects.dead().count(),
        oldest_pending_at=totals["oldest"],
        oldest_due_at=due["oldest"],
        now=now,
        paused_until=lease.paused_until if lease else None,
        pause_reason=lease.pause_reason if lease else "",
        refused_batches=lease.failures if lease else 0,
        usage=lease.usage if lease else "",
    )


def prune(now: datetime | None = None, chunk: int = 10000) -> int:
    """Delete sent and skipped changes older than ``CRM_OUTBOX_RETENTION_DAYS`` (0 keeps everything)."""
    if settings.CRM_OUTBOX_RETENTION_DAYS <= 0:
        return 0
    cutoff = (now or timezone.now()) - timedelta(days=settings.CRM_OUTBOX_RETENTION_DAYS)
    total = 0
    while True:
        ids = list(
            OutboxMessage.objects.filter(state__in=[OutboxState.SENT, OutboxState.SKIPPED], created_at__lt=cutoff)
            .order_by("id")
            .values_list("id", flat=True)[:chunk]
        )
        if not ids:
            return total
        # Their feed entries go with them; count the changes only.
        total += OutboxMessage.objects.filter(pk__in=ids).delete()[1].get(OutboxMessage._meta.label, 0)
