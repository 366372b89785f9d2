"""GET /api/v1/changes/: a monotonic cursor, pages, filters, scopes, and no gaps when writers commit out of order."""

from __future__ import annotations

import json
import threading
from typing import Any

import pytest
from django.db import connection, transaction
from django.utils import timezone
from rest_framework.test import APIClient

from crm_sync.models import OutboxMessage
from receipts.events import Kind, publish
from receipts.models import ApiClient
from tests.apprunner import READY_TIMEOUT, wait_until
from tests.conftest import is_postgres
from tests.crm_sync.conftest import change, publish_changes

URL = "/api/v1/changes/"
# Real commits: on PostgreSQL the feed serves only what committed transactions wrote, and a test wrapped in
# one open transaction would see nothing of its own.
feed_db = pytest.mark.django_db(transaction=True)


def settle(api: APIClient, count: int) -> None:
    """Wait until the feed serves ``count`` changes.

    On PostgreSQL the feed's horizon is the oldest transaction still running on the whole server, so another
    program's open transaction (a test run next door) holds fresh changes back for a while: lag, never a gap.
    """
    wait_until(lambda: len(api.get(URL, {"page_size": 1000}).json()["results"]) >= count, "the feed horizon")


def read_all(api: APIClient, after: str = "", **params: Any) -> tuple[list[dict], str]:
    """Follow ``next`` until the feed has nothing more, as a CRM would."""
    seen: list[dict] = []
    while True:
        body = api.get(URL, {**({"after": after} if after else {}), **params}).json()
        seen += body["results"]
        after = body["next"]
        if not body["has_more"]:
            return seen, after


@feed_db
def test_the_feed_pages_through_every_change_once_in_order(api: APIClient) -> None:
    for i in range(7):
        publish_changes(change(record=f"R-{i % 3}", message_id=i, n=i))
    settle(api, 7)

    first = api.get(URL, {"page_size": 3}).json()
    assert [c["payload"]["n"] for c in first["results"]] == [0, 1, 2]
    assert first["has_more"] is True and first["next"] == first["results"][-1]["cursor"]

    seen, cursor = read_all(api, first["next"], page_size=3)
    assert [c["payload"]["n"] for c in seen] == [3, 4, 5, 6]

    # Nothing new: the same cursor comes back, and later changes follow it.
    empty = api.get(URL, {"after": cursor}).json()
    assert (empty["results"], empty["next"], empty["has_more"]) == ([], cursor, False)
    publish_changes(change(n=7))
    settle(api, 8)
    assert [c["payload"]["n"] for c in api.get(URL, {"after": cursor}).json()["results"]] == [7]


@feed_db
def test_a_change_carries_what_the_crm_needs(api: APIClient) -> None:
    publish_changes(change(Kind.REVIEW_RESOLVED, record="003A", message_id=9, action="confirm_delivered"))
    settle(api, 1)
    [item] = api.get(URL).json()["results"]
    row = OutboxMessage.objects.get()
    assert item == {
        "cursor": f"{row.txid}.{row.pk}",
        "idempotency_key": row.idempotency_key,
        "kind": "review_resolved",
        "crm_record_id": "003A",
        "message_id": 9,
        "occurred_at": "2026-11-20T10:00:00Z",
        "created_at": item["created_at"],
        "payload": {"action": "confirm_delivered"},
        "delivery_state": "pending",
    }


@feed_db
def test_the_feed_filters_by_record_and_kind(api: APIClient) -> None:
    publish_changes(
        change(record="A", n=1),
        change(Kind.SUPPRESSION_ADDED, record="A", n=2),
        change(record="B", n=3),
    )
    settle(api, 3)
    assert [c["payload"]["n"] for c in read_all(api, crm_record_id="A")[0]] == [1, 2]
    assert [c["payload"]["n"] for c in read_all(api, kind=Kind.SUPPRESSION_ADDED)[0]] == [2]
    assert [c["payload"]["n"] for c in read_all(api, kind=[Kind.STATUS_CHANGED])[0]] == [1, 3]


