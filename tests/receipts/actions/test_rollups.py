"""The delivery rollups equal a COUNT over the messages: on a random data set, after receipts out of order and
twice, conflicts, assumed deliveries, review settlements and an erasure, counted again only where something
changed."""

from __future__ import annotations

import json
import random
from collections import Counter
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from django.test import Client
from django.utils import timezone

from receipts.actions import retention, review, rollups
from receipts.actions.review import Settlement
from receipts.models import DeliveryStats, Message, ReviewResolution
from receipts.status import FINAL_STATUSES
from tests.conftest import drain, post_webhook, register

pytestmark = pytest.mark.django_db

STATUSES = ["sent", "delivered", "failed", "rejected", "expired", "bounced", "read"]
CODES = {"failed": "blocked", "rejected": "invalid_number", "bounced": "hard_bounce", "expired": "ttl"}


def counted_from_messages() -> Counter:
    """What the rollups must say, counted the slow way."""
    counts: Counter = Counter()
    for m in Message.objects.all():
        hour = m.created_at.astimezone(UTC).replace(minute=0, second=0, microsecond=0)
        failed = m.status in rollups.FAILURES
        key = (
            hour,
            m.provider,
            m.channel,
            m.campaign_id or 0,
            m.status,
            m.assumed,
            m.failure_category if failed else "",
        )
        counts[key] += 1
        counts[("review", hour)] += m.needs_review
        counts[("read", hour)] += m.read_count > 0
        counts[("final-with-latency", hour)] += m.status in FINAL_STATUSES and m.sent_at is not None
    return +counts


def counted_by_rollups(period: str = DeliveryStats.Period.HOUR) -> Counter:
    counts: Counter = Counter()
    for r in DeliveryStats.objects.filter(period=period):
        key = (r.start, r.provider, r.channel, r.campaign_id, r.status, r.assumed, r.failure_category)
        counts[key] += r.messages
        counts[("review", r.start)] += r.needs_review
        counts[("read", r.start)] += r.read
        counts[("final-with-latency", r.start)] += sum(getattr(r, f) for f in rollups.LATENCY_FIELDS)
    return +counts


def day_of(counts: Counter) -> Counter:
    days: Counter = Counter()
    for key, n in counts.items():
        start = key[0] if isinstance(key[0], datetime) else key[1]
        day = start.replace(hour=0)
        days[(day, *key[1:]) if isinstance(key[0], datetime) else (key[0], day)] += n
    return days


def receipt(client: Client, message_id: str, status: str, at: datetime, to: str) -> None:
    body = {"id": message_id, "status": status, "timestamp": at.isoformat(), "to": to}
    if status in CODES:
        body["errorCode"] = CODES[status]
    assert post_webhook(client, "generic", json.dumps(body)).status_code == 200


