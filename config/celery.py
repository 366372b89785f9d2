import logging
import os
import sys
from typing import Any

from celery import Celery, platforms
from celery.apps.beat import Beat
from celery.signals import celeryd_after_setup, worker_shutdown
from kombu.transport import TRANSPORT_ALIASES
from kombu.utils.objects import cached_property

# filesystem:// means the atomic variant in every process of ours (web, worker, beat): see config/broker.py.
TRANSPORT_ALIASES["filesystem"] = "config.broker:Transport"

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "config.settings")


class BeatStoppingBetweenTicks(Beat):
    """Celery beat, stopped by SIGTERM or SIGINT between two ticks, not in the middle of one.

    Celery's own handler raises SystemExit wherever the signal lands; landing inside a publish to Redis, it turned
    into "Couldn't apply scheduled task" and an exit status of 1 on an ordinary stop. Here the signal only asks the
    loop to end: the tick in progress finishes, the schedule is saved, and beat exits 0 (within the shortest
    schedule interval, 2 s at most with the CRM relay's)."""

    def install_sync_handler(self, service: Any) -> None:
        def stop(signum: int, frame: Any) -> None:
            service._is_shutdown.set()

        platforms.signals.update(SIGTERM=stop, SIGINT=stop)


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
