"""What the pipeline, the polling and the provider limits are doing: ``GET /metrics`` (Prometheus).

It reads the shared state (Redis or the embedded SQLite file) and the database at the moment it is asked, as does
the admin's provider limits page (``receipts.admin.provider_limits``), so every process's calls show, whichever
web worker answers the scrape: nothing is counted in process memory.
"""

from __future__ import annotations

import hmac
import logging
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any

from django.conf import settings
from django.db.models import Count, Min
from django.http import HttpRequest
from django.utils import timezone
from prometheus_client import Counter, Histogram
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric
from prometheus_client.registry import Collector

from receipts.models import InboxState, Message, ReceiptEvent
from receipts.providers.genesys_cloud.client import Config, limits_from_settings
from receipts.providers.limits import CIRCUIT_STATE_VALUE, CircuitState, Limits
from receipts.status import Provider

log = logging.getLogger(__name__)

# Counted in the web processes themselves: with several granian workers, each writes its counts to
# PROMETHEUS_MULTIPROC_DIR (set by `make run`) and /metrics sums them (prometheus-client's multiprocess mode).
WEBHOOK_ANSWERS = Counter(
    "receipts_webhook_answers",
    "Webhook POSTs answered, by provider and HTTP status",
    ["provider", "code"],
    registry=None,
)

# How long a webhook took to answer, from the view's start to its response: providers time out and retry a slow
# ack (deploy/prometheus/alerts.yml pages on a p99 over 800 ms, hence the 0.8 bucket).
WEBHOOK_ANSWER_SECONDS = Histogram(
    "receipts_webhook_answer_seconds",
    "Time to answer a webhook POST, by provider",
    ["provider"],
    buckets=(0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 0.8, 1.0, 2.5, 5.0, 10.0),
    registry=None,
)

GENESYS_CLOUD = Provider.GENESYS_CLOUD

# Shared counters (receipts.providers.limits.Limits.count) -> (metric, label name, label value, help).
COUNTERS: dict[str, tuple[str, str, str, str]] = {
    "requests_ok": ("receipts_provider_requests", "outcome", "ok", "Provider API requests by outcome"),
    "requests_client_error": ("receipts_provider_requests", "outcome", "client_error", ""),
    "requests_server_error": ("receipts_provider_requests", "outcome", "server_error", ""),
    "requests_rate_limited": ("receipts_provider_requests", "outcome", "rate_limited", ""),
    "requests_transport_error": ("receipts_provider_requests", "outcome", "transport_error", ""),
    "token_requests": ("receipts_provider_token_requests", "", "", "OAuth token requests"),
    "token_refused": ("receipts_provider_token_refused", "", "", "API answers 401 to a token (refreshed once)"),
    "limiter_waits": ("receipts_provider_ratelimit_waits", "", "", "Calls that waited for a token of the bucket"),
    "limiter_refusals": (
        "receipts_provider_ratelimit_refusals",
        "",
        "",
        "Calls given up because no token came within GENESYS_MAX_WAIT",
    ),
    "circuit_refusals": ("receipts_provider_circuit_refusals", "", "", "Calls refused while the circuit was open"),
    "polls_high": ("receipts_polls", "tier", "high", "Messages polled, by tier"),
    "polls_bulk": ("receipts_polls", "tier", "bulk", ""),
    "poll_answers_new": ("receipts_poll_answers", "result", "new", "Poll answers stored, or dropped as duplicates"),
    "poll_answers_duplicate": ("receipts_poll_answers", "result", "duplicate", ""),
    "reconcile_runs": ("receipts_reconcile_runs", "", "", "Bulk reconciliation rounds"),
}


@dataclass
class ProviderSnapshot:
    configured: bool
    name: str = ""
    api_url: str = ""
    client_id: str = ""
    up: bool = False
    error: str = ""
    circuit: CircuitState = field(default_factory=CircuitState)
    tokens: float = 0.0
    paused_for: float = 0.0
    capacity: int = 0
    budget: int = 0
    limit: int = 0
    window: float = 0.0
    refill_per_second: float = 0.0
    threshold: int = 0
    cooldown: float = 0.0
    counters: dict[str, int] = field(default_factory=dict)
    notes: dict[str, str] = field(default_factory=dict)
    backend: str = ""


def provider_snapshot(limits: Limits | None = None) -> ProviderSnapshot:
    config = Config.from_settings()
    if limits is None:
        if not config.configured:
            return ProviderSnapshot(configured=False)
        limits = limits_from_settings(config)
    snap = ProviderSnapshot(
        configured=True,
        name=limits.name,
        api_url=config.api_url,
        client_id=(config.client_id[:4] + "…") if config.client_id else "",
        capacity=limits.rate.capacity,
        budget=limits.rate.budget,
        limit=limits.rate.limit,
        window=limits.rate.window,
        refill_per_second=limits.rate.refill_per_second,
        threshold=limits.policy.threshold,
        cooldown=limits.policy.cooldown,
        backend=limits.store.kind,
    )
    try:
        snap.circuit = limits.circuit()
        snap.tokens, snap.paused_for = limits.bucket()
        snap.counters = limits.counters()
        snap.notes = limits.notes()
        snap.up = True
    except Exception as exc:  # Redis down: say so rather than fail the scrape
        snap.error = f"{type(exc).__name__}: {exc}"[:200]
    return snap


