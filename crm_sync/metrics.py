"""The CRM relay in ``GET /metrics``: backlog, lag, and whether sending to the CRM is paused."""

from __future__ import annotations

from collections.abc import Iterator

from prometheus_client.core import GaugeMetricFamily, Metric
from prometheus_client.registry import Collector

from crm_sync import actions


class RelayCollector(Collector):
    def collect(self) -> Iterator[Metric]:
        summary = actions.summary()
        labels = ["backend"]

        def gauge(name: str, help_text: str, value: float) -> GaugeMetricFamily:
            family = GaugeMetricFamily(name, help_text, labels=labels)
            family.add_metric([summary.backend], value)
            return family

        yield gauge("crm_outbox_backlog", "Changes not sent yet (pending, due or backing off)", summary.backlog)
        yield gauge("crm_outbox_due", "Changes due to be sent now", summary.due)
        yield gauge("crm_outbox_dead", "Changes that failed every attempt (or wait behind one)", summary.dead)
        lag = summary.lag.total_seconds() if summary.lag else 0.0
        yield gauge("crm_relay_lag_seconds", "Age of the oldest change not sent yet (0: none waiting)", lag)
        yield gauge("crm_relay_paused", "1 while sending to the CRM is paused after a refused batch", summary.paused)
        left = summary.pause_left.total_seconds()
        yield gauge("crm_relay_pause_remaining_seconds", "Seconds until the probe after a pause", left)
        yield gauge("crm_relay_refused_batches", "Whole batches the CRM refused in a row", summary.refused_batches)
        if summary.api_usage:
            used, limit = summary.api_usage
            yield gauge("crm_api_requests_used", "API requests the CRM counts against its limit (Salesforce)", used)
            yield gauge("crm_api_requests_limit", "The CRM's API request limit (Salesforce: per 24 h)", limit)
