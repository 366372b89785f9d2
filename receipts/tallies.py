"""Counts that grow with the data, kept by the database in the transaction of every change (issue 23, items 5 and 6):
the review queue by reason and the messages in flight by provider (``receipts_message``), a campaign's sends by
state (``campaigns_send``). The dashboard and a campaign's page read these instead of counting millions of rows.

How: triggers on the counted table add a row of deltas to ``receipts_tally`` (kind, scope, key, n) for every
statement that changes what is counted: statement triggers over the transition tables on PostgreSQL (one row per
key a statement moved, so a bulk insert of 500 sends adds one row, and an update that moves nothing adds none),
row triggers on SQLite (whose writers are serialised anyway). Inserting never waits for another writer, as one
counter row per key would. ``compact`` folds the deltas into one row per key (beat, with the rollups); a count is
the sum of its key's rows, so it is exact at any moment, compacted or not.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from django.db import connection, connections, transaction
from django.db.models import Sum

from receipts.models import Tally
from receipts.status import FINAL_STATUSES

REVIEW = "review"  # key: review reason
IN_FLIGHT = "in_flight"  # key: provider
SENDS = "sends"  # scope: campaign id; key: send state


@dataclass(frozen=True)
class Counter:
    """What one kind counts, in SQL over a row named ``{r}``: rows where ``when`` holds, by ``key`` (and ``scope``)."""

    kind: str
    key: str
    when: str
    scope: str = "0"


FINAL_SQL = ", ".join(f"'{status}'" for status in sorted(FINAL_STATUSES))
MESSAGE_COUNTERS = [
    Counter(REVIEW, "{r}.review_reason", "{r}.needs_review"),
    Counter(IN_FLIGHT, "{r}.provider", f"{{r}}.status NOT IN ({FINAL_SQL})"),
]
SEND_COUNTERS = [Counter(SENDS, "{r}.state", "{r}.campaign_id IS NOT NULL", scope="{r}.campaign_id")]


def counts(kind: str, scope: int = 0) -> dict[str, int]:
    """Every key's count of this kind (and scope); a key counted 0 may be missing."""
    rows = Tally.objects.filter(kind=kind, scope=scope).values_list("key").annotate(total=Sum("n")).order_by()
    return {key: int(total) for key, total in rows if total}


def compact() -> int:
    """Fold every committed delta into one row per key; answers how many rows were folded. Safe beside writers (a
    delta committed meanwhile stays for the next time) and beside another compaction."""
    if connection.vendor == "postgresql":
        with connection.cursor() as cursor:
            cursor.execute(
                "WITH gone AS (DELETE FROM receipts_tally RETURNING kind, scope, key, n), "
                "folded AS (INSERT INTO receipts_tally (kind, scope, key, n) "
                "SELECT kind, scope, key, sum(n) FROM gone GROUP BY kind, scope, key HAVING sum(n) <> 0) "
                "SELECT count(*) FROM gone"
            )
            row = cursor.fetchone()
        return int(row[0]) if row else 0
    with transaction.atomic():  # SQLite: the one writer, from the first statement to the last
        last = Tally.objects.order_by("-id").values_list("id", flat=True).first()
        if last is None:
            return 0
        rows = Tally.objects.filter(id__lte=last)
        totals = list(rows.values_list("kind", "scope", "key").annotate(total=Sum("n")).order_by())
        folded, _ = rows.delete()
        Tally.objects.bulk_create(
            Tally(kind=kind, scope=scope, key=key, n=total) for kind, scope, key, total in totals if total
        )
    return folded


def recount_after_flush(sender: Any, using: str = "default", **kwargs: Any) -> None:
    """SQLite, after a migrate or a flush (post_migrate): count again from the rows. A flush there is a DELETE per
    table in no set order, whose triggers may add deltas after the tallies were emptied (TRUNCATE, PostgreSQL's
    flush, fires none and empties them all). Cheap on the embedded database: partial sets, one query each."""
    db = connections[using]
    if db.vendor != "sqlite":
        return
    tables = set(db.introspection.table_names())
    counted = [("receipts_message", MESSAGE_COUNTERS), ("campaigns_send", SEND_COUNTERS)]
    if "receipts_tally" not in tables:
        return
    with transaction.atomic(using=using), db.cursor() as cursor:
        cursor.execute("DELETE FROM receipts_tally")
        for table, counters in counted:
            if table in tables:
                cursor.execute(backfill_sql(table, counters))


# --- the triggers (the migrations that make them call these) -------------------------------------------------


def _rows(counters: list[Counter], r: str, sign: str) -> str:
    return " UNION ALL ".join(
        f"SELECT '{c.kind}' AS kind, {c.scope.format(r=r)} AS scope, {c.key.format(r=r)} AS key, {sign}1 AS n "  # noqa: S608 - our own constants (Counter), no input
        f"FROM {r} WHERE {c.when.format(r=r)}"
        for c in counters
    )


