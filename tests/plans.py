"""PostgreSQL plans of the queries the app actually issues, over tables skewed as production's (issue 23): a test
captures the ORM's SQL (CaptureQueriesContext), asks for ``EXPLAIN (FORMAT JSON)`` and looks at the plan's nodes.
What is asserted is the plan's shape (which index, which direction), never a time."""

from __future__ import annotations

import json
from collections.abc import Callable, Iterator
from typing import Any

from django.db import connection
from django.db.models import Model
from django.test.utils import CaptureQueriesContext


def clone(template: Model, count: int, **overrides: str) -> None:
    """``count`` copies of the template row in one ``INSERT ... SELECT`` over ``generate_series`` (column ``g``,
    1..count), each column an SQL expression where given (PostgreSQL), new ids from the sequence, in that order."""
    meta = template._meta
    columns = [f.column for f in meta.concrete_fields if not f.primary_key]
    names = ", ".join(connection.ops.quote_name(c) for c in columns)
    values = ", ".join(overrides.get(c, f"t.{connection.ops.quote_name(c)}") for c in columns)
    with connection.cursor() as cursor:
        cursor.execute(
            f"INSERT INTO {meta.db_table} ({names}) SELECT {values} "  # noqa: S608 - test data, our own expressions
            f"FROM {meta.db_table} t CROSS JOIN generate_series(1, %s) AS g WHERE t.id = %s ORDER BY g",
            [count, template.pk],
        )


def analyze(*tables: str) -> None:
    with connection.cursor() as cursor:
        for table in tables:
            cursor.execute(f"ANALYZE {table}")


def queries(run: Callable[[], Any], contains: str) -> list[str]:
    """The SQL of every query ``run`` issues that contains ``contains`` (at least one)."""
    with CaptureQueriesContext(connection) as captured:
        run()
    found = [q["sql"] for q in captured.captured_queries if contains in q["sql"]]
    assert found, f"no query with {contains!r} among {[q['sql'][:120] for q in captured.captured_queries]}"
    return found


def plan(sql: str) -> dict[str, Any]:
    with connection.cursor() as cursor:
        cursor.execute(f"EXPLAIN (FORMAT JSON) {sql}")
        document = cursor.fetchone()[0]
    return (json.loads(document) if isinstance(document, str) else document)[0]["Plan"]


def nodes(node: dict[str, Any]) -> Iterator[dict[str, Any]]:
    yield node
    for child in node.get("Plans", []):
        yield from nodes(child)


def scans(sql: str, table: str) -> list[tuple[str, str, str]]:
    """(node type, index name, direction) of every scan of ``table`` in the plan of ``sql``."""
    return [
        (n["Node Type"], n.get("Index Name", ""), n.get("Scan Direction", ""))
        for n in nodes(plan(sql))
        if n.get("Relation Name") == table
    ]


def describe(sql: str) -> str:
    """The plan as text, for an assertion's message."""
    with connection.cursor() as cursor:
        cursor.execute(f"EXPLAIN {sql}")
        return "\n".join(row[0] for row in cursor.fetchall())
