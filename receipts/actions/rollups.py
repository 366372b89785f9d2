"""Delivery rollups: per hour and per day of creation x provider x channel x campaign x status, how many messages,
how many under review, read, clicked, and a histogram of receipt latency (``DeliveryStats``).

Counting 10 million messages for every dashboard view is what this avoids. The rollup is kept by counting again
the hours whose messages changed: every change to a message sets its ``updated_at`` (indexed), so the hours to
count again are those of the messages updated since the last run (``RollupMark``), less a margin for transactions
that committed late. Counting an hour again reads its few thousand messages through the ``created_at`` index and
replaces its rows; its day is then summed again from its hours. The result is exact (a test compares it with a
COUNT over the messages), and as fresh as the beat task's interval (``ROLLUP_INTERVAL``).

Erasure and retention delete messages: erasure counts its hours again; retention leaves the rollups of pruned
hours alone (they hold no personal data and keep the history the dashboard draws).
"""

from __future__ import annotations

import bisect
import logging
from collections import defaultdict
from collections.abc import Callable, Iterable
from datetime import UTC, datetime, timedelta
from typing import Any

from django.db import transaction
from django.db.models import Q, Sum
from django.db.models.functions import Trunc
from django.utils import timezone

from receipts.models import LATENCY_BOUNDS, LATENCY_FIELDS, DeliveryStats, Message, RollupMark, StaleHour
from receipts.status import FINAL_STATUSES, Status

log = logging.getLogger(__name__)

HOUR = timedelta(hours=1)
DAY = timedelta(days=1)
# A message changed in a transaction that commits after the mark moved past its updated_at is found again within
# this margin (a batch transaction lasts seconds).
MARGIN = timedelta(minutes=5)
FAILURES = frozenset({Status.FAILED, Status.REJECTED, Status.EXPIRED, Status.BOUNCED})
COUNTED = ["messages", "needs_review", "read", "clicked", "complained", *LATENCY_FIELDS]
KEY = ["provider", "channel", "campaign_id", "status", "assumed", "failure_category", "provider_code"]


LEASE = timedelta(minutes=5)  # renewed after every hour counted


def refresh(now: datetime | None = None, progress: Callable[[int, int], None] | None = None) -> int | None:
    """Count again every hour whose messages changed since the last run; the first run counts every hour there is.
    Returns the number of hours counted, or None when another refresh holds the lease."""
    now = now or timezone.now()
    mark = take_lease(now)
    if mark is None:
        return None
    try:
        changed = Message.objects.all()
        if mark.updated_before is not None:
            changed = changed.filter(updated_at__gte=mark.updated_before - MARGIN)
        hours = set(changed.annotate(h=Trunc("created_at", "hour", tzinfo=UTC)).values_list("h", flat=True).distinct())
        stale = list(StaleHour.objects.values_list("pk", "start"))
        hours.update(start for _, start in stale)

        def renew(done: int, total: int) -> None:
            RollupMark.objects.filter(pk=mark.pk).update(leased_until=timezone.now() + LEASE)
            if progress is not None:
                progress(done, total)

        counted = recount(hours, renew)
        RollupMark.objects.filter(pk=mark.pk).update(updated_before=now)
        StaleHour.objects.filter(pk__in=[pk for pk, _ in stale]).delete()
        return counted
    finally:
        RollupMark.objects.filter(pk=mark.pk).update(leased_until=None)


def take_lease(now: datetime) -> RollupMark | None:
    mark, _ = RollupMark.objects.get_or_create(pk=1)
    free = Q(leased_until=None) | Q(leased_until__lt=now)
    if not RollupMark.objects.filter(free, pk=mark.pk).update(leased_until=now + LEASE):
        return None
    return mark


def recount(hours: Iterable[datetime], progress: Callable[[int, int], None] | None = None) -> int:
    """Count these hours again from the messages, then the days they fall in from their hours."""
    hours = sorted(set(hours))
    days: set[datetime] = set()
    for done, hour in enumerate(hours, 1):
        recount_hour(hour)
        days.add(hour.replace(hour=0))
        if progress is not None:
            progress(done, len(hours))
    for day in sorted(days):
        recount_day(day)
    return len(hours)


