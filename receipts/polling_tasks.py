"""Celery tasks for the polling tiers (receipts/polling.py). Beat runs the first and the last; the review queue's
"poll again" queues ``poll_messages``. Each is safe to run twice and in several workers at once: messages are
claimed in the database, and one bulk reconciliation runs at a time (a lock in the shared limits store)."""

from __future__ import annotations

import logging
import time

from celery import shared_task
from django.conf import settings
from django.utils import timezone

from receipts import polling
from receipts.providers.genesys_cloud_client import Config, GenesysCloudClient, client

log = logging.getLogger(__name__)

TICK_BUDGET = 20.0  # seconds one high-priority tick keeps claiming batches


def configured_client() -> GenesysCloudClient | None:
    if not Config.from_settings().configured:
        log.debug("Genesys Cloud credentials are not set; nothing to poll")
        return None
    return client()


@shared_task(acks_late=True, reject_on_worker_lost=True, time_limit=90, soft_time_limit=75)
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


@shared_task(acks_late=True, reject_on_worker_lost=True, time_limit=90, soft_time_limit=75)
def poll_messages(message_ids: list[int]) -> int:
    """Poll these messages now (an operator's "poll again"); each must have ``next_poll_at`` set."""
    genesys = configured_client()
    if genesys is None:
        return 0
    return polling.poll_due(genesys, timezone.now(), limit=len(message_ids), ids=list(message_ids)).polled


def reconcile_time_limit() -> int:
    return int(settings.POLL_ANALYTICS_JOB_TIMEOUT + 120)


@shared_task(
    acks_late=True,
    reject_on_worker_lost=True,
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
