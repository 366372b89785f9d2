"""Queries over a table that grows to millions of messages use an index made for them (PostgreSQL EXPLAIN): the
receipt-timeout scan (every minute) the partial index of messages not final yet, whose predicate is the scan's
own; a campaign's messages newest first, the (campaign, id) index."""

from __future__ import annotations

from datetime import timedelta

import pytest
from django.db import connection
from django.db.models import QuerySet
from django.utils import timezone

from receipts.models import NOT_FINAL, Message
from tests.conftest import is_postgres, register

pytestmark = pytest.mark.django_db


def plan_of(queryset: QuerySet, *, ordered: bool = False) -> str:
    """The plan on a table of a handful of rows, with the planner made to show whether an index can serve the
    query (no sequential scan; with ``ordered``, no sort either: the index must give the order)."""
    if not is_postgres():
        pytest.skip("partial indexes and EXPLAIN as PostgreSQL plans them")
    sql, params = queryset.query.sql_with_params()
    with connection.cursor() as cursor:
        # Statistics of this table as it is now: another test's ANALYZE of a big table outlives its rollback.
        cursor.execute(f"ANALYZE {queryset.model._meta.db_table}")
        cursor.execute("SET LOCAL enable_seqscan = off")
        if ordered:
            cursor.execute("SET LOCAL enable_sort = off")
        cursor.execute(f"EXPLAIN {sql}", params)
        return "\n".join(row[0] for row in cursor.fetchall())


def test_the_timeout_scan_can_use_the_in_flight_index() -> None:
    register(provider_message_id="in-flight-1")
    cutoff = timezone.now() - timedelta(hours=24)
    plan = plan_of(Message.objects.filter(NOT_FINAL).filter(sent_at__lt=cutoff).order_by())

    assert "message_in_flight_idx" in plan, plan


def test_a_campaigns_messages_newest_first_are_a_range_of_one_index() -> None:
    message = register(provider_message_id="c-1", campaign="spring")
    plan = plan_of(Message.objects.filter(campaign_id=message.campaign_id).order_by("-id")[:100])

    assert "message_campaign_idx" in plan, plan
    assert "Sort" not in plan, plan


def test_the_review_queue_in_its_order_is_a_range_of_its_index() -> None:
    from receipts.models import REVIEW_ORDER

    register(provider_message_id="r-1")
    queue = Message.objects.filter(needs_review=True).order_by(REVIEW_ORDER.asc(), "created_at")[:100]
    plan = plan_of(queue, ordered=True)

    assert "message_review_idx" in plan, plan
    assert "Sort" not in plan, plan
