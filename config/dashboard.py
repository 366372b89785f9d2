"""The operators' dashboard (``/admin/dashboard/``, first on the admin index): is delivery healthy, in five seconds.

Delivery figures come from the rollups (``receipts.actions.rollups``), never from a COUNT over the messages; the
live panels read small, indexed sets, and the counts that grow with the data (the review queue by reason, messages
in flight by provider) the counts the database keeps (``receipts.tallies``). Every figure links to the list behind
it. It lives in ``config`` because it shows the receipts and the CRM relay side by side.
"""

from __future__ import annotations

import math
from datetime import datetime, timedelta
from typing import Any
from urllib.parse import urlencode

from django.conf import settings
from django.contrib import admin
from django.contrib.admin.views.decorators import staff_member_required
from django.db.models import Count
from django.http import HttpRequest
from django.template.response import TemplateResponse
from django.urls import reverse
from django.utils import timezone

from campaigns.models import Campaign
from crm_sync import actions as crm
from receipts import tallies
from receipts.actions import rollups
from receipts.admin.charts import COLOURS, Bar, Segment, columns, legend, stacked_bars
from receipts.models import DeliveryStats, InboxState, Message, ReceiptEvent, RollupMark, Suppression
from receipts.status import Provider

WINDOW_NAMES = {"hour": "last hour", "day": "last 24 hours", "7d": "last 7 days", "30d": "last 30 days"}
INBOX_STATES = [InboxState.RECEIVED, InboxState.ORPHAN, InboxState.UNMATCHED, InboxState.REJECTED, InboxState.DEAD]


@staff_member_required
def dashboard(request: HttpRequest) -> TemplateResponse:
    window = request.GET.get("window", "day")
    if window not in rollups.WINDOWS:
        window = "day"
    now = timezone.now()
    since = now - rollups.WINDOWS[window]
    rows = rollups.window_stats(window, now, keys=rollups.FUNNEL_KEY)
    failed = rollups.window_stats(
        window, now, keys=rollups.FAILURE_KEY, sums=["messages"], status__in=sorted(rollups.FAILURES)
    )
    overall = rollups.figures(rows)
    links = Links(since)
    review = review_queue(now, links)
    relay = crm.summary(now)
    context = {
        **admin.site.each_context(request),
        "title": f"Delivery health: {WINDOW_NAMES[window]}",
        "window": window,
        "windows": WINDOW_NAMES,
        "window_name": WINDOW_NAMES[window],
        "overall": overall,
        "links": links,
        "fresh_at": RollupMark.objects.values_list("updated_before", flat=True).first(),
        "rollup_interval": settings.ROLLUP_INTERVAL,
        "legend": legend(
            {
                "delivered": COLOURS["delivered"],
                "delivered (assumed)": COLOURS["assumed"],
                "failed": COLOURS["failed"],
                "not final yet": COLOURS["pending"],
            }
        ),
        "by_provider": funnel(rollups.grouped(rows, "provider"), links, "provider", dict(Provider.choices)),
        "by_channel": funnel(rollups.grouped(rows, "channel"), links, "channel"),
        "by_campaign": funnel(top_campaigns(rows), links, "campaign"),
        "over_time": over_time(window, now),
        "latency": latency(rows),
        "failures": failures(failed, links),
        "rate_text": "-" if overall["delivery_rate"] is None else f"{overall['delivery_rate']:.1%}",
        "review": review,
        "review_total": sum(row["count"] for row in review),
        "inbox": inbox(),
        "crm": relay,
        "crm_lag": ("none waiting" if relay.pushing else "nothing pushed")
        if relay.lag is None
        else duration(relay.lag.total_seconds()),
        "time_legend": legend(
            {"delivered": COLOURS["delivered"], "failed": COLOURS["failed"], "not final yet": COLOURS["pending"]}
        ),
        "suppressions": suppressions_added(since, links),
        "providers": providers(now),
    }
    return TemplateResponse(request, "admin/dashboard.html", context)


