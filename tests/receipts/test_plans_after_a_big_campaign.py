"""After a big campaign (issue 23): a million sends of one kind at the end of the message table. Jobs and filters
must not walk the primary key past it; here the plans PostgreSQL chooses for the app's own queries over a skewed
table, ANALYZEd, are checked (index and direction, never times). The behaviour around each runs on both
databases."""

from __future__ import annotations

from datetime import datetime, timedelta
from typing import Any

import pytest
from django.utils import timezone

from receipts.actions import review
from receipts.models import Message
from tests import plans
from tests.conftest import is_postgres

pytestmark = pytest.mark.django_db

BEFORE = 40_000  # messages of every kind, the months before
CAMPAIGN = 40_000  # the big campaign's, all SMS through one provider, three days ago; 1 in 10 still 'sent'
STILL_SENT = 10


def message(**fields: Any) -> Message:
    data: dict[str, Any] = {
        "channel": "sms",
        "provider": "genesys_sms",
        "provider_message_id": "template",
        "to": "+15550000000",
        "status": "delivered",
        "priority": "normal",
        **fields,
    }
    return Message.objects.create(**data)


def skewed(now: datetime) -> None:
    """BEFORE messages of every channel, provider, failure, priority and review reason, then the big campaign's
    CAMPAIGN at the end of the table (PostgreSQL: INSERT ... SELECT generate_series), then ANALYZE."""
    template = message(created_at=now - timedelta(days=60), sent_at=now - timedelta(days=60))
    email = "g %% 20 < 7"
    plans.clone(
        template,
        BEFORE,
        channel=f"CASE WHEN {email} THEN 'email' ELSE 'sms' END",
        to=f"CASE WHEN {email} THEN 'p' || g || '@example.com' ELSE '+1555' || lpad(g::text, 7, '0') END",
        provider="(ARRAY['genesys_cloud', 'genesys_sms', 'webex_connect', 'generic'])[1 + g %% 4]",
        provider_message_id="'before-' || g",
        status="CASE WHEN g %% 17 = 0 THEN 'failed' ELSE 'delivered' END",
        failure_category="CASE WHEN g %% 17 = 0 THEN "
        "(ARRAY['invalid_destination', 'carrier_throttle', 'sender_config'])[1 + g %% 3] ELSE '' END",
        priority="CASE WHEN g %% 33 = 0 THEN 'critical' ELSE 'normal' END",
        needs_review="g %% 100 = 0",
        review_reason="CASE WHEN g %% 100 = 0 THEN 'conflicting_receipts' ELSE '' END",
        created_at="t.created_at + g * interval '1 minute'",
        sent_at="t.created_at + g * interval '1 minute'",
        updated_at="t.created_at + g * interval '1 minute'",
    )
    start = "(now() - interval '3 days')"
    plans.clone(
        template,
        CAMPAIGN,
        to="'+1556' || lpad(g::text, 7, '0')",
        provider_message_id="'campaign-' || g",
        status=f"CASE WHEN g %% {STILL_SENT} = 0 THEN 'sent' ELSE 'delivered' END",
        created_at=f"{start} + g * interval '12 milliseconds'",
        sent_at=f"{start} + g * interval '12 milliseconds'",
        updated_at=f"{start} + g * interval '12 milliseconds'",
    )
    plans.analyze("receipts_message")


@pytest.fixture
def after_a_big_campaign() -> datetime:
    if not is_postgres():
        pytest.skip("a plan test: EXPLAIN (FORMAT JSON) and the planner's choices are PostgreSQL's")
    now = timezone.now()
    skewed(now)
    return now


# --- the receipt timeout (item 3) ----------------------------------------------------------------------------


def test_the_receipt_timeout_settles_overdue_messages_behind_settled_ones_sent_or_never_sent() -> None:
    now = timezone.now()
    day = timedelta(days=1)
    for n in range(5):
        message(provider_message_id=f"settled-{n}", sent_at=now - 5 * day)
    overdue = [message(provider_message_id=f"sent-{n}", status="sent", sent_at=now - 3 * day) for n in range(3)]
    overdue += [message(provider_message_id=f"never-{n}", status="pending", created_at=now - 2 * day) for n in range(2)]
    recent = message(provider_message_id="recent", status="sent", sent_at=now - timedelta(hours=1))

    settled = [review.expire_receipts(now, limit=2) for _ in range(4)]

    assert settled == [2, 2, 1, 0]
    assert {m.pk for m in Message.objects.filter(assumed=True)} == {m.pk for m in overdue}
    recent.refresh_from_db()
    assert (recent.status, recent.assumed) == ("sent", False)


def test_the_receipt_timeout_reads_the_in_flight_index_not_the_primary_key(after_a_big_campaign: datetime) -> None:
    now = after_a_big_campaign
    for sql in plans.queries(lambda: review.expire_receipts(now), "FOR UPDATE"):
        found = plans.scans(sql, "receipts_message")
        assert found, plans.describe(sql)
        assert all(index == "message_in_flight_idx" for _, index, _ in found), plans.describe(sql)
    # The first batch of 500 was settled.
    assert Message.objects.filter(status="sent").count() == CAMPAIGN // STILL_SENT - 500


# --- the lists' filters and sorts (item 4) ------------------------------------------------------------------

# Each filter or sort of the message list, with the index whose range answers it in the list's order.
LIST_PLANS = [
    ("channel__exact=email", "msg_ch_email_idx"),
    ("provider__exact=generic", "msg_pv_generic_idx"),
    ("failure_category__exact=sender_config", "msg_fc_sender_config_idx"),
    ("priority__exact=critical", "msg_pt_critical_idx"),
    ("review_reason__exact=conflicting_receipts", "msg_rr_conflicting_rece_idx"),
    ("needs_review__exact=1", "message_needs_review_id_idx"),
    ("o=3", "message_to_id_idx"),  # sorted by address (list_display[3], "recipient")
    ("o=4", "message_status_id_idx"),  # sorted by status (list_display[4], "status_detail")
]


def page_query(found: list[str]) -> str:
    pages = [sql for sql in found if 'FROM "receipts_message"' in sql and "ORDER BY" in sql]
    assert pages, found
    return pages[0]


def test_a_filtered_or_sorted_message_list_reads_its_index_not_the_primary_key_backwards(
    admin_client: Any, after_a_big_campaign: datetime
) -> None:
    wrong = {}
    for query, index in LIST_PLANS:  # one skewed table for all of them: it takes seconds to build

        def get(query: str = query) -> None:
            assert admin_client.get(f"/admin/receipts/message/?{query}").status_code == 200

        sql = page_query(plans.queries(get, "LIMIT"))
        if [name for _, name, _ in plans.scans(sql, "receipts_message")] != [index]:
            wrong[query] = f"expected {index}:\n{plans.describe(sql)}"
    assert not wrong, "\n\n".join(f"?{query}: {plan}" for query, plan in wrong.items())


def test_the_api_filtered_by_channel_reads_its_index_not_the_primary_key_backwards(
    api: Any, after_a_big_campaign: datetime
) -> None:
    def get() -> None:
        response = api.get("/api/v1/messages/?channel=email")
        assert response.status_code == 200
        assert {m["channel"] for m in response.json()["results"]} == {"email"}

    sql = page_query(plans.queries(get, "LIMIT"))
    assert [name for _, name, _ in plans.scans(sql, "receipts_message")] == ["msg_ch_email_idx"], plans.describe(sql)