def recount_hour(hour: datetime) -> None:
    fields = [
        "provider",
        "channel",
        "campaign_id",
        "status",
        "assumed",
        "failure_category",
        "provider_code",
        "needs_review",
        "read_count",
        "click_count",
        "complained_at",
        "sent_at",
        "status_at",
    ]
    rows: dict[tuple, dict[str, int]] = defaultdict(lambda: dict.fromkeys(COUNTED, 0))
    messages = Message.objects.filter(created_at__gte=hour, created_at__lt=hour + HOUR).order_by()
    for (
        provider,
        channel,
        campaign,
        status,
        assumed,
        category,
        code,
        review,
        reads,
        clicks,
        complaint,
        sent,
        final_at,
    ) in messages.values_list(*fields).iterator(chunk_size=5000):
        failed = status in FAILURES
        key = (provider, channel, campaign or 0, status, assumed, category if failed else "", code if failed else "")
        row = rows[key]
        row["messages"] += 1
        row["needs_review"] += review
        row["read"] += reads > 0
        row["clicked"] += clicks > 0
        row["complained"] += complaint is not None
        if status in FINAL_STATUSES and sent is not None and final_at is not None:
            seconds = max((final_at - sent).total_seconds(), 0)
            row[LATENCY_FIELDS[bisect.bisect_left(LATENCY_BOUNDS, seconds)]] += 1
    replace(DeliveryStats.Period.HOUR, hour, rows)


def recount_day(day: datetime) -> None:
    hours = DeliveryStats.objects.filter(period=DeliveryStats.Period.HOUR, start__gte=day, start__lt=day + DAY)
    summed = hours.values(*KEY).annotate(**{f: Sum(f) for f in COUNTED}).order_by()
    rows = {tuple(r[k] for k in KEY): {f: r[f] for f in COUNTED} for r in summed}
    replace(DeliveryStats.Period.DAY, day, rows)


def replace(period: str, start: datetime, rows: dict[tuple, dict[str, int]]) -> None:
    with transaction.atomic():
        DeliveryStats.objects.filter(period=period, start=start).delete()
        DeliveryStats.objects.bulk_create(
            [
                DeliveryStats(period=period, start=start, **dict(zip(KEY, key, strict=True)), **c)
                for key, c in rows.items()
            ],
            batch_size=1000,
        )


def mark_stale(message_ids: Iterable[int]) -> None:
    """Have the next refresh count again the hours of these messages, which are about to be deleted."""
    ids = list(message_ids)
    for start in range(0, len(ids), 2000):
        chunk = Message.objects.filter(pk__in=ids[start : start + 2000])
        hours = set(chunk.annotate(h=Trunc("created_at", "hour", tzinfo=UTC)).values_list("h", flat=True))
        StaleHour.objects.bulk_create([StaleHour(start=h) for h in hours], ignore_conflicts=True)


# --- reading --------------------------------------------------------------------------------------------------

WINDOWS = {"hour": HOUR, "day": DAY, "7d": 7 * DAY, "30d": 30 * DAY}


# What the delivery figures need (no failure category or code: fewer groups to sum), and what the failure
# figures need.
FUNNEL_KEY = ["provider", "channel", "campaign_id", "status", "assumed"]
FAILURE_KEY = ["provider", "status", "failure_category", "provider_code"]


def window_stats(
    window: str,
    now: datetime | None = None,
    keys: list[str] = KEY,
    sums: list[str] = COUNTED,
    **filters: Any,
) -> list[dict[str, Any]]:
    """The rollup rows of messages created in the window, the ``sums`` summed by ``keys``. The hour and day windows
    read hourly rows (the last 1 or 24 whole and current hours); 7 and 30 days read daily rows (whole UTC days,
    today included)."""
    now = now or timezone.now()
    if WINDOWS[window] <= DAY:
        period, since = DeliveryStats.Period.HOUR, truncate(now - WINDOWS[window] + HOUR, HOUR)
    else:
        period, since = DeliveryStats.Period.DAY, truncate(now - WINDOWS[window] + DAY, DAY)
    rows = DeliveryStats.objects.filter(period=period, start__gte=since, **filters)
    return list(rows.values(*keys).annotate(**{f: Sum(f) for f in sums}).order_by())


