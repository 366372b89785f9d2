"""Asking a worker to drain the inbox, from a web process, without ever holding up a webhook.

The inbox row is already committed when this runs; the kick only shortens the wait. The request thread only
sets a flag: one background thread per process publishes the task, at most once per ``INBOX_KICK_DEBOUNCE``.
With the broker down a publish can take seconds (the client's connect retries), so it must never happen on
the request thread; the periodic sweeper picks the rows up instead, and the kicker pauses before retrying.
"""

from __future__ import annotations

import logging
import os
import threading
import time

from django.conf import settings

log = logging.getLogger(__name__)

BROKER_DOWN_PAUSE = 5.0

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
    """Publish one drain task; answers how long to wait before the next."""
    from receipts.tasks import drain_inbox

    try:
        drain_inbox.apply_async(retry=False)
    except Exception as exc:
        log.warning("broker unreachable (%s); the inbox sweeper will pick the receipts up", type(exc).__name__)
        return BROKER_DOWN_PAUSE
    return settings.INBOX_KICK_DEBOUNCE
