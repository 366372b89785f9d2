"""The change feed's order: positions given only to committed changes, one numbering at a time.

A trigger on the outbox adds a ``FeedEntry`` without a position in the transaction that writes the change, so an
entry exists exactly when its change committed. ``number`` gives the entries it can see the next positions under
one lock (PostgreSQL: an advisory lock held to the commit; SQLite: its single write lock), and commits before the
next numbering can start. So positions become visible in their own order: once a reader has seen position N, no
position below N can appear later, and the feed waits on no other transaction on the server. See docs/design.md,
"Change feed without gaps".
"""

from __future__ import annotations

from django.db import connection, transaction
from django.db.models import Max, Min, Q

from crm_sync.models import FeedEntry, OutboxMessage

OUTBOX = "crm_sync_outboxmessage"
ENTRIES = "crm_sync_feedentry"
# pg_advisory_xact_lock's key for the numbering ("crm feed" in ASCII): one numbering at a time on the server.
LOCK_KEY = 0x63726D2066656564
# Entries numbered per call: a feed read numbers at most this many before it reads.
BATCH = 10_000

# One INSERT per statement on PostgreSQL (a statement trigger with the inserted rows as a table).
POSTGRESQL_TRIGGER = """
CREATE OR REPLACE FUNCTION crm_feed_enqueue() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    INSERT INTO crm_sync_feedentry (change_id) SELECT id FROM new_rows;
    RETURN NULL;
END $$;
CREATE TRIGGER crm_feed_enqueue AFTER INSERT ON crm_sync_outboxmessage REFERENCING NEW TABLE AS new_rows
    FOR EACH STATEMENT EXECUTE FUNCTION crm_feed_enqueue();
"""
POSTGRESQL_DROP = f"DROP TRIGGER IF EXISTS crm_feed_enqueue ON {OUTBOX}; DROP FUNCTION IF EXISTS crm_feed_enqueue();"
SQLITE_TRIGGER = (
    "CREATE TRIGGER crm_feed_enqueue AFTER INSERT ON crm_sync_outboxmessage "
    "BEGIN INSERT INTO crm_sync_feedentry (change_id) VALUES (NEW.id); END"
)
SQLITE_DROP = "DROP TRIGGER IF EXISTS crm_feed_enqueue"
# The changes there were before the feed had positions, in the order the feed served them ((txid, id)).
BACKFILL = (
    f"INSERT INTO {ENTRIES} (change_id, position) "  # noqa: S608 - our own constants
    f"SELECT id, ROW_NUMBER() OVER (ORDER BY txid, id) FROM {OUTBOX}"
)

# Numbers the oldest unnumbered entries after the highest position given. The FROM subqueries are read before
# any row is written (both databases), and under the lock no other numbering runs in between.
NUMBER = f"""
UPDATE {ENTRIES} SET position = last.n + todo.r
FROM (SELECT COALESCE(MAX(position), 0) AS n FROM {ENTRIES}) AS last,
     (SELECT change_id, ROW_NUMBER() OVER (ORDER BY change_id) AS r
      FROM (SELECT change_id FROM {ENTRIES} WHERE position IS NULL ORDER BY change_id LIMIT %s{{lock}}) AS q) AS todo
WHERE {ENTRIES}.change_id = todo.change_id
"""  # noqa: S608 - our own constants


def number(limit: int = BATCH) -> int:
    """Give up to ``limit`` committed, unnumbered changes the next feed positions; how many it numbered."""
    with transaction.atomic(), connection.cursor() as cursor:
        if connection.vendor == "postgresql":
            # Taken in its own statement, so the UPDATE's snapshot starts after the last numbering committed.
            cursor.execute("SELECT pg_advisory_xact_lock(%s)", [LOCK_KEY])
            # An entry a prune is deleting waits for the next numbering rather than holding this one up.
            cursor.execute(NUMBER.format(lock=" FOR UPDATE SKIP LOCKED"), [limit])
        else:
            # SQLite: the write lock is taken at BEGIN IMMEDIATE (settings), before anything is read.
            cursor.execute(NUMBER.format(lock=""), [limit])
        return cursor.rowcount


def legacy_position(txid: int, pk: int) -> int:
    """The position to continue from for a cursor the feed gave before 0006 (``<txid>.<id>``).

    That cursor meant: every change up to ``(txid, id)`` in ``(txid, id)`` order has been read. Continue just below
    the lowest position of a change after it, so none is skipped (a change at or before it that got a higher
    position comes again, under its own idempotency key); with no numbered change after it, continue after the
    last position (whatever is numbered later comes after that).
    """
    after = OutboxMessage.objects.filter(Q(txid__gt=txid) | Q(txid=txid, pk__gt=pk), txid__gte=txid)
    first = FeedEntry.objects.filter(change__in=after, position__isnull=False).aggregate(p=Min("position"))["p"]
    if first is not None:
        return int(first) - 1
    return int(FeedEntry.objects.aggregate(p=Max("position"))["p"] or 0)
