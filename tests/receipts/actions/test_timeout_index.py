"""The receipt-timeout scan runs every minute over a table that grows to millions of settled messages: on
PostgreSQL it can use the partial index of messages not final yet, whose predicate is the scan's own."""

from __future__ import annotations

from datetime import timedelta

import pytest
from django.db import connection
from django.utils import timezone

from receipts.models import NOT_FINAL, Message
from tests.conftest import is_postgres, register

pytestmark = pytest.mark.django_db


def test_the_timeout_scan_can_use_the_in_flight_index() -> None:
    if not is_postgres():
        pytest.skip("partial indexes and EXPLAIN as PostgreSQL plans them")
    register(provider_message_id="in-flight-1")
    cutoff = timezone.now() - timedelta(hours=24)
    overdue = Message.objects.filter(NOT_FINAL).filter(sent_at__lt=cutoff)
    sql, params = overdue.query.sql_with_params()

    with connection.cursor() as cursor:
        cursor.execute("SET LOCAL enable_seqscan = off")  # a handful of rows: make the planner show its options
        cursor.execute(f"EXPLAIN {sql}", params)
        plan = "\n".join(row[0] for row in cursor.fetchall())

    assert "message_in_flight_idx" in plan, plan
