import contextlib
import logging
import os
import sys
import threading
import time
from collections.abc import Iterator
from types import SimpleNamespace
from typing import Any

import celery.beat
from celery import Celery, platforms
from celery.apps.beat import Beat
from celery.signals import celeryd_after_setup, worker_shutdown
from kombu.transport import TRANSPORT_ALIASES
from kombu.utils.objects import cached_property

# filesystem:// means the atomic variant in every process of ours (web, worker, beat): see config/broker.py.
TRANSPORT_ALIASES["filesystem"] = "config.broker:Transport"

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "config.settings")


@contextlib.contextmanager
def sleeping_until(stop: threading.Event) -> Iterator[None]:
    """Within the block, Celery beat's sleep between two ticks (``time.sleep`` in celery.beat) ends as soon as
    ``stop`` is set: a stop request no longer waits out the rest of the interval (up to 2 s)."""
    real = celery.beat.time
    celery.beat.time = SimpleNamespace(**{**vars(time), "sleep": stop.wait})
    try:
        yield
    finally:
        celery.beat.time = real


class ServiceWakingOnStop(celery.beat.Service):
    def start(self, embedded_process: bool = False) -> None:
        with sleeping_until(self._is_shutdown):
            super().start(embedded_process)


class BeatStoppingBetweenTicks(Beat):
    """Celery beat, stopped by SIGTERM or SIGINT between two ticks, not in the middle of one, and at once.

    Celery's own handler raises SystemExit wherever the signal lands; landing inside a publish to Redis, it turned
    into "Couldn't apply scheduled task" and an exit status of 1 on an ordinary stop. Here the signal only asks the
    loop to end: the tick in progress finishes, the sleep before the next one ends at once, the schedule is saved,
    and beat exits 0 (well within a second; supervisord used to wait out the interval, or SIGKILL beat)."""

    Service = ServiceWakingOnStop
    asked_to_stop = False

    def install_sync_handler(self, service: Any) -> None:
        def stop(signum: int, frame: Any) -> None:
            self.asked_to_stop = True
            service._is_shutdown.set()

        platforms.signals.update(SIGTERM=stop, SIGINT=stop)

    def start_scheduler(self) -> None:
        super().start_scheduler()
        # The loop has ended on a stop signal and saved the schedule: nothing is left to do but Python's teardown
        # of Django and Celery, 0.7-0.9 s of the stop on an idle machine. A --pidfile is released by that
        # teardown (an atexit handler), so beat started with one goes the usual way.
        if self.asked_to_stop and not self.pidfile:
            logging.shutdown()
            sys.stdout.flush()
            sys.stderr.flush()
            os._exit(0)


class App(Celery):
    @cached_property
    def Beat(self) -> Any:
        return self.subclass_with_self(BeatStoppingBetweenTicks)


app = App("receipts")
app.config_from_object("django.conf:settings", namespace="CELERY")
app.autodiscover_tasks()


@celeryd_after_setup.connect
def consume_the_chosen_queues(sender: str, instance: Any, **kwargs: Any) -> None:
    """A worker consumes the queues WORKER_QUEUES names (inbox, crm, poll), as ``-Q`` would choose them."""
    from django.conf import settings

    chosen = [settings.WORK_QUEUES[role] for role in settings.WORKER_QUEUES]
    if set(chosen) != set(settings.WORK_QUEUES.values()):
        instance.app.amqp.queues.select(chosen)


@worker_shutdown.connect
def exit_at_once_after_a_warm_stop(**kwargs: Any) -> None:
    """After a warm stop (Ctrl-C under `make run`), once Celery has stopped the pool and closed the broker
    connection, the worker exits 0 at once. Python's own teardown of a process this size (a worker is Django and
    Celery loaded) then took 2-3 s on a busy machine, with nothing in it left to do: supervisord stops the workers
    together, and Ctrl-C is to take under 10 s. Any other stop (cold, or an error's exit status) goes the usual way."""
    from celery.worker import state

    if state.should_stop != 0 or state.should_terminate is not None:
        return
    logging.shutdown()
    sys.stdout.flush()
    sys.stderr.flush()
    os._exit(0)