def test_the_rollups_equal_a_count_over_the_messages_through_every_kind_of_change(
    client: Client, settings: Any
) -> None:
    rng = random.Random(20261128)
    now = timezone.now()
    messages = []
    for i in range(120):
        channel = rng.choice(["sms", "email"])
        to = f"+1555{i:07}" if channel == "sms" else f"user{i}@example.com"
        message = register(
            channel=channel,
            provider_message_id=f"r-{i}",
            to=to,
            campaign=rng.choice(["spring", "autumn", ""]),
        )
        messages.append(message)
    # Spread over 30 hours and two days.
    for message in messages:
        created = now - timedelta(hours=rng.randrange(30), minutes=rng.randrange(60))
        Message.objects.filter(pk=message.pk).update(created_at=created)

    assert rollups.refresh() == len(
        {m.created_at.replace(minute=0, second=0, microsecond=0) for m in Message.objects.all()}
    )
    assert counted_by_rollups() == counted_from_messages()

    # Receipts in random order, some twice, some conflicting (delivered then failed).
    sends = []
    for message in messages[:100]:
        for status in rng.sample(STATUSES, rng.randrange(1, 4)):
            sends.append((message, status, now - timedelta(minutes=rng.randrange(120))))
    sends += rng.sample(sends, 20)
    rng.shuffle(sends)
    for message, status, at in sends:
        receipt(client, message.provider_message_id, status, at, message.to)
    drain()
    rollups.refresh()
    assert counted_by_rollups() == counted_from_messages()
    assert counted_by_rollups(DeliveryStats.Period.DAY) == day_of(counted_from_messages())

    # The rest never hear back: assumed delivered after the timeout, for review; then operators settle some.
    settings.RECEIPT_TIMEOUT = timedelta(seconds=0)
    while review.expire_receipts():
        pass
    under_review = list(Message.objects.filter(needs_review=True).values_list("pk", flat=True))
    assert under_review
    review.settle(under_review[: len(under_review) // 2], Settlement(action=ReviewResolution.Action.CONFIRM_DELIVERED))
    rollups.refresh()
    assert counted_by_rollups() == counted_from_messages()

    # An erasure deletes messages: their hours are counted again though no message there was updated.
    gone = messages[0]
    retention.erase_address(gone.to, requested_by="test")
    rollups.refresh()
    assert counted_by_rollups() == counted_from_messages()
    assert counted_by_rollups(DeliveryStats.Period.DAY) == day_of(counted_from_messages())


def test_a_refresh_counts_again_only_the_hours_that_changed() -> None:
    old = register(provider_message_id="old")
    new = register(provider_message_id="new")
    an_hour_ago = timezone.now() - timedelta(hours=1)
    Message.objects.filter(pk=old.pk).update(created_at=timezone.now() - timedelta(days=3), updated_at=an_hour_ago)
    Message.objects.filter(pk=new.pk).update(updated_at=an_hour_ago)
    assert rollups.refresh() == 2  # the first run counts every hour
    assert rollups.refresh() == 0
    Message.objects.filter(pk=new.pk).update(status="delivered", updated_at=timezone.now())
    assert rollups.refresh() == 1
    # Within the margin, the same hour is counted once more: its change may have committed late.
    assert rollups.refresh() == 1
    assert rollups.refresh(now=timezone.now() + 2 * rollups.MARGIN) == 1
    assert rollups.refresh() == 0


def test_one_refresh_at_a_time() -> None:
    register(provider_message_id="m-1")
    mark = rollups.take_lease(timezone.now())
    assert mark is not None
    assert rollups.refresh() is None  # the lease is held
    assert rollups.refresh(now=timezone.now() + 2 * rollups.LEASE) == 1  # a lease not renewed runs out


def test_figures_from_the_rollups() -> None:
    rows = [
        {
            "status": "delivered",
            "messages": 90,
            "needs_review": 0,
            "read": 30,
            "clicked": 3,
            "complained": 0,
            "assumed": False,
            **dict.fromkeys(rollups.LATENCY_FIELDS, 0),
            "latency_0": 60,
            "latency_3": 30,
        },
        {
            "status": "delivered",
            "messages": 5,
            "needs_review": 5,
            "read": 0,
            "clicked": 0,
            "complained": 0,
            "assumed": True,
            **dict.fromkeys(rollups.LATENCY_FIELDS, 0),
        },
        {
            "status": "failed",
            "messages": 5,
            "needs_review": 0,
            "read": 0,
            "clicked": 0,
            "complained": 0,
            "assumed": False,
            **dict.fromkeys(rollups.LATENCY_FIELDS, 0),
            "latency_12": 5,
        },
        {
            "status": "sent",
            "messages": 10,
            "needs_review": 0,
            "read": 0,
            "clicked": 0,
            "complained": 0,
            "assumed": False,
            **dict.fromkeys(rollups.LATENCY_FIELDS, 0),
        },
    ]
    got = rollups.figures(rows)
    assert (got["messages"], got["final"], got["delivered"], got["failed"], got["pending"]) == (110, 100, 95, 5, 10)
    assert got["delivery_rate"] == pytest.approx(0.95)
    assert (got["assumed"], got["needs_review"], got["read"]) == (5, 5, 30)
    assert got["latency_p50"] == 5.0  # 60 of 95 within the first bucket (5 s)
    assert got["latency_p95"] == float("inf")  # 90 of 95 by 60 s: the slowest 5 are past the last bound
    assert rollups.figures([])["delivery_rate"] is None
