"""``GET /metrics``, the sending part: each provider's queue, the sends its workers hold, how the sends ended, the
time spent waiting for a rate-limit token and the state of the provider's send breaker.

The queue and the held sends are counted on their partial indexes (``send_provider_queue_idx``,
``send_held_idx``), never over the sent ones; how sends ended and the waits are counters that every worker adds
to in the shared limits store (``campaigns.throttle.count_send``)."""

from __future__ import annotations

import logging
from collections.abc import Iterator

from django.db.models import Count, QuerySet
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric
from prometheus_client.registry import Collector

from campaigns import throttle
from campaigns.models import SENDING_PROVIDER_CHOICES, Send
from receipts.providers.limits import CIRCUIT_STATE_VALUE

log = logging.getLogger(__name__)

PROVIDERS = [value for value, _ in SENDING_PROVIDER_CHOICES]
FINISHED = [Send.State.SENT, Send.State.FAILED, Send.State.SUPPRESSED, Send.State.UNKNOWN]


class SendingCollector(Collector):
    def collect(self) -> Iterator[Metric]:
        queue = GaugeMetricFamily(
            "campaigns_send_queue", "Sends waiting in each provider's queue (planned)", labels=["provider"]
        )
        planned = by_provider(Send.objects.filter(state=Send.State.PLANNED))
        held = by_provider(Send.objects.filter(state__in=[Send.State.CLAIMED, Send.State.SENDING]))
        for provider in PROVIDERS:
            queue.add_metric([provider], planned.get(provider, 0))
        yield queue
        holding = GaugeMetricFamily(
            "campaigns_sends_held", "Sends a worker holds now (claimed or sending)", labels=["provider"]
        )
        for provider in PROVIDERS:
            holding.add_metric([provider], held.get(provider, 0))
        yield holding

        finished = CounterMetricFamily(
            "campaigns_sends_finished", "Sends a worker ended, by provider and state", labels=["provider", "state"]
        )
        waited = CounterMetricFamily(
            "campaigns_send_token_wait_seconds",
            "Time sends waited for a rate-limit token (provider's and sender's)",
            labels=["provider"],
        )
        breaker = GaugeMetricFamily(
            "campaigns_send_circuit_state",
            "A provider's send breaker: 1 on the current state (closed, half_open, open)",
            labels=["provider", "state"],
        )
        for provider in PROVIDERS:
            try:
                counts = throttle.send_counters(provider)
                limits = throttle.provider_limits(provider) if throttle.own_breaker(provider) else None
                circuit = limits.circuit() if limits is not None else None
            except Exception as exc:  # the limits store is down: the database figures still count
                log.warning("sending metrics: the limits store did not answer: %s", exc)
                continue
            for state in FINISHED:
                finished.add_metric([provider, state], counts.get(state, 0))
            waited.add_metric([provider], counts.get("token_wait_ms", 0) / 1000)
            if circuit is not None:
                for name in CIRCUIT_STATE_VALUE:
                    breaker.add_metric([provider, name], 1 if circuit.state == name else 0)
        yield finished
        yield waited
        yield breaker


def by_provider(sends: QuerySet[Send]) -> dict[str, int]:
    rows = sends.values("provider").annotate(n=Count("id")).order_by()
    return {row["provider"]: row["n"] for row in rows}
