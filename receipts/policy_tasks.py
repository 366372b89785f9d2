"""Celery tasks of the suppression list, the retry policy and escalations (listed in CELERY_IMPORTS).

Each takes ids or nothing, re-reads its rows, claims its work with a conditional update or SKIP LOCKED, and can
run twice without harm.
"""

from __future__ import annotations

import logging

from celery import shared_task
from django.utils import timezone

from receipts import escalation, sending, suppression

log = logging.getLogger(__name__)


@shared_task(acks_late=True, reject_on_worker_lost=True, time_limit=120, soft_time_limit=100)
def send_retry(retry_id: int) -> str:
    """Send one due retry (at most once: a second run finds it claimed and returns)."""
    return sending.send_retry(retry_id)


@shared_task(acks_late=True, reject_on_worker_lost=True, time_limit=120, soft_time_limit=100)
def dispatch_retries() -> int:
    """Beat: queue a send for every due retry; mark sends whose worker died as failed (never sent twice)."""
    now = timezone.now()
    sending.fail_stale_sends(now)
    due = sending.due_retries(now)
    for retry_id in due:
        send_retry.delay(retry_id)
    return len(due)


@shared_task(acks_late=True, reject_on_worker_lost=True, time_limit=120, soft_time_limit=100)
def raise_escalations() -> int:
    """Beat: critical messages not delivered within FALLBACK_AFTER raise an escalation, once."""
    total = 0
    while count := escalation.raise_escalations():
        total += count
    return total


@shared_task(acks_late=True, reject_on_worker_lost=True, time_limit=120, soft_time_limit=100)
def expire_suppressions() -> int:
    """Beat: close suppressions whose time is up (soft-bounce ones) and tell the CRM; forget old soft bounces."""
    total = 0
    while count := suppression.expire_due():
        total += count
    suppression.prune_soft_bounces()
    return total