@feed_db
@pytest.mark.parametrize(("params", "field"), [({"after": "yesterday"}, "after"), ({"page_size": "0"}, "page_size")])
def test_bad_parameters_answer_400_naming_them(api: APIClient, params: dict, field: str) -> None:
    response = api.get(URL, params)
    assert response.status_code == 400
    assert field in response.json()["detail"]


@feed_db
def test_the_feed_needs_a_live_token_with_the_read_scope() -> None:
    client = APIClient()
    assert client.get(URL).status_code == 401
    _, token = ApiClient.issue("writer", ["write"])
    client.credentials(HTTP_AUTHORIZATION=f"Token {token}")
    assert client.get(URL).status_code == 403
    reader, token = ApiClient.issue("reader", ["read"])
    client.credentials(HTTP_AUTHORIZATION=f"Token {token}")
    assert client.get(URL).status_code == 200
    reader.revoked_at = timezone.now()
    reader.save()
    assert client.get(URL).status_code == 401


@pytest.mark.django_db
def test_the_openapi_schema_documents_the_feed_with_an_example(client: Any) -> None:
    schema = json.loads(client.get("/api/schema/", HTTP_ACCEPT="application/json").content)
    operation = schema["paths"]["/api/v1/changes/"]["get"]
    assert {p["name"] for p in operation["parameters"]} >= {"after", "page_size", "crm_record_id", "kind"}
    examples = operation["responses"]["200"]["content"]["application/json"]["examples"]
    assert any(e["value"]["results"][0]["kind"] == "status_changed" for e in examples.values())


@pytest.mark.django_db(transaction=True)
def test_a_writer_committing_after_a_later_one_is_not_skipped_by_a_reader_in_between() -> None:
    """Two real connections: A writes first and commits last. A reader polls in between.

    With a plain id cursor the reader would see B (id 2), move past it, and never see A (id 1). The feed holds
    B back while A's transaction is open, then serves A and B in order.
    """
    if not is_postgres():
        pytest.skip("SQLite has one writer at a time: ids are handed out in commit order there")
    _, token = ApiClient.issue("crm", ["read"])
    api = APIClient()
    api.credentials(HTTP_AUTHORIZATION=f"Token {token}")

    a_written, a_may_commit, a_done = threading.Event(), threading.Event(), threading.Event()

    def writer_a() -> None:
        try:
            with transaction.atomic():
                publish([change(record="A", message_id=1, who="A")])
                a_written.set()
                assert a_may_commit.wait(READY_TIMEOUT)
        finally:
            connection.close()
            a_done.set()

    def writer_b() -> None:
        try:
            publish_changes(change(record="B", message_id=2, who="B"))
        finally:
            connection.close()

    thread_a = threading.Thread(target=writer_a)
    thread_a.start()
    try:
        assert a_written.wait(READY_TIMEOUT)
        thread_b = threading.Thread(target=writer_b)
        thread_b.start()
        thread_b.join(30)

        # B is committed and A is not: a reader going by id alone would now pass A's id for good.
        naive = list(OutboxMessage.objects.order_by("id").values_list("id", "payload"))
        assert [p["who"] for _, p in naive] == ["B"]
        b_id = naive[0][0]

        first = api.get(URL).json()
        assert first["results"] == []  # B waits for A: A could still commit below it
        cursor = first["next"]
    finally:
        a_may_commit.set()
        thread_a.join(30)
    assert a_done.is_set()

    # Other sessions on the server can hold the horizon back for a moment: wait for it, do not time it.
    wait_until(lambda: len(api.get(URL, {"after": cursor}).json()["results"]) == 2, "both changes in the feed")
    results = api.get(URL, {"after": cursor}).json()["results"]
    assert [r["payload"]["who"] for r in results] == ["A", "B"]
    a_row = OutboxMessage.objects.get(crm_record_id="A")
    assert a_row.pk < b_id  # A really did commit an id below one already visible
