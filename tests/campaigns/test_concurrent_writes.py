"""No 500 from concurrent or embedded writes (issue 20, item 3): imports that add the same new records at once all
succeed (INSERT ... ON CONFLICT; reading first and inserting after had let two of them insert the same record, a
duplicate key answered 500), and a database too busy to answer within its lock wait answers 503 with Retry-After
in the API's error shape, never 500: SQLite's writer lock held past busy_timeout, PostgreSQL's lock_timeout."""

from __future__ import annotations

import sqlite3
import threading
from collections.abc import Iterator
from typing import Any

import pytest
from django.db import connection, connections
from rest_framework.test import APIClient

from campaigns.contacts import import_contacts
from campaigns.models import Contact
from receipts.models import ApiClient
from tests.apprunner import READY_TIMEOUT

pytestmark = pytest.mark.django_db(transaction=True)


def test_four_imports_of_overlapping_new_records_at_once_all_succeed() -> None:
    batches = [
        [{"crm_record_id": f"003-{i:04d}", "phone": f"+1555020{i:04d}", "n": str(worker)} for i in range(start, 300)]
        for worker, start in enumerate((0, 50, 100, 150))
    ]
    go = threading.Barrier(len(batches))
    failures: list[BaseException] = []
    reports: list[Any] = []

    def run(rows: list[dict[str, Any]]) -> None:
        try:
            go.wait()
            reports.append(import_contacts(enumerate(rows)))
        except BaseException as exc:
            failures.append(exc)
        finally:
            connections.close_all()

    threads = [threading.Thread(target=run, args=(rows,)) for rows in batches]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=READY_TIMEOUT)
    assert failures == []
    assert [r.refused for r in reports] == [[], [], [], []]
    assert Contact.objects.count() == 300
    assert sum(r.added + r.updated for r in reports) == sum(len(rows) for rows in batches)


def test_four_api_imports_at_once_answer_200_each() -> None:
    _, token = ApiClient.issue("crm", ["read", "write"])
    body = {"contacts": [{"crm_record_id": f"004-{i:04d}", "email": f"p{i}@example.com"} for i in range(200)]}
    go = threading.Barrier(4)
    answers: list[int] = []

    def run() -> None:
        client = APIClient()
        client.credentials(HTTP_AUTHORIZATION=f"Token {token}")
        go.wait()
        try:
            answers.append(client.post("/api/v1/contacts/", body, format="json").status_code)
        finally:
            connections.close_all()

    threads = [threading.Thread(target=run) for _ in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=READY_TIMEOUT)
    assert sorted(answers) == [200, 200, 200, 200]
    assert Contact.objects.count() == 200


@pytest.fixture
def database_held() -> Iterator[None]:
    """Another process holds the contacts table (SQLite: the writer lock) and our lock wait is short."""
    if connection.vendor == "sqlite":
        holder = sqlite3.connect(connection.settings_dict["NAME"], timeout=1)
        holder.execute("BEGIN IMMEDIATE")
        connection.ensure_connection()
        connection.connection.execute("PRAGMA busy_timeout = 200")
        try:
            yield
        finally:
            holder.rollback()
            holder.close()
            connection.close()
    else:
        import psycopg

        params = connection.get_connection_params()
        holder = psycopg.connect(**{k: v for k, v in params.items() if k != "cursor_factory"}, autocommit=False)
        holder.execute(f"LOCK TABLE {Contact._meta.db_table} IN ACCESS EXCLUSIVE MODE")
        with connection.cursor() as cursor:
            cursor.execute("SET lock_timeout = '200ms'")
        try:
            yield
        finally:
            holder.rollback()
            holder.close()
            connection.close()


def test_a_busy_database_answers_503_with_retry_after_not_500(api: APIClient, database_held: None) -> None:
    body = {"contacts": [{"crm_record_id": "005-0001", "phone": "+15550300001"}]}
    response = api.post("/api/v1/contacts/", body, format="json")
    assert response.status_code == 503, response.content[:300]
    assert response["Retry-After"] == "2"
    assert response.json() == {"error": "the database is busy; try again", "detail": None}
