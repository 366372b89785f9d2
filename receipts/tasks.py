"""Every Celery task of the receipts app. Beat runs most of them (``CELERY_BEAT_SCHEDULE`` in config/settings.py);
the web process asks for ``drain_inbox`` and ``poll_messages`` by name (``receipts.kicks``).

Each takes ids or nothing, re-reads its rows, claims its work in the database (a conditional update or SKIP
LOCKED), and can run twice, or in several workers at once, without harm. Names are explicit; each task also
answers to the name it had before the tasks were gathered here, so that a message queued by an older release
still runs after an upgrade.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from typing import Any

from celery import shared_task
from django.conf import settings
from django.utils import timezone

from receipts import kicks, polling, tallies
from receipts.actions import escalation, ingest, process, retention, retries, review, rollups, suppression
from receipts.models import ReceiptEvent
from receipts.providers.genesys_cloud.client import Config, GenesysCloudClient, client

log = logging.getLogger(__name__)

DEFAULTS: dict[str, Any] = {"acks_late": True, "reject_on_worker_lost": True, "time_limit": 120, "soft_time_limit": 100}


def task(name: str, *, formerly: str | None = None, **options: Any) -> Callable[[Callable[..., Any]], Any]:
    """A shared task named ``name``, registered under its former name ``formerly`` too (a task born with its
    name has none)."""

    def register(function: Callable[..., Any]) -> Any:
        if formerly:
            shared_task(name=formerly, **{**DEFAULTS, **options})(function)
        return shared_task(name=name, **{**DEFAULTS, **options})(function)

    return register


# --- the inbox ------------------------------------------------------------------------------------------


@task("receipts.drain_inbox", formerly="receipts.tasks.drain_inbox")
def drain_inbox() -> int:
    """Process due inbox rows in batches until none are left or the time budget is spent."""
    kicks.drain_started()
    deadline = time.monotonic() + settings.INBOX_DRAIN_SECONDS
    total = 0
    while time.monotonic() < deadline:
        claimed = process.process_due()
        total += claimed
        if claimed == 0:
            return total
        if claimed < settings.INBOX_BATCH_SIZE // 4 and settings.INBOX_LINGER > 0:
            # Receipts are arriving a few at a time: let them gather. A batch's fixed cost (claim, lock the
            # messages, write, commit) then spreads over more rows.
            time.sleep(settings.INBOX_LINGER)
    # More is waiting: hand over to a fresh task (unless one is already queued) rather than hold this worker past
    # its limit, and let what waits in the other queues have the worker in between.
    kicks.kick_now()
    return total


@task("receipts.sweep_inbox", formerly="receipts.tasks.sweep_inbox")
def sweep_inbox() -> int:
    """Beat: the safety net. Finds rows no kick reached (broker down, worker killed) and runs orphan upkeep."""
    now = timezone.now()
    rematched = ingest.rematch_orphans()
    expired = ingest.expire_orphans(now)
    if rematched or expired:
        log.info("orphans: %d matched, %d unmatched after the window", rematched, expired)
    if ReceiptEvent.objects.due(now).exists():
        return drain_inbox()
    return 0


@task("receipts.prune_inbox", time_limit=600, soft_time_limit=550)
def prune_inbox() -> int:
    """Beat, hourly: processed raw bodies older than INBOX_RETENTION_DAYS go (their facts stay on the timeline)."""
    deleted = ingest.prune_inbox()
    if deleted:
        log.info("inbox: %d processed row(s) older than %d days deleted", deleted, settings.INBOX_RETENTION_DAYS)
    return deleted


@task("receipts.prune_messages", time_limit=3600, soft_time_limit=3500)
def prune_messages() -> int:
    """Beat, hourly: messages older than MESSAGE_RETENTION_DAYS go, with their timelines, in batches."""
    deleted = retention.prune_messages()
    if deleted:
        log.info("retention: %d message(s) older than %d days deleted", deleted, settings.MESSAGE_RETENTION_DAYS)
    return deleted


@task("receipts.refresh_rollups", time_limit=3600, soft_time_limit=3500)
def refresh_rollups() -> int:
    """Beat, every ROLLUP_INTERVAL: count again the hours whose messages changed (the dashboard's rollups), and
    fold the deltas of the counts the database keeps (receipts.tallies) into one row per key."""
    tallies.compact()
    return rollups.refresh() or 0  # None: another refresh holds the lease


@task("receipts.expire_receipts", formerly="receipts.tasks.expire_receipts")
def expire_receipts() -> int:
    """Beat: messages with no final receipt within RECEIPT_TIMEOUT become assumed delivered, for review."""
    total = 0
    while count := review.expire_receipts():
        total += count
    return total


# --- polling (receipts.polling) ---------------------------------------------------------------------------

TICK_BUDGET = 20.0  # seconds one high-priority tick keeps claiming batches


def configured_client() -> GenesysCloudClient | None:
    if not Config.from_settings().configured:
        log.debug("Genesys Cloud credentials are not set; nothing to poll")
        return None
    return client()


POLL_LIMITS = {"time_limit": 90, "soft_time_limit": 75}


@task("receipts.poll_high_priority", formerly="receipts.polling_tasks.poll_high_priority", **POLL_LIMITS)
def poll_high_priority() -> int:
    """Beat: poll the high-priority messages that are due, batch after batch, for up to ``TICK_BUDGET`` s."""
    genesys = configured_client()
    if genesys is None:
        return 0
    deadline = time.monotonic() + TICK_BUDGET
    polled = 0
    while time.monotonic() < deadline:
        result = polling.poll_due(genesys, timezone.now())
        polled += result.polled
        if result.stopped or result.claimed < settings.POLL_BATCH_SIZE:
            break
    return polled


@task("receipts.poll_messages", formerly="receipts.polling_tasks.poll_messages", **POLL_LIMITS)
def poll_messages(message_ids: list[int]) -> int:
    """Poll these messages now (an operator's "poll again"); each must have ``next_poll_at`` set."""
    genesys = configured_client()
    if genesys is None:
        return 0
    return polling.poll_due(genesys, timezone.now(), limit=len(message_ids), ids=list(message_ids)).polled


def reconcile_time_limit() -> int:
    return int(settings.POLL_ANALYTICS_JOB_TIMEOUT + 120)


@task(
    "receipts.reconcile_bulk",
    formerly="receipts.polling_tasks.reconcile_bulk",
    time_limit=reconcile_time_limit(),
    soft_time_limit=reconcile_time_limit() - 15,
)
def reconcile_bulk() -> int:
    """Beat: one bulk reconciliation round, unless another is still running somewhere."""
    genesys = configured_client()
    if genesys is None:
        return 0
    with genesys.limits.exclusive("reconcile", ttl=reconcile_time_limit()) as mine:
        if not mine:
            log.info("a bulk reconciliation is already running; skipping this round")
            return 0
        return polling.reconcile(genesys, timezone.now()).answered


# --- retries, escalations, suppressions ----------------------------------------------------------------


@task("receipts.send_retry", formerly="receipts.policy_tasks.send_retry")
def send_retry(retry_id: int) -> str:
    """Send one due retry (at most once: a second run finds it claimed and returns)."""
    return retries.send_retry(retry_id)


@task("receipts.dispatch_retries", formerly="receipts.policy_tasks.dispatch_retries")
def dispatch_retries() -> int:
    """Beat: queue a send for every due retry; mark sends whose worker died as failed (never sent twice)."""
    now = timezone.now()
    retries.fail_stale_sends(now)
    due = retries.due_retries(now)
    for retry_id in due:
        send_retry.delay(retry_id)
    return len(due)


@task("receipts.raise_escalations", formerly="receipts.policy_tasks.raise_escalations")
def raise_escalations() -> int:
    """Beat: critical messages not delivered within FALLBACK_AFTER raise an escalation, once."""
    total = 0
    while count := escalation.raise_escalations():
        total += count
    return total


@task("receipts.expire_suppressions", formerly="receipts.policy_tasks.expire_suppressions")
def expire_suppressions() -> int:
    """Beat: close suppressions whose time is up (soft-bounce ones) and tell the CRM; forget old soft bounces."""
    total = 0
    while count := suppression.expire_due():
        total += count
    suppression.prune_soft_bounces()
    return total
