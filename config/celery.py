import os
from typing import Any

from celery import Celery
from celery.signals import celeryd_after_setup
from kombu.transport import TRANSPORT_ALIASES

# filesystem:// means the atomic variant in every process of ours (web, worker, beat): see config/broker.py.
TRANSPORT_ALIASES["filesystem"] = "config.broker:Transport"

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "config.settings")

app = Celery("receipts")
app.config_from_object("django.conf:settings", namespace="CELERY")
app.autodiscover_tasks()


@celeryd_after_setup.connect
def consume_the_chosen_queues(sender: str, instance: Any, **kwargs: Any) -> None:
    """A worker consumes the queues WORKER_QUEUES names (inbox, crm, poll), as ``-Q`` would choose them."""
    from django.conf import settings

    chosen = [settings.WORK_QUEUES[role] for role in settings.WORKER_QUEUES]
    if set(chosen) != set(settings.WORK_QUEUES.values()):
        instance.app.amqp.queues.select(chosen)
