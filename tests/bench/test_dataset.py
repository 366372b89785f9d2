"""bench/dataset.py at a tiny scale against the current schema, so that a new NOT NULL column (a campaign's
audience, a message's confirmation, an escalation's fallback) cannot break the scale set silently again (issue 23).
The builder is PostgreSQL only (``INSERT ... SELECT generate_series``, ``hashint8extended``)."""

from __future__ import annotations

import os
import sys
from pathlib import Path
from urllib.parse import urlsplit, urlunsplit

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[2] / "bench"))
import dataset

URL = os.environ.get("DATABASE_URL", "")

pytestmark = pytest.mark.skipif(
    urlsplit(URL).scheme not in ("postgres", "postgresql"),
    reason="bench/dataset.py builds in PostgreSQL only (DATABASE_URL=postgres://...)",
)


@pytest.fixture
def scratch_url() -> str:
    """A database of the test's own beside the test database, dropped after."""
    parts = urlsplit(URL)
    url = urlunsplit(parts._replace(path=f"{parts.path.rstrip('/')}_dataset"))
    if dataset.database_exists(url):
        dataset.drop_database(url)
    dataset.create_database(url)
    yield url
    dataset.drop_database(url)


def test_the_scale_set_builds_with_its_skew_on_the_current_schema(scratch_url: str) -> None:
    dataset.migrate(scratch_url, lambda text: None)
    info = dataset.Builder(scratch_url, 0.0001, dataset.DEFAULT_SEED, lambda text: None, big_campaign=200).build()

    counts = info.counts
    assert counts["receipts_message"] == 1000 + 1 + 200 + dataset.HEAVY_PHONE_MESSAGES
    assert counts["campaigns_contact"] == counts["campaigns_send"] == 200
    assert counts["crm_sync_outboxmessage"] == 100 + dataset.HEAVY_RECORD_CHANGES
    assert counts["campaigns_campaign"] == 21
    with dataset.psycopg.connect(scratch_url) as conn:
        big = conn.execute(
            "SELECT count(*), count(*) FILTER (WHERE status = 'sent'), min(created_at) FROM receipts_message "
            "WHERE campaign_id = %s",
            [info.big_campaign_id],
        ).fetchone()
        heavy_phone = conn.execute('SELECT count(*) FROM receipts_message WHERE "to" = %s', [dataset.HEAVY_PHONE])
        heavy_record = conn.execute(
            "SELECT count(*) FROM crm_sync_outboxmessage WHERE crm_record_id = %s", [dataset.HEAVY_RECORD]
        )
        sends = conn.execute(
            "SELECT count(*) FROM campaigns_send s JOIN receipts_message m ON m.id = s.message_id "
            "WHERE s.campaign_id = %s AND s.state = 'sent'",
            [info.big_campaign_id],
        ).fetchone()
        # The counts the app keeps with its triggers (receipts.tallies) followed the bulk load.
        tallied = conn.execute(
            "SELECT (SELECT sum(n) FROM receipts_tally WHERE kind = 'in_flight'), (SELECT count(*) FROM "
            "receipts_message WHERE status NOT IN ('bounced', 'delivered', 'expired', 'failed', 'rejected')), "
            "(SELECT sum(n) FROM receipts_tally WHERE kind = 'sends' AND scope = %s)",
            [info.big_campaign_id],
        ).fetchone()
        assert heavy_phone.fetchone() == (dataset.HEAVY_PHONE_MESSAGES,)
        assert heavy_record.fetchone() == (dataset.HEAVY_RECORD_CHANGES,)
    assert big is not None and big[0] == 200 and 0 < big[1] < 20  # about 3% still in flight
    assert (info.built_at - big[2]).days == 3
    assert sends == (200,)
    assert tallied is not None and tallied[0] == tallied[1] and tallied[2] == 200
    assert info.complete