def postgresql_triggers(table: str, counters: list[Counter], columns: list[str]) -> tuple[str, str]:
    """(create, drop) SQL: statement triggers that add a table's counted deltas, one row per key moved."""
    function = f"{table}_tally"
    fold = (
        "INSERT INTO receipts_tally (kind, scope, key, n) SELECT kind, scope, key, sum(n) FROM ({rows}) AS d "
        "GROUP BY kind, scope, key HAVING sum(n) <> 0;"
    )
    create = f"""
CREATE FUNCTION {function}() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    IF TG_OP = 'INSERT' THEN
        {fold.format(rows=_rows(counters, "new_rows", "+"))}
    ELSIF TG_OP = 'UPDATE' THEN
        {fold.format(rows=_rows(counters, "new_rows", "+") + " UNION ALL " + _rows(counters, "old_rows", "-"))}
    ELSE
        {fold.format(rows=_rows(counters, "old_rows", "-"))}
    END IF;
    RETURN NULL;
END $$;
CREATE TRIGGER {table}_tally_insert AFTER INSERT ON {table} REFERENCING NEW TABLE AS new_rows
    FOR EACH STATEMENT EXECUTE FUNCTION {function}();
CREATE TRIGGER {table}_tally_update AFTER UPDATE ON {table}
    REFERENCING OLD TABLE AS old_rows NEW TABLE AS new_rows FOR EACH STATEMENT EXECUTE FUNCTION {function}();
CREATE TRIGGER {table}_tally_delete AFTER DELETE ON {table} REFERENCING OLD TABLE AS old_rows
    FOR EACH STATEMENT EXECUTE FUNCTION {function}();
"""
    drop = f"""
DROP TRIGGER IF EXISTS {table}_tally_insert ON {table};
DROP TRIGGER IF EXISTS {table}_tally_update ON {table};
DROP TRIGGER IF EXISTS {table}_tally_delete ON {table};
DROP FUNCTION IF EXISTS {function}();
"""
    return create, drop


def sqlite_triggers(table: str, counters: list[Counter], columns: list[str]) -> tuple[list[str], list[str]]:
    """(create, drop) statements: row triggers, the update one only on the columns counted."""

    def insert(row: str, sign: str, counter: Counter, unless: str = "") -> str:
        when = counter.when.format(r=row) + (f" AND NOT ({unless})" if unless else "")
        return (
            f"INSERT INTO receipts_tally (kind, scope, key, n) SELECT '{counter.kind}', "
            f"{counter.scope.format(r=row)}, {counter.key.format(r=row)}, {sign}1 WHERE {when};"
        )

    def same(counter: Counter) -> str:
        """The row counted under the same scope and key before and after."""
        return " AND ".join(
            [counter.when.format(r="OLD"), counter.when.format(r="NEW")]
            + [f"{part.format(r='OLD')} IS {part.format(r='NEW')}" for part in (counter.scope, counter.key)]
        )

    on_insert = " ".join(insert("NEW", "+", c) for c in counters)
    on_delete = " ".join(insert("OLD", "-", c) for c in counters)
    on_update = " ".join(insert("OLD", "-", c, same(c)) + " " + insert("NEW", "+", c, same(c)) for c in counters)
    of = ", ".join(f'"{column}"' for column in columns)
    create = [
        f"CREATE TRIGGER {table}_tally_insert AFTER INSERT ON {table} BEGIN {on_insert} END",
        f"CREATE TRIGGER {table}_tally_update AFTER UPDATE OF {of} ON {table} BEGIN {on_update} END",
        f"CREATE TRIGGER {table}_tally_delete AFTER DELETE ON {table} BEGIN {on_delete} END",
    ]
    drop = [f"DROP TRIGGER IF EXISTS {table}_tally_{event}" for event in ("insert", "update", "delete")]
    return create, drop


def backfill_sql(table: str, counters: list[Counter]) -> str:
    """The counts of the rows already there, as one row per key (run after the triggers exist, in their
    migration's transaction)."""
    rows = " UNION ALL ".join(
        f"SELECT '{c.kind}' AS kind, {c.scope.format(r='t')} AS scope, {c.key.format(r='t')} AS key, count(*) AS n "  # noqa: S608 - our own constants
        f"FROM {table} t WHERE {c.when.format(r='t')} GROUP BY 2, 3"
        for c in counters
    )
    return f"INSERT INTO receipts_tally (kind, scope, key, n) SELECT kind, scope, key, n FROM ({rows}) AS c"  # noqa: S608


def install(vendor: str, table: str, counters: list[Counter], columns: list[str]) -> tuple[list[str], list[str]]:
    """(forward, backward) statements for this database: the triggers, then the counts so far."""
    kinds = ", ".join(f"'{c.kind}'" for c in counters)
    forget = f"DELETE FROM receipts_tally WHERE kind IN ({kinds})"  # noqa: S608 - our own constants
    if vendor == "postgresql":
        create, drop = postgresql_triggers(table, counters, columns)
        lock = f"LOCK TABLE {table} IN SHARE ROW EXCLUSIVE MODE"  # no change between the triggers and the count
        return [lock, create, backfill_sql(table, counters)], [drop, forget]
    creates, drops = sqlite_triggers(table, counters, columns)
    return [*creates, backfill_sql(table, counters)], [*drops, forget]


def migration(table: str, counters: list[Counter], columns: list[str]) -> tuple[Callable, Callable]:
    """RunPython's (forward, backward) for a migration that installs a table's counters."""

    def run(schema_editor: Any, backward: bool) -> None:
        forward, back = install(schema_editor.connection.vendor, table, counters, columns)
        for statement in back if backward else forward:
            schema_editor.execute(statement, params=None)

    def forward(apps: Any, schema_editor: Any) -> None:
        run(schema_editor, backward=False)

    def backward(apps: Any, schema_editor: Any) -> None:
        run(schema_editor, backward=True)

    return forward, backward