def series(period: str, since: datetime | None, **filters: Any) -> list[dict[str, Any]]:
    """Messages per hour or day and status since ``since`` (None: all): the points of a chart over time."""
    rows = DeliveryStats.objects.filter(period=period, **filters)
    if since is not None:
        rows = rows.filter(start__gte=since)
    return list(rows.values("start", "status").annotate(messages=Sum("messages")).order_by("start", "status"))


def truncate(moment: datetime, step: timedelta) -> datetime:
    moment = moment.astimezone(UTC)
    if step == DAY:
        return moment.replace(hour=0, minute=0, second=0, microsecond=0)
    return moment.replace(minute=0, second=0, microsecond=0)


def percentile(histogram: list[int], share: float) -> float | None:
    """The upper bound (seconds) of the latency bucket holding the given share of the messages; None when there
    are none, ``inf`` when it is the open last bucket."""
    total = sum(histogram)
    if total == 0:
        return None
    wanted = share * total
    seen = 0
    for bound, count in zip([*LATENCY_BOUNDS, float("inf")], histogram, strict=True):
        seen += count
        if seen >= wanted:
            return float(bound)
    return float("inf")


# --- figures ------------------------------------------------------------------------------------------------

PENDING = frozenset({Status.PENDING, Status.QUEUED, Status.SENT, Status.DEFERRED})


def figures(rows: list[dict[str, Any]]) -> dict[str, Any]:
    """What a set of rollup rows says: messages, per status, delivered and failed rates (of the final ones),
    assumed, under review, read, clicked and complained, latency p50/p95 (seconds, histogram bucket bounds)."""
    by_status: dict[str, int] = defaultdict(int)
    histogram = [0] * len(LATENCY_FIELDS)
    totals = dict.fromkeys(["messages", "needs_review", "read", "clicked", "complained", "assumed"], 0)
    for row in rows:
        by_status[row["status"]] += row["messages"]
        totals["messages"] += row["messages"]
        totals["needs_review"] += row["needs_review"]
        totals["read"] += row["read"]
        totals["clicked"] += row["clicked"]
        totals["complained"] += row["complained"]
        totals["assumed"] += row["messages"] if row["assumed"] else 0
        for i, field in enumerate(LATENCY_FIELDS):
            histogram[i] += row[field]
    final = sum(n for status, n in by_status.items() if status in FINAL_STATUSES)
    delivered = by_status.get(Status.DELIVERED, 0)
    failed = sum(n for status, n in by_status.items() if status in FAILURES)
    return {
        **totals,
        "by_status": dict(sorted(by_status.items())),
        "final": final,
        "delivered": delivered,
        "failed": failed,
        "pending": sum(n for status, n in by_status.items() if status in PENDING),
        "delivery_rate": delivered / final if final else None,
        "failure_rate": failed / final if final else None,
        "latency_p50": percentile(histogram, 0.5),
        "latency_p95": percentile(histogram, 0.95),
        "latency_histogram": histogram,
    }


def grouped(rows: list[dict[str, Any]], *by: str) -> dict[tuple, dict[str, Any]]:
    """``figures`` per value of the given key fields, largest first."""
    groups: dict[tuple, list[dict[str, Any]]] = defaultdict(list)
    for row in rows:
        groups[tuple(row[k] for k in by)].append(row)
    summed = {key: figures(group) for key, group in groups.items()}
    return dict(sorted(summed.items(), key=lambda item: -item[1]["messages"]))


def failures(rows: list[dict[str, Any]], top: int = 10) -> dict[str, Any]:
    """Failed messages by category, and the provider codes that failed most."""
    categories: dict[str, int] = defaultdict(int)
    codes: dict[tuple[str, str], int] = defaultdict(int)
    for row in rows:
        if row["status"] in FAILURES:
            categories[row["failure_category"] or "unknown"] += row["messages"]
            codes[(row["provider"], row["provider_code"] or "-")] += row["messages"]
    return {
        "by_category": dict(sorted(categories.items(), key=lambda item: -item[1])),
        "top_codes": sorted(codes.items(), key=lambda item: -item[1])[:top],
    }
