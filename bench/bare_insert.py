"""The floor for bench/front_ingest.py: a bare WSGI view that does what a webhook's ingest cannot do without,
one INSERT of the body, in Django's database connection, and answers 200. Served by granian behind the same Caddy
as the app (``bench.bare_insert:application``)."""

from __future__ import annotations

import os
from collections.abc import Callable, Iterable

import django

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "config.settings")
django.setup()

from django.db import connection  # noqa: E402 - after setup

with connection.cursor() as cursor:
    cursor.execute("CREATE TABLE IF NOT EXISTS bench_bare_insert (id bigserial PRIMARY KEY, body text NOT NULL)")
connection.close()


def application(environ: dict, start_response: Callable) -> Iterable[bytes]:
    body = environ["wsgi.input"].read(int(environ.get("CONTENT_LENGTH") or 0))
    with connection.cursor() as cursor:
        cursor.execute("INSERT INTO bench_bare_insert (body) VALUES (%s)", [body.decode()])
    start_response("200 OK", [("Content-Type", "application/json"), ("Content-Length", "2")])
    return [b"{}"]
