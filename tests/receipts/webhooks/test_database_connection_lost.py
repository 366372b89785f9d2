"""A database connection the server closed while idle costs the provider nothing (needs PostgreSQL)."""

from __future__ import annotations

import logging
from typing import Any

import psycopg
import pytest

from receipts.models import ReceiptEvent
from tests.conftest import is_postgres
from tests.receipts.webhooks.cases import BY_PROVIDER, JSON, post

pytestmark = pytest.mark.django_db


@pytest.mark.django_db(transaction=True)
def test_a_connection_the_server_closed_while_idle_costs_the_provider_nothing(
    client: Any, caplog: pytest.LogCaptureFixture
) -> None:
    """With CONN_HEALTH_CHECKS off (the default) a reused connection is not checked before use: the server
    ending it between two webhooks must not turn the second into a 500."""
    if not is_postgres():
        pytest.skip("needs a database server that can end a client's connection")
    from django.db import connection

    case = BY_PROVIDER["generic"]
    first = post(client, case.provider, case.body, JSON, **case.signed())
    assert first.status_code == 200
    db = connection.settings_dict
    where = {"dbname": db["NAME"], "user": db["USER"], "host": db["HOST"], "port": db["PORT"] or 5432}
    with psycopg.connect(**where, autocommit=True) as admin:
        ended = admin.execute("SELECT pg_terminate_backend(%s)", [connection.connection.info.backend_pid]).fetchone()
    assert ended == (True,)

    with caplog.at_level(logging.WARNING, logger="receipts.webhooks"):
        second = post(client, case.provider, case.other_status, JSON, **case.signed(case.other_status))

    assert (second.status_code, second.json()) == (200, {"accepted": 1, "duplicates": 0})
    assert ReceiptEvent.objects.count() == 2
    assert any("database connection lost" in r.getMessage() for r in caplog.records)
