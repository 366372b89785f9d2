"""``GET /metrics``, the console's part: what the alert rules (deploy/prometheus/alerts.yml) and a Grafana board
need, from the rollups and small indexed sets, never from a COUNT over the messages."""

from __future__ import annotations

from collections.abc import Iterator

from django.db.models import Count
from django.utils import timezone
from prometheus_client.core import GaugeHistogramMetricFamily, GaugeMetricFamily, Metric
from prometheus_client.registry import Collector

from receipts.actions import rollups
from receipts.models import LATENCY_BOUNDS, Alert, Escalation, Message, Suppression


class ConsoleCollector(Collector):
    def collect(self) -> Iterator[Metric]:
        now = timezone.now()
        rows = rollups.window_stats("day", now)
        messages = GaugeMetricFamily(
            "receipts_messages_24h",
            "Messages registered in the last 24 hours, by provider, channel and status now (from the rollups)",
            labels=["provider", "channel", "status"],
        )
        for (provider, channel, status), f in rollups.grouped(rows, "provider", "channel", "status").items():
            messages.add_metric([provider, channel, status], f["messages"])
        yield messages
        complaints = GaugeMetricFamily(
            "receipts_complaints_24h",
            "Messages registered in the last 24 hours their recipient marked as spam, by provider and channel",
            labels=["provider", "channel"],
        )
        for (provider, channel), f in rollups.grouped(rows, "provider", "channel").items():
            complaints.add_metric([provider, channel], f["complained"])
        yield complaints

        latency = GaugeHistogramMetricFamily(
            "receipts_receipt_latency_seconds",
            "Sent to final status, messages registered in the last 24 hours, by provider (from the rollups)",
            labels=["provider"],
        )
        for (provider,), f in rollups.grouped(rows, "provider").items():
            cumulative, buckets = 0, []
            for bound, count in zip([*LATENCY_BOUNDS, float("inf")], f["latency_histogram"], strict=True):
                cumulative += count
                buckets.append(("+Inf" if bound == float("inf") else str(bound), cumulative))
            latency.add_metric([provider], buckets, gsum_value=0)
        yield latency

        review = GaugeMetricFamily("receipts_review_queue", "Messages waiting for review, by reason", labels=["reason"])
        waiting = Message.objects.filter(needs_review=True).values("review_reason").annotate(n=Count("*"))
        for row in waiting.order_by():
            review.add_metric([row["review_reason"]], row["n"])
        yield review

        open_escalations = Escalation.objects.filter(acknowledged_at=None).count()
        yield GaugeMetricFamily("receipts_escalations_open", "Escalations nobody acknowledged yet", open_escalations)

        added = GaugeMetricFamily(
            "receipts_suppressions_added_24h", "Suppressions added in the last 24 hours, by reason", labels=["reason"]
        )
        recent = Suppression.objects.filter(created_at__gte=now - rollups.DAY).values("reason").annotate(n=Count("*"))
        for row in recent.order_by():
            added.add_metric([row["reason"]], row["n"])
        yield added

        firing = GaugeMetricFamily(
            "receipts_alert_firing", "1 for each alert open now (config/alerts.py)", labels=["key"]
        )
        for key in Alert.objects.filter(resolved_at=None).values_list("key", flat=True):
            firing.add_metric([key], 1)
        yield firing
