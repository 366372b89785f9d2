"""The sends list after a big campaign (issue 23): a million sends of one kind at the end of the table. Each
filter of the list must read an index of its own rows, not walk the primary key backwards past the campaign (or
read the whole table and sort it). PostgreSQL's plans for the admin's own queries over a skewed table, ANALYZEd;
the filters' behaviour is tested on both databases in test_big_table_admin.py."""

from __future__ import annotations

from typing import Any

import pytest

from campaigns.models import Campaign, Send
from tests import plans
from tests.conftest import is_postgres

pytestmark = pytest.mark.django_db

BEFORE = 30_000  # sends of every kind, of other campaigns and of the API
CAMPAIGN = 60_000  # the big campaign's: SMS through Genesys SMS Aggregation, all sent

LIST_PLANS = [
    ("provider__exact=genesys_cloud", "send_pv_genesys_cloud_idx"),
    ("channel__exact=email", "send_ch_email_idx"),
    ("state__exact=failed", "send_st_failed_idx"),
    ("state__exact=unknown", "send_st_unknown_idx"),
    ("campaign__id__exact={older}", "send_campaign_id_idx"),
]


@pytest.fixture
def after_a_big_campaign() -> dict[str, int]:
    if not is_postgres():
        pytest.skip("a plan test: EXPLAIN (FORMAT JSON) and the planner's choices are PostgreSQL's")
    older = Campaign.objects.create(name="older")
    big = Campaign.objects.create(name="big")
    template = Send.objects.create(channel="sms", provider="genesys_sms", to="+15550000000", state="sent")
    email = "g %% 3 = 0"
    plans.clone(
        template,
        BEFORE,
        channel=f"CASE WHEN {email} THEN 'email' ELSE 'sms' END",
        to=f"CASE WHEN {email} THEN 'p' || g || '@example.com' ELSE '+1555' || lpad(g::text, 7, '0') END",
        provider="(ARRAY['genesys_cloud', 'genesys_sms', 'webex_connect'])[1 + g %% 3]",
        state="(ARRAY['sent', 'sent', 'sent', 'sent', 'failed', 'suppressed', 'unknown', 'cancelled'])[1 + g %% 8]",
        campaign_id=f"CASE WHEN g %% 2 = 0 THEN {older.pk} END",
    )
    plans.clone(template, CAMPAIGN, to="'+1556' || lpad(g::text, 7, '0')", campaign_id=str(big.pk))
    plans.analyze("campaigns_send")
    return {"older": older.pk}


def test_a_filtered_sends_list_reads_its_index_not_the_primary_key(
    admin_client: Any, after_a_big_campaign: dict[str, int]
) -> None:
    wrong = {}
    for query, index in LIST_PLANS:
        path = f"/admin/campaigns/send/?{query.format(**after_a_big_campaign)}"

        def get(path: str = path) -> None:
            assert admin_client.get(path).status_code == 200

        pages = [sql for sql in plans.queries(get, "LIMIT") if 'FROM "campaigns_send"' in sql and "ORDER BY" in sql]
        assert pages, path
        found = [name for _, name, _ in plans.scans(pages[0], "campaigns_send")]
        if found != [index]:
            wrong[query] = f"expected {index}, found {found}:\n{plans.describe(pages[0])}"
    assert not wrong, "\n\n".join(f"?{query}: {plan}" for query, plan in wrong.items())
