import os

from celery import Celery
from kombu.transport import TRANSPORT_ALIASES

# filesystem:// means the atomic variant in every process of ours (web, worker, beat): see config/broker.py.
TRANSPORT_ALIASES["filesystem"] = "config.broker:Transport"

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "config.settings")

app = Celery("receipts")
app.config_from_object("django.conf:settings", namespace="CELERY")
app.autodiscover_tasks()
