"""Database helpers: row locks, the hot path's statements, read snapshots, and what a column can store."""

from __future__ import annotations

import json
import math
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any, TypeVar, cast

from django.db import OperationalError, connection, models, transaction
from django.db.models import sql
from django.db.models.constants import OnConflict

Rows = TypeVar("Rows", bound=models.QuerySet[Any])


def for_update(queryset: Rows, *, skip_locked: bool = False, of_self: bool = False) -> Rows:
    """Lock the rows a writer is about to change, where the backend has row locks.

    PostgreSQL: ``SELECT ... FOR UPDATE``, with ``SKIP LOCKED`` for a claim (rows another worker holds are left to
    it) and ``OF self`` where the query joins rows that must stay unlocked (a message's campaign). SQLite has no row
    locks: every write transaction starts ``IMMEDIATE`` and holds the one writer lock, which serialises writers.
    """
    features = connection.features
    if not (features.has_select_for_update_skip_locked if skip_locked else features.has_select_for_update):
        return queryset
    of = ("self",) if of_self and features.has_select_for_update_of else ()
    return queryset.select_for_update(skip_locked=skip_locked, of=of)


def update_rows(objs: Sequence[models.Model], field_names: list[str]) -> None:
    """Write ``field_names`` of each object back by primary key, as one ``executemany``.

    Django's ``bulk_update`` builds a ``CASE WHEN`` expression per field per row, which costs milliseconds of
    Python per row (measured: 4.7 ms a row, 94% of a 200-receipt batch). One prepared ``UPDATE ... WHERE id =``
    sent with executemany (pipelined by psycopg 3) is the same writes for a fraction of the CPU. ``auto_now``
    fields are not touched: set them on the objects yourself.
    """
    if not objs:
        return
    meta = type(objs[0])._meta
    # Callers name concrete fields; get_field() is typed to also return relations, which have no column.
    fields = [cast(models.Field, meta.get_field(name)) for name in field_names]
    quote = connection.ops.quote_name
    assignments = ", ".join(f"{quote(f.column)} = %s" for f in fields)
    # Identifiers come from the model and are quoted by the backend; every value is a parameter.
    sql = f"UPDATE {quote(meta.db_table)} SET {assignments} WHERE {quote(meta.pk.column)} = %s"  # noqa: S608
    rows = [[*(f.get_db_prep_save(getattr(obj, f.attname), connection) for f in fields), obj.pk] for obj in objs]
    with connection.cursor() as cursor:
        cursor.executemany(sql, rows)


_INSERTS: dict[tuple[type[models.Model], str], tuple[str, list[models.Field]]] = {}


def insert_unless_conflict(obj: models.Model) -> int | None:
    """INSERT one row, ``ON CONFLICT DO NOTHING RETURNING id``: its new id, or None when a unique constraint
    already holds its twin.

    One statement in autocommit, where ``Model.objects.create`` inside ``atomic`` (to survive the IntegrityError of
    a duplicate) costs BEGIN, INSERT, COMMIT, and leaves a unique-violation ERROR in PostgreSQL's log for every
    retried webhook. The SQL is Django's own (defaults, column types), compiled once per model and backend and
    then only executed, so that a skipped row reads as None. PostgreSQL and SQLite (3.35+) both support the
    statement; SQLite spells it INSERT OR IGNORE, which would also skip a row breaking a NOT NULL or CHECK
    constraint, so give this only rows whose every column the model fills in.
    """
    model = type(obj)
    meta = obj._meta
    key = (model, connection.vendor)
    if key not in _INSERTS:
        fields = [f for f in meta.local_concrete_fields if f is not meta.pk and not f.generated]
        query = sql.InsertQuery(model, on_conflict=OnConflict.IGNORE)
        query.insert_values(fields, [obj])
        compiler = query.get_compiler(connection=connection)
        compiler.returning_fields = [meta.pk]
        # Every value is a plain %s placeholder (no expression defaults on these models), so the text does not
        # depend on the row it was compiled with.
        [(statement, _)] = compiler.as_sql()
        _INSERTS[key] = (statement, fields)
    statement, fields = _INSERTS[key]
    params = [field.get_db_prep_save(field.pre_save(obj, add=True), connection) for field in fields]
    with connection.cursor() as cursor:
        cursor.execute(statement, params)
        row = cursor.fetchone()
    if row is None:
        return None
    obj.pk = row[0]
    obj._state.adding = False
    return obj.pk


@contextmanager
def snapshot() -> Iterator[None]:
    """Run the reads inside one consistent snapshot of the database.

    A message and its timeline are read by two queries. With each query in its own snapshot (PostgreSQL's READ
    COMMITTED, or SQLite in autocommit), a batch committing in between could show every receipt on the timeline
    next to the status from before them. On PostgreSQL the block runs REPEATABLE READ READ ONLY. On SQLite it runs
    in a deferred read transaction, which in WAL mode sees one snapshot and takes no write lock (Django's atomic
    would BEGIN IMMEDIATE here and queue behind the writers). Inside an outer transaction it changes nothing.
    """
    if not connection.get_autocommit():
        yield
    elif connection.vendor == "postgresql":
        with transaction.atomic():
            with connection.cursor() as cursor:
                cursor.execute("SET TRANSACTION ISOLATION LEVEL REPEATABLE READ READ ONLY")
            yield
    else:
        with connection.cursor() as cursor:
            cursor.execute("BEGIN DEFERRED")
        try:
            yield
        finally:
            with connection.cursor() as cursor:
                cursor.execute("COMMIT")


# --- counting at scale ------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Count:
    """How many rows a query matches: ``exact``, or the planner's estimate where counting would read too much."""

    value: int
    exact: bool


