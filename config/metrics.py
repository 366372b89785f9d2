"""``GET /metrics``: the pipeline, polling and provider limits (receipts), sending (campaigns), the CRM relay
(crm_sync) and the console's figures (config/console_metrics.py), in one Prometheus answer (``Authorization: Bearer
<METRICS_TOKEN>`` when one is set)."""

from __future__ import annotations

import os

from django.http import HttpRequest, HttpResponse
from django.views.decorators.http import require_GET
from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry, generate_latest
from prometheus_client.multiprocess import MultiProcessCollector

from campaigns.metrics import SendingCollector
from config.console_metrics import ConsoleCollector
from crm_sync.metrics import RelayCollector
from receipts.metrics import WEBHOOK_ANSWER_SECONDS, WEBHOOK_ANSWERS, PollingCollector, metrics_allowed


@require_GET
def metrics(request: HttpRequest) -> HttpResponse:
    if not metrics_allowed(request):
        return HttpResponse("metrics need the bearer token\n", status=401, content_type="text/plain")
    registry = CollectorRegistry(auto_describe=False)
    registry.register(PollingCollector())
    registry.register(RelayCollector())
    registry.register(ConsoleCollector())
    registry.register(SendingCollector())
    if os.environ.get("PROMETHEUS_MULTIPROC_DIR"):
        MultiProcessCollector(registry)  # every web process's counts, summed
    else:
        registry.register(WEBHOOK_ANSWERS)  # one process: its own counts
        registry.register(WEBHOOK_ANSWER_SECONDS)
    return HttpResponse(generate_latest(registry), content_type=CONTENT_TYPE_LATEST)
