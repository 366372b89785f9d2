"""GET /api/v1/changes/: a monotonic cursor, pages, filters, scopes, no gaps when writers commit out of order, and
no lag behind a transaction open elsewhere on the server."""

from __future__ import annotations

import json
import threading
from collections.abc import Iterator
from datetime import timedelta
from typing import Any

import psycopg
import pytest
from django.db import connection, transaction
from django.utils import timezone
from rest_framework.test import APIClient

from crm_sync import actions
from crm_sync.models import FeedEntry, OutboxMessage
from receipts.events import Kind, publish
from receipts.models import ApiClient
from tests.apprunner import READY_TIMEOUT, wait_until
from tests.conftest import is_postgres
from tests.crm_sync.conftest import change, publish_changes

URL = "/api/v1/changes/"
# Real commits: the feed numbers only what committed transactions wrote, as it does in production.
feed_db = pytest.mark.django_db(transaction=True)
# A change is served at the first read after its commit; this only bounds how long a broken feed is waited for.
VISIBLE_WITHIN = 5


def settle(api: APIClient, count: int) -> None:
    """Wait (at most VISIBLE_WITHIN seconds) until the feed serves ``count`` changes."""
    wait_until(
        lambda: len(api.get(URL, {"page_size": 1000}).json()["results"]) >= count, "the feed", timeout=VISIBLE_WITHIN
    )


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
        "cursor": str(FeedEntry.objects.get(change=row).position),
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


@feed_db
def test_a_cursor_from_before_feed_positions_continues_after_its_change(api: APIClient) -> None:
    """CRMs may hold a `<txid>.<id>` cursor from before 0006: it still means "after this change"."""
    publish_changes(change(n=1))
    publish_changes(change(n=2))
    publish_changes(change(n=3))
    settle(api, 3)
    second = OutboxMessage.objects.get(payload__n=2)
    body = api.get(URL, {"after": f"{second.txid}.{second.pk}"}).json()
    assert [c["payload"]["n"] for c in body["results"]] == [3]
    assert body["next"] == body["results"][-1]["cursor"]  # and the answer carries a cursor of today's form
    assert api.get(URL, {"after": "0.0"}).json()["results"][0]["payload"]["n"] == 1


@feed_db
def test_a_writer_committing_after_a_later_one_is_neither_skipped_nor_held_back() -> None:
    """Two real connections: A writes first and commits last. A reader polls in between.

    With a plain id cursor the reader would see B (id 2), move past it, and never see A (id 1). The feed serves B
    at once (it committed), and A after it once A commits: positions follow commits, not ids.
    """
    if not is_postgres():
        pytest.skip("SQLite has one writer at a time: ids are handed out in commit order there")
    api = reader()
    a_written, a_may_commit = threading.Event(), threading.Event()
    thread_a = threading.Thread(
        target=open_writer, args=(change(record="A", message_id=1, who="A"), a_written, a_may_commit)
    )
    thread_a.start()
    try:
        assert a_written.wait(READY_TIMEOUT)
        publish_changes(change(record="B", message_id=2, who="B"))
        first = api.get(URL).json()
        assert [r["payload"]["who"] for r in first["results"]] == ["B"]  # not held back behind A
    finally:
        a_may_commit.set()
        thread_a.join(READY_TIMEOUT)
    wait_until(
        lambda: api.get(URL, {"after": first["next"]}).json()["results"], "A in the feed", timeout=VISIBLE_WITHIN
    )
    assert [r["payload"]["who"] for r in api.get(URL, {"after": first["next"]}).json()["results"]] == ["A"]
    assert OutboxMessage.objects.get(crm_record_id="A").pk < OutboxMessage.objects.get(crm_record_id="B").pk


def reader() -> APIClient:
    _, token = ApiClient.issue("crm", ["read"])
    api = APIClient()
    api.credentials(HTTP_AUTHORIZATION=f"Token {token}")
    return api