EXACT_COUNT_UP_TO = 200_000  # rows the planner expects: beyond, the estimate is shown without trying
EXACT_COUNT_BUDGET_MS = 100  # what an exact count may take before the estimate is shown instead


def count_cheaply(queryset: models.QuerySet[Any]) -> Count:
    """Exact when cheap, estimated when not: what a list of 10 million rows can afford to say about its size.

    PostgreSQL: the planner's row estimate (``EXPLAIN``, no rows read); then, when it expects at most
    ``EXACT_COUNT_UP_TO`` rows, an exact ``COUNT(*)`` under a ``statement_timeout`` of ``EXACT_COUNT_BUDGET_MS``,
    falling back to the estimate when it runs out. Other backends (the embedded SQLite, small by nature) count.
    """
    if connection.vendor != "postgresql":
        return Count(queryset.count(), exact=True)
    plan = json.loads(queryset.order_by().explain(format="json"))
    estimate = int(plan[0]["Plan"]["Plan Rows"])
    if estimate > EXACT_COUNT_UP_TO:
        return Count(estimate, exact=False)
    try:
        with transaction.atomic():
            with connection.cursor() as cursor:
                # SET LOCAL ends with the transaction (or the savepoint, if one is rolled back).
                cursor.execute(f"SET LOCAL statement_timeout = {int(EXACT_COUNT_BUDGET_MS)}")
            exact = queryset.count()
            with connection.cursor() as cursor:
                cursor.execute("SET LOCAL statement_timeout TO DEFAULT")
            return Count(exact, exact=True)
    except OperationalError:  # QueryCanceled: the count read more than the budget allows
        return Count(estimate, exact=False)


# --- what a column can store ------------------------------------------------------------------------------
# PostgreSQL takes no NUL in text or JSON, no lone surrogate (psycopg cannot even encode one), no NaN or Infinity
# in JSON, a time zone offset only up to 15:59, and 64-bit integers. Input is refused with these before it is
# acknowledged, rather than failing later, or on one backend only.

BIGINT_MAX = 2**63 - 1
MAX_UTC_OFFSET = 14 * 3600  # the widest offset in use (Kiribati); PostgreSQL itself stops at 15:59


def check_text(value: str, where: str, limit: int | None = None) -> None:
    """Raise ValueError naming ``where`` unless ``value`` stores as text."""
    if "\x00" in value:
        raise ValueError(f"{where} holds a NUL character")
    try:
        value.encode("utf-8")
    except UnicodeEncodeError as exc:
        raise ValueError(f"{where} holds a lone surrogate (not Unicode text)") from exc
    if limit is not None and len(value) > limit:
        raise ValueError(f"{where} is over {limit} characters")


def plain_text(text: str) -> str:
    """``text`` made storable, for what must be kept whatever it holds (a rejected body, an error): NUL shown as
    U+FFFD, a lone surrogate as "?"."""
    return text.replace("\x00", "\ufffd").encode("utf-8", "replace").decode("utf-8")


MAX_JSON_DEPTH = 32


def check_json(value: Any, where: str, levels: int = MAX_JSON_DEPTH) -> None:
    """Raise ValueError naming ``where`` unless ``value`` stores in a JSON column, nested at most ``levels``
    deep. One walk checks it all: this runs on every webhook body."""
    if isinstance(value, str):
        check_text(value, where)
    elif isinstance(value, float) and not math.isfinite(value):
        raise ValueError(f"{where} holds a number that is not finite")
    elif isinstance(value, dict | list | tuple):
        if levels <= 0:
            raise ValueError(f"{where} is nested deeper than {MAX_JSON_DEPTH} levels")
        if isinstance(value, dict):
            for key, child in value.items():
                check_text(str(key), f"a key in {where}")
                check_json(child, where, levels - 1)
        else:
            for child in value:
                check_json(child, where, levels - 1)


def load_json(text: str, where: str = "the body", *, check_strings: bool = True) -> Any:
    """JSON that every JSON column takes: finite numbers only (NaN, Infinity and 1e400 refused), no NUL and no
    lone surrogate in any string or key, at most ``MAX_JSON_DEPTH`` levels deep. Raises ValueError naming the
    problem (``json.JSONDecodeError`` for the syntax, an integer over Python's 4,300 digits too).

    ``check_strings=False`` leaves the strings (and the depth past what the parser itself allows) to the caller,
    for a body of many items each refused on its own (``check_json`` on each)."""
    try:
        data = json.loads(text, parse_constant=refuse_constant, parse_float=finite_float)
    except RecursionError as exc:
        raise ValueError(f"{where} is nested deeper than {MAX_JSON_DEPTH} levels") from exc
    if check_strings:
        check_json(data, where)
    return data


def refuse_constant(name: str) -> Any:
    raise ValueError(f"{name} is not a JSON number")


def finite_float(literal: str) -> float:
    value = float(literal)
    if not math.isfinite(value):
        raise ValueError(f"number {literal[:40]} is out of range")
    return value


# What a database answers when it is busy rather than wrong: SQLite's writer lock held past busy_timeout, and on
# PostgreSQL a serialization failure, a deadlock or a lock wait past lock_timeout. The request can be tried again.
BUSY_SQLSTATES = frozenset({"40001", "40P01", "55P03"})


def database_busy(exc: BaseException) -> bool:
    if not isinstance(exc, OperationalError):
        return False
    if "database is locked" in str(exc) or "database table is locked" in str(exc):
        return True
    return getattr(exc.__cause__, "sqlstate", None) in BUSY_SQLSTATES
