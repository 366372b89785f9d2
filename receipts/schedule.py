"""When a message is polled on its own (the high-priority polling tier): a rule, pure like the status machine.

A message of a pollable provider with priority critical or high is first polled ``POLL_FIRST_DELAY`` after it
is registered (or sent), then 20 s, 40 s and every 60 s after (``POLL_BACKOFF``, ``POLL_MAX_DELAY``), until it is
final or ``POLL_HIGH_MAX_AGE`` old; from then on the bulk tier covers it. ``None`` means: not polled on its own.
"""

from __future__ import annotations

from datetime import datetime, timedelta

from django.conf import settings
from django.utils import timezone

from receipts.models import Message, Priority
from receipts.status import Provider, is_final

POLLABLE = frozenset({Provider.GENESYS_CLOUD})


HIGH_TIER = frozenset({Priority.CRITICAL, Priority.HIGH})


def first_poll_at(provider: str, priority: str, at: datetime | None = None) -> datetime | None:
    """When a newly registered (or sent) message is first polled on its own; None: the bulk tier covers it."""
    if provider not in POLLABLE or priority not in HIGH_TIER:
        return None
    return (at or timezone.now()) + settings.POLL_FIRST_DELAY


def delay_after(poll_count: int) -> timedelta:
    """The wait after the poll numbered ``poll_count`` (0 for the first): 20 s, 40 s, then 60 s for ever."""
    first = settings.POLL_FIRST_DELAY.total_seconds()
    seconds = min(first * settings.POLL_BACKOFF ** (poll_count + 1), settings.POLL_MAX_DELAY.total_seconds())
    return timedelta(seconds=seconds)


def next_poll(message: Message, now: datetime) -> datetime | None:
    if is_final(message.status):
        return None  # an operator's "poll again": one look, then done
    started = message.sent_at or message.created_at
    if now - started >= settings.POLL_HIGH_MAX_AGE:
        return None  # from now on the bulk reconciliation covers it
    return now + delay_after(message.poll_count)