def open_writer(event: Any, written: threading.Event, may_commit: threading.Event) -> None:
    """Write a change in a transaction that stays open until ``may_commit``."""
    try:
        with transaction.atomic():
            publish([event])
            written.set()
            assert may_commit.wait(READY_TIMEOUT)
    finally:
        connection.close()


@pytest.fixture
def open_elsewhere() -> Iterator[int]:
    """A transaction that wrote in another database of the same server and stays open: its transaction id."""
    if not is_postgres():
        pytest.skip("a transaction in another database: PostgreSQL")
    params = connection.get_connection_params()
    params.pop("cursor_factory", None)
    params.pop("context", None)
    name = f"{connection.settings_dict['NAME']}_elsewhere"[:63]
    with psycopg.connect(**{**params, "dbname": "postgres"}, autocommit=True) as admin:
        if not admin.execute("SELECT 1 FROM pg_database WHERE datname = %s", [name]).fetchone():
            admin.execute(f'CREATE DATABASE "{name}"')
    other = psycopg.connect(**{**params, "dbname": name})  # not autocommit: BEGIN with the first statement
    try:
        other.execute("CREATE TABLE IF NOT EXISTS report (n int)")
        other.execute("INSERT INTO report VALUES (1)")
        yield int(other.execute("SELECT pg_current_xact_id()::text::bigint").fetchone()[0])
    finally:
        other.rollback()
        other.close()
        with psycopg.connect(**{**params, "dbname": "postgres"}, autocommit=True) as admin:
            admin.execute(f'DROP DATABASE IF EXISTS "{name}"')


@feed_db
def test_a_transaction_open_in_another_database_does_not_hold_the_feed_back(open_elsewhere: int) -> None:
    """Issue 23: a report or backup open anywhere on the server pinned the old feed's horizon.

    While it stays open, new changes are served within VISIBLE_WITHIN seconds, and a reader paging with the cursor
    while writers commit out of order sees every change exactly once.
    """
    with connection.cursor() as cursor:
        cursor.execute("SELECT pg_snapshot_xmin(pg_current_snapshot())::text::bigint")
        assert cursor.fetchone()[0] <= open_elsewhere  # the server's horizon really is held back by it
    api = reader()
    publish_changes(change(record="R-0", message_id=0, n=0))
    settle(api, 1)

    # Writers that write in one order and commit in the reverse one, while the reader pages two at a time.
    count = 6
    gates = [(threading.Event(), threading.Event()) for _ in range(count)]
    writers = [
        threading.Thread(target=open_writer, args=(change(record=f"R-{i % 2}", message_id=i, n=i), *gates[i - 1]))
        for i in range(1, count + 1)
    ]
    seen: list[int] = []
    cursor = ""

    def page() -> None:
        nonlocal cursor
        body = api.get(URL, {"page_size": 2, **({"after": cursor} if cursor else {})}).json()
        seen.extend(c["payload"]["n"] for c in body["results"])
        cursor = body["next"]

    for writer, (written, _) in zip(writers, gates, strict=True):
        writer.start()
        assert written.wait(READY_TIMEOUT)
    for writer, (_, may_commit) in reversed(list(zip(writers, gates, strict=True))):
        may_commit.set()
        writer.join(READY_TIMEOUT)
        page()
    wait_until(lambda: page() or len(seen) >= count + 1, "every change in the feed", timeout=VISIBLE_WITHIN)
    page()
    assert sorted(seen) == list(range(count + 1))  # none skipped, none repeated
    assert seen[:1] == [0] and seen[1:] == sorted(seen[1:], reverse=True)  # in commit order


@feed_db
def test_pruned_changes_leave_the_feed_with_their_entries(api: APIClient, settings: Any) -> None:
    settings.CRM_OUTBOX_RETENTION_DAYS = 30
    publish_changes(change(n=1), change(n=2))
    settle(api, 2)
    OutboxMessage.objects.filter(payload__n=1).update(state="sent", created_at=timezone.now() - timedelta(days=31))
    assert actions.prune() == 1
    assert FeedEntry.objects.count() == 1
    assert [c["payload"]["n"] for c in api.get(URL).json()["results"]] == [2]