class Links:
    """URLs of the lists behind the figures, filtered to the window (the admin's date filter takes days)."""

    def __init__(self, since: datetime) -> None:
        self.since = timezone.localtime(since).date().isoformat()

    def messages(self, **filters: Any) -> str:
        query = {"created_at__range__gte": self.since, **{f"{k}__exact": v for k, v in filters.items()}}
        return f"{reverse('admin:receipts_message_changelist')}?{urlencode(query)}"

    def review(self, reason: str = "") -> str:
        query = f"?{urlencode({'review_reason__exact': reason})}" if reason else ""
        return f"{reverse('admin:receipts_reviewqueue_changelist')}{query}"

    @staticmethod
    def inbox(state: str) -> str:
        return f"{reverse('admin:receipts_receiptevent_changelist')}?{urlencode({'state__exact': state})}"

    def suppressions(self, reason: str) -> str:
        query = {"reason__exact": reason, "created_at__range__gte": self.since}
        return f"{reverse('admin:receipts_suppression_changelist')}?{urlencode(query)}"


def segments(f: dict[str, Any], link: str = "") -> list[Segment]:
    other = f["messages"] - f["delivered"] - f["failed"] - f["pending"]
    return [
        Segment("delivered", f["delivered"] - f["assumed"], COLOURS["delivered"], link),
        Segment("delivered (assumed)", f["assumed"], COLOURS["assumed"], link),
        Segment("failed", f["failed"], COLOURS["failed"], link),
        Segment("not final yet", f["pending"], COLOURS["pending"], link),
        Segment("other", other, COLOURS["other"], link),
    ]


def rate_note(f: dict[str, Any]) -> str:
    rate = f["delivery_rate"]
    shown = "no final yet" if rate is None else f"{rate:.1%} delivered"
    return f"{f['messages']:,} · {shown}"


def funnel(groups: dict[tuple, dict[str, Any]], links: Links, field: str, names: dict | None = None) -> Any:
    bars = []
    for (value,), f in groups.items():
        label = (names or {}).get(value, value)
        if field == "campaign":
            value, label = value
            link = links.messages(campaign__id=value) if value else links.messages()
        else:
            link = links.messages(**{field: value})
        bars.append(Bar(str(label), segments(f), rate_note(f), link))
    return stacked_bars(bars)


def top_campaigns(rows: list[dict[str, Any]], top: int = 10) -> dict[tuple, dict[str, Any]]:
    groups = list(rollups.grouped(rows, "campaign_id").items())[:top]
    names = dict(Campaign.objects.filter(pk__in=[key[0] for key, _ in groups]).values_list("pk", "name"))
    return {((pk, names.get(pk, "(no campaign)")),): f for (pk,), f in groups}


def over_time(window: str, now: datetime) -> Any:
    hourly = rollups.WINDOWS[window] <= rollups.DAY
    period = DeliveryStats.Period.HOUR if hourly else DeliveryStats.Period.DAY
    step = rollups.HOUR if hourly else rollups.DAY
    since = rollups.truncate(now - rollups.WINDOWS[window] + step, step)
    points: dict[datetime, dict[str, float]] = {}
    moment = since
    while moment <= now:
        points[moment] = {"delivered": 0, "failed": 0, "pending": 0, "other": 0}
        moment += step
    for row in rollups.series(period, since):
        status = row["status"]
        kind = "delivered" if status == "delivered" else "failed" if status in rollups.FAILURES else "pending"
        if row["start"] in points:
            points[row["start"]][kind] += row["messages"]
    label = "%H:00" if hourly else "%b %d"
    return columns(
        [
            (
                timezone.localtime(start).strftime(label),
                [Segment(kind, value, COLOURS[kind]) for kind, value in counts.items()],
            )
            for start, counts in points.items()
        ],
        width=360,  # narrow enough that its text stays legible on a phone (an SVG's text shrinks with it)
        every=max(math.ceil(len(points) / 5), 1),
    )


