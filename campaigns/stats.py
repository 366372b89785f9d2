"""A campaign's delivery statistics, from the delivery rollups (``receipts.actions.rollups``), never from a COUNT
over its messages: what the campaign page in the admin and ``GET /api/v1/campaigns/{id}/stats/`` show."""

from __future__ import annotations

from collections import defaultdict
from datetime import datetime
from typing import Any

from django.db.models import Max, Min, Sum

from receipts.actions import rollups
from receipts.models import DeliveryStats

KEY_FIELDS = rollups.KEY


def campaign_rows(campaign_id: int) -> list[dict[str, Any]]:
    """The campaign's daily rollup rows summed over all its days, by the rollup key."""
    rows = DeliveryStats.objects.filter(period=DeliveryStats.Period.DAY, campaign_id=campaign_id)
    return list(rows.values(*KEY_FIELDS).annotate(**{f: Sum(f) for f in rollups.COUNTED}).order_by())


def campaign_stats(campaign_id: int) -> dict[str, Any]:
    rows = campaign_rows(campaign_id)
    overall = rollups.figures(rows)
    days = DeliveryStats.objects.filter(period=DeliveryStats.Period.DAY, campaign_id=campaign_id)
    span = days.aggregate(first=Min("start"), last=Max("start"))
    return {
        **summary(overall),
        "latency_seconds": {"p50": overall["latency_p50"], "p95": overall["latency_p95"]},
        "by_provider": {key[0]: summary(f) for key, f in rollups.grouped(rows, "provider").items()},
        "by_channel": {key[0]: summary(f) for key, f in rollups.grouped(rows, "channel").items()},
        "failures": rollups.failures(rows),
        "first_day": span["first"],
        "last_day": span["last"],
        "over_time": over_time(campaign_id),
    }


def summary(f: dict[str, Any]) -> dict[str, Any]:
    """The figures an API client or an operator reads first, rates rounded to 4 places."""
    return {
        "messages": f["messages"],
        "by_status": f["by_status"],
        "delivered": f["delivered"],
        "failed": f["failed"],
        "pending": f["pending"],
        "assumed": f["assumed"],
        "needs_review": f["needs_review"],
        "read": f["read"],
        "clicked": f["clicked"],
        "delivery_rate": rate(f["delivery_rate"]),
        "failure_rate": rate(f["failure_rate"]),
    }


def rate(value: float | None) -> float | None:
    return None if value is None else round(value, 4)


def over_time(campaign_id: int) -> list[dict[str, Any]]:
    """Messages per day of creation, by status."""
    points: dict[datetime, dict[str, int]] = defaultdict(dict)
    for row in rollups.series(DeliveryStats.Period.DAY, None, campaign_id=campaign_id):
        points[row["start"]][row["status"]] = row["messages"]
    return [
        {"day": day.date().isoformat(), "messages": sum(counts.values()), "by_status": counts}
        for day, counts in sorted(points.items())
    ]


def totals_for(campaign_ids: list[int]) -> dict[int, dict[str, Any]]:
    """The first figures of several campaigns in one query (a list page)."""
    rows = (
        DeliveryStats.objects.filter(period=DeliveryStats.Period.DAY, campaign_id__in=campaign_ids)
        .values(*KEY_FIELDS)  # campaign_id among them
        .annotate(**{f: Sum(f) for f in rollups.COUNTED})
        .order_by()
    )
    by_campaign: dict[int, list[dict[str, Any]]] = defaultdict(list)
    for row in rows:
        by_campaign[row["campaign_id"]].append(row)
    return {pk: summary(rollups.figures(by_campaign.get(pk, []))) for pk in campaign_ids}
