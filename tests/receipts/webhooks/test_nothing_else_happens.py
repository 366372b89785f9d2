"""Nothing else happens in the request: one INSERT at most, no message or timeline entry written by the post."""

from __future__ import annotations

from typing import Any

import pytest

from receipts.models import InboxState, Message, MessageEvent, ReceiptEvent
from tests.conftest import post_webhook, register
from tests.receipts.webhooks.cases import BY_PROVIDER, JSON, Case, each_provider, post

pytestmark = pytest.mark.django_db


def test_ingest_runs_only_the_inbox_insert(client: Any, django_assert_max_num_queries: Any) -> None:
    case = BY_PROVIDER["generic"]
    register(provider="generic", provider_message_id="msg-7a3b9c2d-1e4f-5a6b-7c8d-9e0f1a2b3c4d")

    # One statement, in autocommit: INSERT INTO receipts_receiptevent ... ON CONFLICT DO NOTHING RETURNING id
    # (SQLite spells it INSERT OR IGNORE).
    # Authentication, parsing and the dedupe key are pure Python; no session, user or message lookup happens,
    # no transaction is opened, and the duplicate check is the unique constraint, not a SELECT.
    with django_assert_max_num_queries(1) as captured:
        response = post(client, case.provider, case.body, JSON, **case.signed())

    assert response.status_code == 200
    [insert] = [q["sql"] for q in captured.captured_queries]
    assert '"receipts_receiptevent"' in insert.split("(")[0]
    assert "ON CONFLICT DO NOTHING" in insert or insert.startswith("INSERT OR IGNORE")
    assert insert.endswith('RETURNING "receipts_receiptevent"."id"')


def test_a_duplicate_costs_one_insert_that_does_nothing(client: Any, django_assert_max_num_queries: Any) -> None:
    case = BY_PROVIDER["generic"]
    post_webhook(client, case.provider, case.body)

    # The same single INSERT, which the unique constraint turns into nothing: no error, no rollback.
    with django_assert_max_num_queries(1) as captured:
        response = post_webhook(client, case.provider, case.body)

    assert response.json() == {"accepted": 0, "duplicates": 1}
    statements = [q["sql"].split()[0].upper() for q in captured.captured_queries]
    assert statements == ["INSERT"]
    assert ReceiptEvent.objects.filter(provider=case.provider).count() == 1


def test_a_rejected_body_costs_one_insert(client: Any, django_assert_max_num_queries: Any) -> None:
    with django_assert_max_num_queries(1) as captured:
        response = post_webhook(client, "generic", b"{}")

    assert response.status_code == 400
    assert captured.captured_queries[0]["sql"].split()[0].upper() == "INSERT"


def test_refused_request_touches_no_table(client: Any, django_assert_num_queries: Any) -> None:
    case = BY_PROVIDER["generic"]
    with django_assert_num_queries(0):
        post(client, case.provider, case.body, JSON, **case.signed(secret=case.other_secret))


@each_provider
def test_the_post_itself_creates_no_message_and_no_timeline_entry(client: Any, case: Case) -> None:
    # A message the receipt would match, so processing in the request would show on it.
    refs = {
        "genesys_cloud": {"provider_message_id": "8c1f5e3a2b7d4c9e"},
        "genesys_sms": {"provider_message_id": "4f9c2b1e-7a0d-4c1e-9a51-2d8f3e6b7c10"},
        "webex_connect": {
            "provider_message_id": "4b72d8a2-290d-49e2-993e-3bd8edf31c81",
            "channel": "email",
            "to": "destination@domain.tld",
        },
        "generic": {"provider_message_id": "msg-7a3b9c2d-1e4f-5a6b-7c8d-9e0f1a2b3c4d"},
    }
    message = register(provider=case.provider, **refs[case.provider])

    response = post(client, case.provider, case.body, case.content_type, **case.signed())

    assert response.status_code == 200
    assert Message.objects.count() == 1
    assert MessageEvent.objects.count() == 0
    message.refresh_from_db()
    assert message.status == "pending"
    assert ReceiptEvent.objects.get().state == InboxState.RECEIVED
