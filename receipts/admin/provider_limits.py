"""Admin: the circuit breaker, the shared rate budget and the polling tiers, read-only."""

from __future__ import annotations

from django.conf import settings
from django.contrib import admin
from django.contrib.admin.views.decorators import staff_member_required
from django.http import HttpRequest
from django.template.response import TemplateResponse
from django.utils import timezone

from receipts.metrics import COUNTERS, GENESYS_CLOUD, provider_snapshot
from receipts.models import Message


@staff_member_required
def provider_limits(request: HttpRequest) -> TemplateResponse:
    """Admin: the circuit breaker, the shared rate budget and the polling tiers, read-only."""
    now = timezone.now()
    snap = provider_snapshot()
    counters = [(key, snap.counters.get(key, 0), COUNTERS[key][0]) for key in COUNTERS]
    polling = {
        "due_now": Message.objects.due_for_poll(now).count(),
        "scheduled": Message.objects.filter(provider=GENESYS_CLOUD).exclude(next_poll_at=None).count(),
        "awaiting_reconciliation": Message.objects.awaiting_reconciliation(
            GENESYS_CLOUD, now - (settings.RECEIPT_TIMEOUT + settings.POLL_HIGH_MAX_AGE)
        ).count(),
    }
    context = {
        **admin.site.each_context(request),
        "title": "Provider limits and polling",
        "snap": snap,
        "counters": counters,
        "polling": polling,
        "settings_rows": [
            ("GENESYS_RATE_LIMIT_PER_MINUTE", settings.GENESYS_RATE_LIMIT_PER_MINUTE),
            ("GENESYS_RATE_HEADROOM", settings.GENESYS_RATE_HEADROOM),
            ("GENESYS_RATE_BURST", settings.GENESYS_RATE_BURST),
            ("CIRCUIT_FAILURE_THRESHOLD", settings.CIRCUIT_FAILURE_THRESHOLD),
            ("CIRCUIT_COOLDOWN_SECONDS", settings.CIRCUIT_COOLDOWN_SECONDS),
            ("POLL_FIRST_DELAY / POLL_MAX_DELAY", f"{settings.POLL_FIRST_DELAY} / {settings.POLL_MAX_DELAY}"),
            ("BULK_RECONCILE_INTERVAL", settings.BULK_RECONCILE_INTERVAL),
        ],
    }
    return TemplateResponse(request, "admin/receipts/provider_limits.html", context)
