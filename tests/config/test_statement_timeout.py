"""A web request's statement is cancelled by PostgreSQL after WEB_STATEMENT_TIMEOUT, below Caddy's upstream
timeout: a request Caddy gave up on (504) left its query running (review-queue queries ran up to 664 s and piled
up). The web process (config/wsgi.py) carries the timeout; a Celery worker does not."""

from __future__ import annotations

import os
import subprocess
import sys
import uuid
from collections.abc import Iterator
from urllib.parse import urlsplit, urlunsplit

import pytest

from tests.apprunner import READY_TIMEOUT, ROOT, wants_postgres

pytestmark = pytest.mark.skipif(not wants_postgres(), reason="statement_timeout is PostgreSQL's")

SLOW = (
    "import time, {entry}; from django.db import connection, utils\n"
    "with connection.cursor() as cursor:\n"
    "    cursor.execute('SHOW statement_timeout'); shown = cursor.fetchone()[0]; print(shown, flush=True)\n"
    "    if shown == '0': raise SystemExit\n"
    "    try:\n"
    "        cursor.execute(\"SELECT pg_sleep(30), '{marker}'\")\n"
    "        print('finished')\n"
    "    except utils.OperationalError as exc:\n"
    "        print(type(exc.__cause__).__name__)\n"
    "    cursor = connection.connection.cursor()\n"
    "    time.sleep(0.2)\n"
)


@pytest.fixture
def marker() -> Iterator[str]:
    yield f"slow-{uuid.uuid4().hex[:8]}"


def maintenance_database() -> str:
    """The server's own database: what is looked at here needs no tables, and DATABASE_URL's may not exist."""
    return urlunsplit(urlsplit(os.environ["DATABASE_URL"])._replace(path="/postgres"))


def run(entry: str, marker: str, **env: str) -> list[str]:
    code = SLOW.format(entry=entry, marker=marker)
    if entry == "config.celery":
        code = "import django; django.setup(); " + code
    environment = {**os.environ, "DJANGO_SETTINGS_MODULE": "config.settings", "DATABASE_URL": maintenance_database()}
    environment |= {"SECRET_KEY": "statement-timeout", **env}
    environment.pop("RECEIPTS_PROCESS", None)
    done = subprocess.run(
        [sys.executable, "-c", code], cwd=ROOT, env=environment, capture_output=True, text=True, timeout=READY_TIMEOUT
    )
    assert done.returncode == 0, done.stderr[-2000:]
    return done.stdout.split()


def still_running(marker: str) -> int:
    import psycopg

    with psycopg.connect(maintenance_database(), autocommit=True) as conn:
        row = conn.execute(
            "SELECT count(*) FROM pg_stat_activity"
            " WHERE state = 'active' AND query LIKE %s AND pid <> pg_backend_pid()",
            (f"%{marker}%",),
        ).fetchone()
        return row[0] if row else 0


def test_the_web_process_has_its_statements_cancelled_and_nothing_left_running(marker: str) -> None:
    shown = run("config.wsgi", marker, WEB_STATEMENT_TIMEOUT="1")

    assert shown == ["1s", "QueryCanceled"], shown
    assert still_running(marker) == 0


def test_a_worker_has_no_statement_timeout(marker: str) -> None:
    shown = run("config.celery", marker, WEB_STATEMENT_TIMEOUT="1")
    assert shown[0] == "0", shown