class PollingCollector(Collector):
    def __init__(self, limits: Limits | None = None) -> None:
        self.limits = limits

    def collect(self) -> Iterator[Metric]:
        yield from self.provider_metrics(provider_snapshot(self.limits))
        yield from self.database_metrics()

    def provider_metrics(self, snap: ProviderSnapshot) -> Iterator[Metric]:
        if not snap.configured:
            return
        labels = ["provider"]
        up = GaugeMetricFamily("receipts_provider_limits_up", "The shared limits store answers", labels=labels)
        up.add_metric([GENESYS_CLOUD], 1 if snap.up else 0)
        yield up
        if not snap.up:
            return
        state = GaugeMetricFamily(
            "receipts_provider_circuit_state",
            "Circuit breaker state: 1 on the current one (closed, half_open, open)",
            labels=["provider", "state"],
        )
        for name in CIRCUIT_STATE_VALUE:
            state.add_metric([GENESYS_CLOUD, name], 1 if snap.circuit.state == name else 0)
        yield state
        yield gauge("receipts_provider_circuit_failures", "Consecutive failures counted", snap.circuit.failures)
        yield gauge("receipts_provider_circuit_retry_seconds", "Seconds until the next probe", snap.circuit.retry_in)
        opened = CounterMetricFamily("receipts_provider_circuit_opened", "Times the circuit opened", labels=labels)
        opened.add_metric([GENESYS_CLOUD], snap.circuit.opened_total)
        yield opened
        yield gauge("receipts_provider_ratelimit_tokens", "Tokens in the shared bucket now", snap.tokens)
        yield gauge("receipts_provider_ratelimit_capacity", "Most tokens the bucket holds (burst)", snap.capacity)
        yield gauge("receipts_provider_ratelimit_budget", "Most requests granted in any one window", snap.budget)
        yield gauge("receipts_provider_ratelimit_limit", "The provider's own limit per window", snap.limit)
        yield gauge("receipts_provider_ratelimit_paused_seconds", "Seconds left of a 429 pause", snap.paused_for)
        for key in ("ratelimit_allowed", "ratelimit_count"):
            if snap.notes.get(key, "").isdigit():
                yield gauge(f"receipts_provider_reported_{key}", f"Last inin-{key.replace('_', '-')}", snap.notes[key])
        families: dict[str, CounterMetricFamily] = {}
        for key, (metric, label, value, help_text) in COUNTERS.items():
            extra = [label] if label else []
            family = families.get(metric)
            if family is None:
                family = families[metric] = CounterMetricFamily(metric, help_text, labels=[*labels, *extra])
            family.add_metric([GENESYS_CLOUD, *([value] if label else [])], snap.counters.get(key, 0))
        yield from families.values()

    def database_metrics(self) -> Iterator[Metric]:
        inbox = GaugeMetricFamily(
            "receipts_inbox_events", "Inbox rows (receipt events) by state, processed ones left out", labels=["state"]
        )
        # Processed rows are the millions nobody needs counted on every scrape; the rest is what needs a look.
        waiting_states = [state for state in InboxState.values if state != InboxState.PROCESSED]
        rows = ReceiptEvent.objects.filter(state__in=waiting_states).order_by().values("state")
        for row in rows.annotate(n=Count("*")):  # an index-only scan of (state, next_attempt_at)
            inbox.add_metric([row["state"]], row["n"])
        yield inbox
        now = timezone.now()
        due = Message.objects.due_for_poll(now).aggregate(n=Count("id"), oldest=Min("next_poll_at"))
        yield GaugeMetricFamily(
            "receipts_messages_due_for_poll", "Messages whose next poll time has come", value=due["n"]
        )
        yield GaugeMetricFamily(
            "receipts_poll_lag_seconds",
            "How late the most overdue poll is (0: none overdue)",
            value=(now - due["oldest"]).total_seconds() if due["oldest"] else 0.0,
        )
        # Since when the longest-waiting due row has been due: a receipt's arrival, or the end of its backoff. The
        # (state, next_attempt_at) index answers it at once; MIN(received_at) walked a million processed rows.
        waiting = ReceiptEvent.objects.due(now).aggregate(oldest=Min("next_attempt_at"))["oldest"]
        yield GaugeMetricFamily(
            "receipts_inbox_lag_seconds",
            "How long the longest-waiting receipt has been due for processing (0: none waiting)",
            value=(now - waiting).total_seconds() if waiting else 0.0,
        )


def gauge(name: str, help_text: str, value: Any) -> GaugeMetricFamily:
    family = GaugeMetricFamily(name, help_text, labels=["provider"])
    family.add_metric([GENESYS_CLOUD], float(value))
    return family


def metrics_allowed(request: HttpRequest) -> bool:
    token = settings.METRICS_TOKEN
    if not token:
        return True
    scheme, _, given = request.headers.get("Authorization", "").partition(" ")
    return scheme.lower() == "bearer" and hmac.compare_digest(given.strip().encode(), token.encode())