def latency(rows: list[dict[str, Any]]) -> list[dict[str, Any]]:
    shown = []
    for (provider,), f in rollups.grouped(rows, "provider").items():
        shown.append(
            {
                "provider": Provider(provider).label,
                "final": f["final"],
                "p50": seconds(f["latency_p50"]),
                "p95": seconds(f["latency_p95"]),
            }
        )
    return shown


def duration(value: float) -> str:
    if value < 60:
        return f"{value:.1f} s"
    if value < 3600:
        return f"{value / 60:.1f} min"
    return f"{value / 3600:.1f} h"


def seconds(value: float | None) -> str:
    if value is None:
        return "-"
    if value == float("inf"):
        return "over 1 day"
    if value < 60:
        return f"≤ {value:.0f} s"
    if value < 3600:
        return f"≤ {value / 60:.0f} min"
    return f"≤ {value / 3600:.0f} h"


def failures(rows: list[dict[str, Any]], links: Links) -> dict[str, Any]:
    found = rollups.failures(rows)
    bars = [
        Bar(category, [Segment(category, n, COLOURS["failed"])], f"{n:,}", links.messages(failure_category=category))
        for category, n in found["by_category"].items()
    ]
    return {
        "chart": stacked_bars(bars) if bars else None,
        "codes": [{"provider": p, "code": code, "messages": n} for (p, code), n in found["top_codes"]],
    }


def review_queue(now: datetime, links: Links) -> list[dict[str, Any]]:
    """The queue's size by reason from the counts the database keeps (receipts.tallies: a count over the queue
    took a second at 97,000 items), and each reason's oldest item, the first entry of its index range."""
    counted = tallies.counts(tallies.REVIEW)
    queue = Message.objects.filter(needs_review=True).order_by("created_at")
    return [
        {
            "reason": reason or "-",
            "count": counted[reason],
            "oldest": queue.filter(review_reason=reason).values_list("created_at", flat=True).first(),
            "link": links.review(reason),
        }
        for reason in sorted(counted)
    ]


def inbox() -> list[dict[str, Any]]:
    counts = dict(
        ReceiptEvent.objects.filter(state__in=INBOX_STATES)
        .values("state")
        .annotate(n=Count("*"))
        .values_list("state", "n")
    )
    return [{"state": state, "count": counts.get(state, 0), "link": Links.inbox(state)} for state in INBOX_STATES]


def suppressions_added(since: datetime, links: Links) -> list[dict[str, Any]]:
    added = Suppression.objects.filter(created_at__gte=since).values("reason").annotate(n=Count("*")).order_by("-n")
    return [{**row, "link": links.suppressions(row["reason"])} for row in added]


def last_receipt_at(provider: str) -> datetime | None:
    """When the provider's last receipt came (the (provider, received_at) index: at once, even for one long
    silent)."""
    rows = ReceiptEvent.objects.filter(provider=provider).order_by("-received_at")
    return rows.values_list("received_at", flat=True).first()


def providers(now: datetime) -> list[dict[str, Any]]:
    """Per provider: when its last receipt came, receipts a minute over the last 5, messages still in flight;
    silent when some are in flight and nothing came for PROVIDER_SILENT_MINUTES."""
    silent_after = timedelta(minutes=settings.PROVIDER_SILENT_MINUTES)
    in_flight_by_provider = tallies.counts(tallies.IN_FLIGHT)  # kept by the database (receipts.tallies)
    shown = []
    for provider in Provider:
        last = last_receipt_at(provider)
        recent = ReceiptEvent.objects.filter(provider=provider, received_at__gte=now - timedelta(minutes=5)).count()
        in_flight = in_flight_by_provider.get(provider, 0)
        shown.append(
            {
                "provider": provider.label,
                "last": last,
                "per_minute": recent / 5,
                "in_flight": in_flight,
                "silent": in_flight > 0 and (last is None or now - last > silent_after),
            }
        )
    return shown
