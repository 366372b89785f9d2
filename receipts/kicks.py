"""Asking the workers for work now, by task name: drain the inbox, poll these messages.

Writers (``receipts.actions``) call these after their commit; the tasks themselves live in ``receipts.tasks``,
which imports the actions, so the request goes by the task's name and this module imports no task.

Draining the inbox, from a web process, must never hold up a webhook.

The inbox row is already committed when this runs; the kick only shortens the wait. The request thread only
sets a flag: one background thread per process publishes the task, at most once per ``INBOX_KICK_DEBOUNCE``, and
only while no drain is already waiting for a worker (a marker in the cache, shared by every process when the
cache is Redis, per process in the embedded mode): the queue never holds a pile of drains that would each find
the inbox empty, while the work behind them waits.
With the broker down a publish can take seconds (the client's connect retries), so it must never happen on
the request thread; the periodic sweeper picks the rows up instead, and the kicker pauses before retrying.
"""

from __future__ import annotations

import logging
import os
import threading
import time

from celery import current_app
from django.conf import settings
from django.core.cache import cache

log = logging.getLogger(__name__)

BROKER_DOWN_PAUSE = 5.0
# A drain waiting for a worker holds this; it lapses in case the task is lost (a broker restart), and the
# sweeper (beat, every SWEEP_INTERVAL) drains meanwhile.
DRAIN_PENDING = "receipts:drain-pending:{queue}"  # per deployment: several can share one Redis
DRAIN_PENDING_TTL = 60
DRAIN_INBOX = "receipts.drain_inbox"
POLL_MESSAGES = "receipts.poll_messages"

_wanted = threading.Event()
_lock = threading.Lock()
_owner_pid: int | None = None


def request_drain() -> None:
    _ensure_kicker()
    _wanted.set()


def _ensure_kicker() -> None:
    global _owner_pid
    if _owner_pid == os.getpid():
        return
    with _lock:
        if _owner_pid != os.getpid():  # also after a fork: threads do not survive it
            threading.Thread(target=_kick_forever, name="inbox-kicker", daemon=True).start()
            _owner_pid = os.getpid()


def _kick_forever() -> None:
    while True:
        _wanted.wait()
        _wanted.clear()
        pause = kick_now()
        time.sleep(pause)


def kick_now() -> float:
    """Publish one drain task unless one is already waiting for a worker; answers how long to wait before the
    next kick."""
    if not _mark_pending():
        return settings.INBOX_KICK_DEBOUNCE
    try:
        current_app.send_task(DRAIN_INBOX, retry=False)
    except Exception as exc:
        drain_started()  # nothing is waiting after all
        log.warning("broker unreachable (%s); the inbox sweeper will pick the receipts up", type(exc).__name__)
        return BROKER_DOWN_PAUSE
    return settings.INBOX_KICK_DEBOUNCE


def _pending_key() -> str:
    return DRAIN_PENDING.format(queue=settings.CELERY_QUEUE)


def drain_started() -> None:
    """A drain has begun: rows that arrive from now on need the next one."""
    try:
        cache.delete(_pending_key())
    except Exception as exc:  # the cache (Redis) down: the marker lapses by itself
        log.warning("could not clear the pending drain (%s)", type(exc).__name__)


def _mark_pending() -> bool:
    """True if this kick should publish: no drain was waiting (or the cache cannot tell)."""
    try:
        return bool(cache.add(_pending_key(), os.getpid(), timeout=DRAIN_PENDING_TTL))
    except Exception as exc:
        log.warning("could not check for a pending drain (%s); publishing anyway", type(exc).__name__)
        return True


def request_poll(message_ids: list[int]) -> None:
    """Ask the poller to look at these messages now (it picks up their ``next_poll_at``; the beat tier does too,
    should this publish fail)."""
    try:
        current_app.send_task(POLL_MESSAGES, args=[message_ids], retry=False)
    except Exception as exc:
        log.warning("could not queue the poll (%s); the beat tier will pick it up", type(exc).__name__)
