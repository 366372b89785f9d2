"""Celery beat stops on SIGTERM or SIGINT (what supervisord sends on Ctrl-C) between two ticks. Celery's own
handler raised SystemExit wherever the signal landed; landing inside a publish to Redis it became "Couldn't apply
scheduled task" and an exit status of 1 on an ordinary stop (seen once in CI)."""

from __future__ import annotations

import signal
from typing import Any

import pytest
from celery import platforms
from celery.beat import Service

from config.celery import app


@pytest.mark.parametrize("signum", [signal.SIGTERM, signal.SIGINT])
def test_the_stop_signal_asks_the_loop_to_end_and_interrupts_nothing(signum: int, tmp_path: Any) -> None:
    beat = app.Beat(schedule=str(tmp_path / "schedule"), quiet=True)
    service = Service(app=app, schedule_filename=str(tmp_path / "schedule"))
    saved = {name: platforms.signals[name] for name in ("SIGTERM", "SIGINT")}
    try:
        beat.install_sync_handler(service)
        handler = signal.getsignal(signum)
        assert callable(handler)

        handler(signum, None)  # as if it landed in the middle of a publish: it must not raise there

        assert service._is_shutdown.is_set()
    finally:
        platforms.signals.update(**saved)


def test_beat_stops_at_once_when_asked_before_its_next_tick(tmp_path: Any) -> None:
    service = Service(app=app, schedule_filename=str(tmp_path / "schedule"), max_interval=1)
    service._is_shutdown.set()

    service.start()  # returns: the loop ends and the schedule is saved

    assert service._is_stopped.is_set()
