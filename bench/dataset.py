"""The scale data set: 10 million messages over 90 days, in a PostgreSQL database of its own (issue 14).

What it builds (see bench/README.md, "dataset.py and admin_scale.py"), at ``--scale 1``:

- 10,000,000 messages (``receipts_message``) over the 90 days before the build, SMS and email, every provider,
  statuses in plausible proportions (mostly delivered, some failed, bounced, rejected or expired with a failure
  category, a few thousand still in flight from the last hour), about 1% waiting for review, a few % critical;
  about 25,000,000 timeline entries (``receipts_messageevent``) that agree with each message's status; plus one
  message with a 50-entry timeline;
- 1,000,000 suppressions with their history, 1,000,000 inbox rows (mostly processed, linked from the timeline;
  some received, orphan, unmatched, rejected, dead), 1,000,000 CRM outbox changes over 30 days, 300 campaigns,
  and an escalation for every critical message not delivered in time (with what the fallback sweep decided);
- production's skew, at the end of the tables where it hurts plans most (issue 23): a campaign of 1,000,000 sends
  (``--big-campaign``), its 1,000,000 contacts and their messages, sent at 80 a second three days before the
  clock with about 3% still ``sent``; one phone number (HEAVY_PHONE) with 5,000 messages; one CRM record
  (HEAVY_RECORD) with 10,000 changes in the outbox; a few confirmations (replies "YES");
- a superuser ``bench`` (password ``bench``) and an API client ``bench`` whose token is kept in the marker table.

How: ``manage.py migrate`` makes the schema; every table is filled by ``INSERT ... SELECT`` over
``generate_series`` in PostgreSQL, the values drawn from a hash of (row, column, seed), so the same seed gives the
same set. The big tables' secondary indexes and constraints (whatever the migrations made, read from the catalog)
are dropped before the load and made again after it; then ``VACUUM (ANALYZE)`` and the id sequences moved past
the rows. Every timestamp is relative to the build's clock (``built_at`` in the marker table), which the benchmark
uses as its "now" for the background jobs.

Run from the project root with its virtualenv::

    .venv/bin/python bench/dataset.py --scale 0.01      # 100,000 messages, a minute or two
    .venv/bin/python bench/dataset.py --scale 0.03 --big-campaign 100000   # 300,000 + a 100,000-send campaign
    .venv/bin/python bench/dataset.py                   # the full set, 10,000,000 messages
    .venv/bin/python bench/dataset.py --rebuild         # drop the database and build it again
    .venv/bin/python bench/dataset.py --help

Importable: ``ensure(url, scale, seed)`` builds the set unless the database holds it already, migrates it, and
answers an ``Info``.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterator
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit, urlunsplit

import psycopg
from psycopg import sql

ROOT = Path(__file__).resolve().parent.parent
DEFAULT_DATABASE_URL = "postgres://postgres@127.0.0.1:5432/receipts_scale"
DEFAULT_SEED = 14
# Bump when the generator changes what it builds: a set built by another version is not reused.
GENERATOR_VERSION = 2
LOCAL_HOSTS = ("127.0.0.1", "localhost", "::1", None, "")
NEVER_DROP = {"postgres", "template0", "template1"}
MARKER = "bench_dataset_info"

SPAN = timedelta(days=90)  # messages
OUTBOX_SPAN = timedelta(days=30, hours=1)  # a little past CRM_OUTBOX_RETENTION_DAYS, so the prune finds some
INBOX_SPAN = timedelta(days=30, hours=1)  # the same for INBOX_RETENTION_DAYS
SUPPRESSION_SPAN = timedelta(days=700)
CHUNK = 1_000_000  # messages per statement (about 2.5 million timeline entries)
BIG_TABLES = [
    "receipts_message",
    "receipts_messageevent",
    "receipts_receiptevent",
    "receipts_suppression",
    "receipts_suppressionchange",
    "crm_sync_outboxmessage",
]
CAMPAIGN_TABLES = ["campaigns_contact", "campaigns_send"]
FILLED_TABLES = [*BIG_TABLES, *CAMPAIGN_TABLES, "campaigns_campaign", "receipts_escalation", "campaigns_fallback"]
# Production's skew (issue 23): one phone number with this many messages, one CRM record with this many changes.
HEAVY_PHONE_MESSAGES = 5000
HEAVY_RECORD_CHANGES = 10_000
HEAVY_PHONE = "+15557770000"
HEAVY_RECORD = "003Ks9999999999IAA"
BENCH_USER, BENCH_PASSWORD = "bench", "bench"
# What beat keeps up to date on a live deployment, from the rows a bulk load writes around it: run after every
# migrate when the app has the command (the delivery rollups the dashboard reads, for one).
CATCH_UP = ["refresh_rollups"]
# Nothing the app does against the set may reach out: no CRM, no provider, no alert notices.
QUIET = {
    "CRM_BACKEND": "none",
    "CRM_URL": "",
    "GENESYS_CLOUD_CLIENT_ID": "",
    "GENESYS_CLOUD_CLIENT_SECRET": "",
    "ALERT_WEBHOOK_URL": "",
    "ALERT_EMAILS": "",
    "SENDERS": "",
}

Log = Callable[[str], None]


class Refused(Exception):
    """The set cannot be built or used here as asked (a remote or foreign database, another set in it)."""


@dataclass(frozen=True)
class Sizes:
    messages: int
    suppressions: int
    inbox: int
    outbox: int
    campaigns: int
    big_campaign: int  # the campaign of that many sends, contacts and messages, sent three days before the clock

    @classmethod
    def at(cls, scale: float, big_campaign: int | None = None) -> Sizes:
        def part(full: int, least: int) -> int:
            return max(least, round(full * scale))

        return cls(
            messages=part(10_000_000, 1000),
            suppressions=part(1_000_000, 100),
            inbox=part(1_000_000, 100),
            outbox=part(1_000_000, 100),
            campaigns=part(300, 20),
            big_campaign=part(1_000_000, 100) if big_campaign is None else big_campaign,
        )


@dataclass
class Info:
    """What the marker table says about the set in a database."""

    scale: float
    seed: int
    version: int
    built_at: datetime  # the set's "now": every timestamp in it is relative to this
    big_campaign: int = 0  # its sends
    big_campaign_id: int = 0
    build_seconds: float = 0.0
    counts: dict[str, int] = field(default_factory=dict)
    long_timeline_message: int = 0
    token: str = ""
    size: str = ""
    size_bytes: int = 0
    complete: bool = False

    def to_json(self) -> str:
        return json.dumps({**asdict(self), "built_at": self.built_at.isoformat()})

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> Info:
        return cls(**{**data, "built_at": datetime.fromisoformat(data["built_at"])})


# --- the database ------------------------------------------------------------------------------------------


def check_local(url: str) -> None:
    parts = urlsplit(url)
    if parts.scheme not in ("postgres", "postgresql"):
        raise Refused(f"the data set lives in PostgreSQL: expected postgres://..., got {url}")
    if parts.hostname not in LOCAL_HOSTS:
        raise Refused(f"refusing to build against a non-local database: {url}")
    if database_name(url) in NEVER_DROP:
        raise Refused(f"the data set needs a database of its own, not {database_name(url)!r}")


def database_name(url: str) -> str:
    name = urlsplit(url).path.lstrip("/")
    if not name:
        raise Refused(f"the URL names no database: {url}")
    return name


def maintenance_url(url: str) -> str:
    return urlunsplit(urlsplit(url)._replace(path="/postgres"))


def database_exists(url: str) -> bool:
    with psycopg.connect(maintenance_url(url), autocommit=True) as conn:
        return conn.execute("SELECT 1 FROM pg_database WHERE datname = %s", [database_name(url)]).fetchone() is not None


def create_database(url: str) -> None:
    with psycopg.connect(maintenance_url(url), autocommit=True) as conn:
        conn.execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(database_name(url))))


def drop_database(url: str) -> None:
    name = database_name(url)
    if name in NEVER_DROP:
        raise Refused(f"refusing to drop the database {name!r}")
    with psycopg.connect(maintenance_url(url), autocommit=True) as conn:
        conn.execute(sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(sql.Identifier(name)))


def read_info(url: str) -> Info | None:
    """The marker of the set in this database; None when there is none (an empty or foreign database)."""
    with psycopg.connect(url, autocommit=True) as conn:
        if conn.execute("SELECT to_regclass(%s)", [MARKER]).fetchone() == (None,):
            return None
        row = conn.execute(sql.SQL("SELECT info FROM {} WHERE id = 1").format(sql.Identifier(MARKER))).fetchone()
    return Info.from_json(row[0]) if row else None


def write_info(url: str, info: Info) -> None:
    with psycopg.connect(url, autocommit=True) as conn:
        conn.execute(
            sql.SQL("CREATE TABLE IF NOT EXISTS {} (id int PRIMARY KEY, info jsonb NOT NULL)").format(
                sql.Identifier(MARKER)
            )
        )
        conn.execute(
            sql.SQL("INSERT INTO {} VALUES (1, %s) ON CONFLICT (id) DO UPDATE SET info = excluded.info").format(
                sql.Identifier(MARKER)
            ),
            [info.to_json()],
        )


def has_tables(url: str) -> bool:
    with psycopg.connect(url, autocommit=True) as conn:
        row = conn.execute("SELECT count(*) FROM pg_tables WHERE schemaname = 'public'").fetchone()
    return bool(row and row[0])


def size_on_disk(url: str) -> tuple[int, str]:
    with psycopg.connect(url, autocommit=True) as conn:
        row = conn.execute(
            "SELECT pg_database_size(current_database()), pg_size_pretty(pg_database_size(current_database()))"
        ).fetchone()
    assert row is not None
    return int(row[0]), str(row[1])


# --- Django, as a subprocess -------------------------------------------------------------------------------


def django_env(url: str) -> dict[str, str]:
    """The environment the app's commands (and the benchmark's web server) run with against the set."""
    var = Path(tempfile.gettempdir()) / f"bench-scale-var-{database_name(url)}"
    var.mkdir(parents=True, exist_ok=True)
    env = {
        **os.environ,
        "DATABASE_URL": url,
        "SECRET_KEY": os.environ.get("SECRET_KEY") or "bench-scale-not-secret",
        "DEBUG": "false",
        "VAR_DIR": str(var),  # not the repository's var/
        "LOG_LEVEL": "WARNING",
        "PYTHONUNBUFFERED": "1",
        **QUIET,
    }
    env.pop("DJANGO_SETTINGS_MODULE", None)
    return env


def manage(url: str, *args: str) -> subprocess.CompletedProcess:
    result = subprocess.run(
        [sys.executable, "manage.py", *args], cwd=ROOT, env=django_env(url), capture_output=True, text=True
    )
    if result.returncode:
        raise RuntimeError(f"manage.py {' '.join(args)} failed:\n{result.stdout[-3000:]}\n{result.stderr[-3000:]}")
    return result


def migrate(url: str, log: Log) -> None:
    started = time.perf_counter()
    output = manage(url, "migrate", "--noinput").stdout
    applied = [line.strip() for line in output.splitlines() if line.strip().startswith("Applying")]
    log(f"migrate: {len(applied)} migration(s) applied in {time.perf_counter() - started:.1f} s")
    for line in applied:
        log(f"  {line}")


def catch_up(url: str, log: Log) -> None:
    """Run the CATCH_UP commands this version of the app has."""
    available = set(manage(url, "help", "--commands").stdout.split())
    for command in CATCH_UP:
        if command in available:
            started = time.perf_counter()
            manage(url, command)
            log(f"manage.py {command}: {time.perf_counter() - started:.1f} s")


ACCOUNTS = f"""
from django.contrib.auth import get_user_model
from receipts.models import ApiClient
user, _ = get_user_model().objects.get_or_create(username={BENCH_USER!r})
user.is_staff = user.is_superuser = user.is_active = True
user.set_password({BENCH_PASSWORD!r})
user.save()
ApiClient.objects.filter(name={BENCH_USER!r}).delete()
"""


def create_accounts(url: str) -> str:
    """The superuser bench/bench and a fresh API token (the old client, if any, is deleted)."""
    manage(url, "shell", "-c", ACCOUNTS)
    return manage(url, "create_api_client", BENCH_USER, "--scopes", "read,write").stdout.strip().splitlines()[-1]


# --- ensure ------------------------------------------------------------------------------------------------


def ensure(
    url: str,
    scale: float = 1.0,
    seed: int = DEFAULT_SEED,
    rebuild: bool = False,
    log: Log = print,
    big_campaign: int | None = None,
) -> Info:
    """The set in this database: built when missing (or with ``rebuild``), migrated either way. ``big_campaign``
    sizes the big campaign on its own (default: 1,000,000 sends at scale 1)."""
    check_local(url)
    big = Sizes.at(scale, big_campaign).big_campaign
    if rebuild and database_exists(url):
        log(f"dropping {database_name(url)} (--rebuild)")
        drop_database(url)
    if database_exists(url):
        info = read_info(url)
        if info is not None and info.complete:
            if (info.version, info.scale, info.seed, info.big_campaign) != (GENERATOR_VERSION, scale, seed, big):
                raise Refused(
                    f"{database_name(url)} holds another set (scale {info.scale}, seed {info.seed}, big campaign "
                    f"{info.big_campaign:,}, generator v{info.version}); pass --rebuild to replace it, or another "
                    "--database-url"
                )
            log(
                f"{database_name(url)} holds the set (scale {info.scale}, seed {info.seed}, "
                f"built {info.built_at:%Y-%m-%d %H:%M} UTC)"
            )
            migrate(url, log)
            catch_up(url, log)
            if not info.token:
                info.token = create_accounts(url)
            info.size_bytes, info.size = size_on_disk(url)
            write_info(url, info)
            return info
        if info is None and has_tables(url):
            raise Refused(
                f"{database_name(url)} exists and is not a data set of this script; pass --rebuild to drop it, "
                "or choose another --database-url"
            )
        if info is not None:
            log(f"{database_name(url)} holds an unfinished build; starting again")
            drop_database(url)
    if not database_exists(url):
        create_database(url)
    migrate(url, log)
    info = Builder(url, scale, seed, log, big_campaign).build()
    catch_up(url, log)
    info.token = create_accounts(url)
    write_info(url, info)
    return info


# --- building --------------------------------------------------------------------------------------------


class Clock:
    def __init__(self, log: Log) -> None:
        self.started = time.perf_counter()
        self.log = log

    def __call__(self, text: str) -> None:
        self.log(f"[{time.perf_counter() - self.started:8.1f} s] {text}")

    @property
    def seconds(self) -> float:
        return time.perf_counter() - self.started


def chunks(total: int, size: int = CHUNK) -> Iterator[tuple[int, int]]:
    for lo in range(1, total + 1, size):
        yield lo, min(total, lo + size - 1)


# A uniform number in [0, 1) for (row, column, seed): the same seed draws the same set, whatever the plan.
FUNCTIONS = """
CREATE FUNCTION bench_u(i bigint, salt integer) RETURNS double precision
LANGUAGE sql IMMUTABLE PARALLEL SAFE
AS $$ SELECT (hashint8extended(i, {seed}::bigint * 1000003 + salt) & 281474976710655)::double precision
             / 281474976710656.0 $$;
CREATE FUNCTION bench_uuid(h text) RETURNS text
LANGUAGE sql IMMUTABLE PARALLEL SAFE
AS $$ SELECT substr(h, 1, 8) || '-' || substr(h, 9, 4) || '-4' || substr(h, 14, 3) || '-a' || substr(h, 18, 3)
             || '-' || substr(h, 21, 12) $$;
-- The provider's own code for a status (receipts/providers/*: the code tables), as its receipts carry it.
CREATE FUNCTION bench_code(provider text, status text) RETURNS text
LANGUAGE sql IMMUTABLE PARALLEL SAFE
AS $$ SELECT CASE provider
    WHEN 'genesys_cloud' THEN CASE status WHEN 'queued' THEN 'queued' WHEN 'sent' THEN 'Sent'
        WHEN 'delivered' THEN 'Delivered' WHEN 'read' THEN 'Read' WHEN 'deferred' THEN 'Sent' ELSE 'Failed' END
    WHEN 'genesys_sms' THEN CASE status WHEN 'queued' THEN '6' WHEN 'sent' THEN '1' WHEN 'delivered' THEN '2'
        WHEN 'expired' THEN '3' WHEN 'rejected' THEN '8' ELSE '5' END
    WHEN 'webex_connect' THEN CASE status WHEN 'queued' THEN '7501' WHEN 'sent' THEN '7501'
        WHEN 'delivered' THEN '7500' WHEN 'read' THEN '7502' WHEN 'clicked' THEN '7528' WHEN 'rejected' THEN '7101'
        WHEN 'expired' THEN '7208' WHEN 'bounced' THEN '7520' WHEN 'deferred' THEN '7520' ELSE '7102' END
    ELSE status END $$;
"""
DROP_FUNCTIONS = """
DROP FUNCTION IF EXISTS bench_u(bigint, integer);
DROP FUNCTION IF EXISTS bench_uuid(text);
DROP FUNCTION IF EXISTS bench_code(text, text);
"""

# The layers of one message, each drawn from its own column of bench_u. Every layer ends in OFFSET 0, which keeps
# PostgreSQL from flattening it into the next: flattened, each CASE is computed again wherever a later layer names
# its column (47 s instead of about 3 s for 100,000 messages). Pools: a phone number or an email address
# is picked with a skew (u^2), so a few recipients get thousands of messages and most get a handful.
MESSAGE_SOURCE = """
(WITH base AS (
    SELECT i AS id,
        %(t0)s::timestamptz - %(span)s::interval * (1 - (i - bench_u(i, 1)) / %(n)s::float8) AS created_at,
        CASE WHEN bench_u(i, 2) < 0.35 THEN 'email' ELSE 'sms' END AS channel,
        bench_u(i, 3) AS u_provider, bench_u(i, 4) AS u_status, bench_u(i, 5) AS u_review,
        bench_u(i, 6) AS u_engage, bench_u(i, 7) AS u_campaign, bench_u(i, 8) AS u_priority,
        bench_u(i, 9) AS u_address, bench_u(i, 10) AS u_failure, bench_u(i, 11) AS u_flight,
        bench_u(i, 12) AS u_time, bench_u(i, 13) AS u_crm, bench_u(i, 14) AS u_read,
        md5(%(seed)s::text || ':m:' || i) AS h
    FROM generate_series(%(lo)s::bigint, %(hi)s::bigint) AS i
    OFFSET 0
), kind AS (
    SELECT b.*,
        CASE WHEN channel = 'sms' THEN
            CASE WHEN u_provider < 0.30 THEN 'genesys_cloud' WHEN u_provider < 0.65 THEN 'genesys_sms'
                 WHEN u_provider < 0.85 THEN 'webex_connect' ELSE 'generic' END
        ELSE CASE WHEN u_provider < 0.25 THEN 'genesys_cloud' WHEN u_provider < 0.75 THEN 'webex_connect'
                  ELSE 'generic' END
        END AS provider,
        CASE WHEN u_priority < 0.03 THEN 'critical' WHEN u_priority < 0.15 THEN 'high'
             WHEN u_priority < 0.85 THEN 'normal' ELSE 'bulk' END AS priority,
        floor(CASE WHEN channel = 'sms' THEN %(sms_pool)s::bigint ELSE %(email_pool)s::bigint END
              * u_address * u_address)::bigint AS k,
        extract(epoch FROM %(t0)s::timestamptz - created_at) AS age
    FROM base b
    OFFSET 0
), flight AS (
    -- In flight: from all of the messages of the last seconds to none of those an hour old.
    SELECT k.*, (age < 3600 AND u_flight < 1 - age / 3600) AS in_flight FROM kind k OFFSET 0
), st AS (
    SELECT f.*,
        CASE WHEN in_flight THEN
            CASE WHEN u_status < 0.15 THEN 'pending' WHEN u_status < 0.40 THEN 'queued'
                 WHEN u_status < 0.95 OR channel = 'sms' THEN 'sent' ELSE 'deferred' END
        ELSE CASE WHEN u_status < 0.885 THEN 'delivered' WHEN u_status < 0.945 THEN 'failed'
                  WHEN u_status < 0.965 THEN CASE WHEN channel = 'email' THEN 'bounced' ELSE 'failed' END
                  WHEN u_status < 0.985 THEN 'rejected' ELSE 'expired' END
        END AS status
    FROM flight f
    OFFSET 0
), rv AS (
    SELECT s.*,
        CASE WHEN in_flight THEN ''
             WHEN status = 'delivered' AND u_review < 0.0065 AND age > 90000 THEN 'no_receipt'
             WHEN u_review >= 0.0065 AND u_review < 0.0095 THEN 'conflicting_receipts'
             WHEN u_review >= 0.0095 AND u_review < 0.0105 AND provider IN ('genesys_cloud', 'genesys_sms')
                 THEN 'provider_unknown'
             ELSE '' END AS review_reason,
        CASE WHEN status IN ('expired', 'deferred') THEN 'temporary_network'
             WHEN status = 'bounced' THEN 'invalid_destination'
             WHEN status = 'failed' THEN
                 CASE WHEN u_failure < 0.35 THEN 'invalid_destination' WHEN u_failure < 0.55 THEN 'carrier_throttle'
                      WHEN u_failure < 0.70 THEN 'temporary_network' WHEN u_failure < 0.80 THEN 'permanent_block'
                      WHEN u_failure < 0.88 THEN 'opted_out' WHEN u_failure < 0.93 THEN 'suppressed'
                      WHEN u_failure < 0.97 THEN 'content_rejected' ELSE 'unknown' END
             WHEN status = 'rejected' THEN
                 CASE WHEN u_failure < 0.40 THEN 'sender_config' WHEN u_failure < 0.70 THEN 'content_rejected'
                      WHEN u_failure < 0.85 THEN 'suppressed' WHEN u_failure < 0.95 THEN 'opted_out'
                      ELSE 'duplicate' END
             ELSE '' END AS failure_category,
        CASE WHEN status IN ('pending', 'queued') OR (status = 'rejected' AND u_failure < 0.5) THEN NULL
             ELSE created_at + (0.5 + 4 * u_time) * interval '1 second' END AS sent_at
    FROM st s
    OFFSET 0
), tm AS (
    SELECT r.*, review_reason = 'no_receipt' AS assumed,
        CASE WHEN status = 'pending' THEN NULL ELSE LEAST(%(t0)s::timestamptz, CASE status
            WHEN 'queued' THEN created_at + interval '300 milliseconds'
            WHEN 'sent' THEN sent_at
            WHEN 'deferred' THEN sent_at + (30 + 600 * u_time) * interval '1 second'
            WHEN 'rejected' THEN COALESCE(sent_at, created_at) + (0.2 + 2 * u_time) * interval '1 second'
            WHEN 'expired' THEN sent_at + (4 + 68 * u_time) * interval '1 hour'
            ELSE CASE WHEN review_reason = 'no_receipt' THEN sent_at + interval '24 hours'
                      ELSE sent_at + (2 + 300 * u_time * u_time * u_time) * interval '1 second' END
        END) END AS status_at,
        status = 'delivered' AND review_reason <> 'no_receipt'
            AND ((channel = 'email' AND u_engage < 0.35) OR (provider = 'genesys_cloud' AND u_engage < 0.15))
            AS reads,
        status = 'delivered' AND review_reason <> 'no_receipt' AND channel = 'email' AND provider <> 'genesys_cloud'
            AND u_engage < 0.06 AS clicks
    FROM rv r
    OFFSET 0
)
SELECT t.*,
    CASE WHEN reads THEN LEAST(%(t0)s::timestamptz, status_at + (60 + 86400 * u_read * u_read) * interval '1 second')
    END AS first_read_at,
    CASE WHEN channel = 'email' AND status = 'delivered' AND u_engage >= 0.9990 AND u_engage < 0.9995
        THEN LEAST(%(t0)s::timestamptz, status_at + interval '1 day') END AS complained_at,
    CASE WHEN channel = 'email' AND status = 'delivered' AND u_engage >= 0.9995
        THEN LEAST(%(t0)s::timestamptz, status_at + interval '2 days') END AS unsubscribed_at,
    CASE WHEN in_flight AND provider = 'genesys_cloud' AND priority IN ('critical', 'high') AND status <> 'pending'
        THEN %(t0)s::timestamptz + (-30 + 90 * u_time) * interval '1 second' END AS next_poll_at
FROM tm t
OFFSET 0) AS src
"""
MESSAGE_COLUMNS = [
    ("id", "id"),
    ("channel", "channel"),
    ("provider", "provider"),
    (
        "provider_message_id",
        "CASE WHEN provider = 'generic' THEN 'msg_' || substr(h, 1, 24) ELSE bench_uuid(h) END",
    ),
    (
        "to",
        "CASE WHEN channel = 'sms' THEN '+1555' || lpad(k::text, 7, '0') "
        "ELSE 'patient' || k || '@example' || mod(k, 40) || '.com' END",
    ),
    ("status", "status"),
    ("status_at", "status_at"),
    ("assumed", "assumed"),
    ("failure_category", "failure_category"),
    ("retryable", "failure_category IN ('temporary_network', 'carrier_throttle')"),
    (
        "provider_code",
        "CASE WHEN status = 'pending' THEN '' WHEN assumed THEN 'receipt_timeout' "
        "ELSE bench_code(provider, status) END",
    ),
    ("needs_review", "review_reason <> ''"),
    ("review_reason", "review_reason"),
    # Salesforce Contact ids (18 characters), one per recipient: a contact has many messages.
    (
        "crm_record_id",
        "CASE WHEN u_crm < 0.95 THEN '003' || CASE WHEN channel = 'sms' THEN 'Ks' ELSE 'Ke' END "
        "|| lpad(k::text, 10, '0') || 'IAA' ELSE '' END",
    ),
    ("priority", "priority"),
    (
        "conversation_id",
        "CASE WHEN provider = 'genesys_cloud' THEN bench_uuid(md5(%(seed)s::text || ':c:' || (id / 2))) "
        "WHEN provider = 'genesys_sms' AND u_crm < 0.3 THEN 'sms-' || substr(h, 3, 16) ELSE '' END",
    ),
    (
        "correlation_id",
        "CASE WHEN provider = 'webex_connect' THEN 'corr-' || substr(h, 5, 20) "
        "WHEN provider = 'generic' AND u_crm > 0.5 THEN 'ext-' || substr(h, 9, 16) ELSE '' END",
    ),
    (
        "metadata",
        "CASE WHEN u_campaign < 0.5 THEN jsonb_build_object("
        "'template', 'tpl-' || mod(floor(u_campaign * 1000)::int, 17), 'locale', 'en-US') ELSE '{}'::jsonb END",
    ),
    (
        "content",
        "CASE WHEN channel = 'sms' THEN "
        """'{"text": "Reminder: you have an appointment tomorrow. Reply STOP to opt out."}'::jsonb """
        """ELSE '{"from": "care@example.com", "subject": "Your appointment"}'::jsonb END""",
    ),
    ("read_count", "CASE WHEN reads THEN 1 + mod(floor(u_read * 1000)::int, 3) ELSE 0 END"),
    ("click_count", "CASE WHEN clicks THEN 1 ELSE 0 END"),
    ("first_read_at", "first_read_at"),
    ("complained_at", "complained_at"),
    ("unsubscribed_at", "unsubscribed_at"),
    ("created_at", "created_at"),
    ("updated_at", "GREATEST(created_at, status_at, first_read_at, complained_at, unsubscribed_at)"),
    # Most messages belong to one of the campaigns running when they were sent.
    (
        "campaign_id",
        "CASE WHEN u_campaign < 0.85 THEN GREATEST(1, LEAST(%(campaigns)s::int, "
        "floor((id - 0.5) / %(n)s::float8 * %(campaigns)s::int)::int + 1 - mod(floor(u_campaign * 100)::int, 4))) END",
    ),
    ("last_polled_at", "CASE WHEN next_poll_at IS NOT NULL AND age > 20 THEN next_poll_at - interval '60 seconds' END"),
    ("next_poll_at", "next_poll_at"),
    ("poll_count", "CASE WHEN next_poll_at IS NOT NULL THEN LEAST(10, floor(age / 60)::int) ELSE 0 END"),
    ("replaces_id", "NULL::bigint"),
    ("sent_at", "sent_at"),
    # A reply that confirmed it ("Reply YES to confirm"): a few delivered SMS.
    (
        "confirmed_at",
        "CASE WHEN channel = 'sms' AND status = 'delivered' AND u_engage < 0.02 THEN "
        "LEAST(%(t0)s::timestamptz, status_at + (60 + 3600 * u_read) * interval '1 second') END",
    ),
    ("confirmation", "CASE WHEN channel = 'sms' AND status = 'delivered' AND u_engage < 0.02 THEN 'YES' ELSE '' END"),
]

# Timeline entries, one per (message, step) that the message's status implies:
# 1 accepted/queued, 2 sent, 3 a deferral (soft bounce), 4 the final receipt, 5 a contradicting final receipt
# (conflicting_receipts), 6 the receipt timeout's own entry (assumed), 7 the provider not knowing the message
# (provider_unknown), 8 read, 9 clicked.
EVENT_SOURCE = """
(SELECT e.*,
    CASE WHEN step IN (6, 7) THEN '{}'::jsonb ELSE CASE provider
        WHEN 'generic' THEN jsonb_build_object('id', provider_message_id, 'status', code, 'timestamp', occurred_at)
        WHEN 'genesys_sms' THEN jsonb_build_object('type', 'receipt', 'message_id', provider_message_id,
            'message_state', code, 'result_code', CASE WHEN failure_category = '' THEN '0' ELSE '3' END)
        WHEN 'webex_connect' THEN jsonb_build_object('deliveryInfoNotification', jsonb_build_object(
            'deliveryInfo', jsonb_build_object('code', code, 'transid', provider_message_id,
            'deliverychannel', channel, 'timestamp', occurred_at)))
        ELSE jsonb_build_object('id', provider_message_id, 'conversationId', conversation_id, 'status', code,
            'timestamp', occurred_at, 'type', 'Receipt') END
    END AS raw_body
FROM (
    SELECT m.id AS message_id, s.step, m.provider, m.provider_message_id, m.channel, m.conversation_id,
        CASE s.step WHEN 1 THEN 'queued' WHEN 2 THEN 'sent' WHEN 3 THEN 'deferred' WHEN 4 THEN m.status
            WHEN 5 THEN CASE WHEN m.status = 'delivered' THEN 'failed' ELSE 'delivered' END
            WHEN 6 THEN 'delivered' ELSE '' END AS status,
        CASE s.step WHEN 8 THEN 'read' WHEN 9 THEN 'clicked' ELSE '' END AS engagement,
        CASE s.step WHEN 3 THEN 'temporary_network' WHEN 4 THEN m.failure_category
            WHEN 5 THEN CASE WHEN m.status = 'delivered' THEN 'unknown' ELSE '' END ELSE '' END AS failure_category,
        CASE s.step WHEN 1 THEN bench_code(m.provider, 'queued') WHEN 2 THEN bench_code(m.provider, 'sent')
            WHEN 3 THEN bench_code(m.provider, 'deferred') WHEN 4 THEN m.provider_code
            WHEN 5 THEN bench_code(m.provider, CASE WHEN m.status = 'delivered' THEN 'failed' ELSE 'delivered' END)
            WHEN 6 THEN 'receipt_timeout' WHEN 7 THEN 'not_found' WHEN 8 THEN bench_code(m.provider, 'read')
            ELSE bench_code(m.provider, 'clicked') END AS code,
        s.step IN (1, 2, 3, 4, 6) AS applied,
        CASE s.step
            WHEN 4 THEN CASE WHEN m.failure_category = '' THEN ''
                ELSE initcap(replace(m.failure_category, '_', ' ')) END
            WHEN 6 THEN 'no final receipt within 1 day, 0:00:00; delivery assumed'
            WHEN 7 THEN 'Genesys Cloud answered 404 Not Found for this message id after 0:05:00'
            ELSE '' END AS description,
        CASE WHEN m.provider = 'genesys_cloud' AND s.step NOT IN (6, 7)
            THEN jsonb_build_object('conversation_id', m.conversation_id) ELSE '{}'::jsonb END AS details,
        LEAST(%(t0)s::timestamptz, CASE s.step
            WHEN 1 THEN m.created_at + interval '300 milliseconds'
            WHEN 2 THEN m.sent_at
            WHEN 3 THEN CASE WHEN m.status = 'deferred' THEN m.status_at
                ELSE m.sent_at + (m.status_at - m.sent_at) / 2 END
            WHEN 4 THEN m.status_at
            WHEN 5 THEN m.status_at + interval '5 minutes'
            WHEN 6 THEN m.status_at
            WHEN 7 THEN COALESCE(m.sent_at, m.created_at) + interval '10 minutes'
            WHEN 8 THEN m.first_read_at
            ELSE m.first_read_at + interval '30 seconds' END) AS occurred_at
    FROM receipts_message m CROSS JOIN generate_series(1, 9) AS s(step)
    WHERE m.id BETWEEN %(lo)s::bigint AND %(hi)s::bigint AND CASE s.step
        WHEN 1 THEN m.status = 'queued' OR (m.status <> 'pending' AND bench_u(m.id, 30) < 0.40)
        WHEN 2 THEN m.sent_at IS NOT NULL
        WHEN 3 THEN m.status = 'deferred'
            OR (m.channel = 'email' AND m.status IN ('delivered', 'bounced') AND bench_u(m.id, 31) < 0.03)
        WHEN 4 THEN m.status IN ('delivered', 'failed', 'rejected', 'expired', 'bounced') AND NOT m.assumed
        WHEN 5 THEN m.review_reason = 'conflicting_receipts'
        WHEN 6 THEN m.assumed
        WHEN 7 THEN m.review_reason = 'provider_unknown'
        WHEN 8 THEN m.read_count > 0
        ELSE m.click_count > 0 END
    OFFSET 0
) e
OFFSET 0) AS src
"""
EVENT_COLUMNS = [
    ("message_id", "message_id"),
    ("receipt_event_id", "NULL::bigint"),
    ("source", "CASE WHEN step IN (6, 7) THEN 'poll' ELSE 'webhook' END"),
    # Real keys are SHA-256 hex digests: 64 characters, as in the unique (message, receipt_key) index.
    ("receipt_key", "md5(%(seed)s::text || ':e:' || message_id || ':' || step) || md5(step || ':' || message_id)"),
    ("provider_code", "code"),
    ("status", "status"),
    ("engagement", "engagement"),
    ("failure_category", "failure_category"),
    ("retryable", "failure_category IN ('temporary_network', 'carrier_throttle')"),
    ("unmapped", "false"),
    ("applied", "applied"),
    ("description", "description"),
    ("details", "details"),
    ("raw", "raw_body"),
    ("occurred_at", "occurred_at"),
    (
        "received_at",
        "LEAST(%(t0)s::timestamptz, "
        "occurred_at + (0.2 + 3 * bench_u(message_id * 16 + step, 32)) * interval '1 second')",
    ),
]

# The message with a 50-entry timeline: an email newsletter opened and clicked again and again.
LONG_MESSAGE = """
INSERT INTO receipts_message (id, channel, provider, provider_message_id, "to", status, status_at, assumed,
    failure_category, retryable, provider_code, needs_review, review_reason, crm_record_id, priority,
    conversation_id, correlation_id, metadata, content, read_count, click_count, first_read_at, complained_at,
    unsubscribed_at, created_at, updated_at, campaign_id, last_polled_at, next_poll_at, poll_count, replaces_id,
    sent_at, confirmation)
VALUES (%(id)s, 'email', 'webex_connect', 'bench-long-timeline-' || %(seed)s::text, 'patient1@example1.com',
    'delivered', %(t0)s::timestamptz - interval '3 days' + interval '10 seconds', false, '', false, '7500', false, '',
    '003Ke0000000001IAA', 'normal', '', 'corr-long-timeline', '{}', '{"subject": "Monthly newsletter"}', 23, 24,
    %(t0)s::timestamptz - interval '3 days' + interval '70 minutes', NULL, NULL,
    %(t0)s::timestamptz - interval '3 days', %(t0)s::timestamptz - interval '17 hours', 1, NULL, NULL, 0, NULL,
    %(t0)s::timestamptz - interval '3 days' + interval '2 seconds', '')
"""
LONG_TIMELINE = """
INSERT INTO receipts_messageevent (message_id, receipt_event_id, source, receipt_key, provider_code, status,
    engagement, failure_category, retryable, unmapped, applied, description, details, raw, occurred_at, received_at)
SELECT %(id)s, NULL, 'webhook', md5('long:' || n) || md5(n || ':long'),
    CASE n WHEN 1 THEN '7501' WHEN 2 THEN '7501' WHEN 3 THEN '7500'
        ELSE CASE WHEN n %% 2 = 1 THEN '7502' ELSE '7528' END END,
    CASE n WHEN 1 THEN 'queued' WHEN 2 THEN 'sent' WHEN 3 THEN 'delivered' ELSE '' END,
    CASE WHEN n < 4 THEN '' WHEN n %% 2 = 1 THEN 'read' ELSE 'clicked' END,
    '', false, false, n < 4, '', '{}',
    jsonb_build_object('deliveryInfoNotification', jsonb_build_object('deliveryInfo',
        jsonb_build_object('code', n, 'transid', 'bench-long-timeline-' || %(seed)s::text))),
    at, at + interval '1 second'
FROM (SELECT n, %(t0)s::timestamptz - interval '3 days' + CASE WHEN n < 4 THEN n * interval '3 seconds'
        ELSE (n - 3) * interval '70 minutes' END AS at
      FROM generate_series(1, 50) AS n) AS steps
"""

# Campaigns that only track messages (no channel: the CRM sends them), and the big campaign, sent by us; the
# columns the generator does not name get their type's empty value (Builder.insert).
CAMPAIGN_SOURCE = """
(SELECT j AS id, (ARRAY['appt-reminder', 'flu-shot', 'billing', 'survey', 'welcome', 'renewal', 'outage-notice',
        'lab-results'])[1 + mod(j, 8)] || '-' || to_char(created, 'YYYY-MM-DD') || '-' || j AS name, created
FROM (SELECT j, %(t0)s::timestamptz - %(span)s::interval * (1 - (j - 1) / %(campaigns)s::float8) - interval '1 day'
          AS created
      FROM generate_series(1, %(campaigns)s::int) AS j) AS c) AS src
"""
CAMPAIGN_COLUMNS = [
    ("id", "id"),
    ("name", "name"),
    ("created_at", "created"),
    ("audience", "'{}'::jsonb"),
    ("priority", "'normal'"),
    ("state", "'draft'"),
    ("planned", "0"),
    ("planned_through", "0"),
    ("planning_done", "false"),
]
BIG_CAMPAIGN_SOURCE = "(SELECT %(big_id)s::bigint AS id) AS src"
BIG_CAMPAIGN_COLUMNS = [
    ("id", "id"),
    ("name", "'appt-reminder-big-' || to_char(%(big_at)s::timestamptz, 'YYYY-MM-DD')"),
    ("created_at", "%(big_at)s::timestamptz - interval '1 day'"),
    ("channel", "'sms'"),
    ("provider", "'genesys_sms'"),
    ("body", "'Reminder: your appointment is tomorrow, {{ contact.first_name }}. Reply YES to confirm.'"),
    ("audience", "'{}'::jsonb"),
    ("priority", "'normal'"),
    ("time_zone", "'America/New_York'"),
    ("state", "'completed'"),
    ("audience_size", "%(big)s::int"),
    ("planned", "%(big)s::int"),
    ("planned_through", "%(big)s::bigint"),
    ("planning_done", "true"),
    ("started_at", "%(big_at)s::timestamptz - interval '1 minute'"),
    ("finished_at", "%(big_at)s::timestamptz + %(big)s::int * interval '12.5 milliseconds' + interval '1 minute'"),
]

# The big campaign's audience: contact j has phone +1556 j (7 digits) and its own CRM record.
CONTACT_SOURCE = "generate_series(%(lo)s::bigint, %(hi)s::bigint) AS j"
CONTACT_COLUMNS = [
    ("id", "j"),
    ("crm_record_id", "'003Kc' || lpad(j::text, 10, '0') || 'IAA'"),
    ("phone", "'+1556' || lpad(j::text, 7, '0')"),
    ("email", "CASE WHEN bench_u(j, 70) < 0.6 THEN 'contact' || j || '@example' || mod(j, 40) || '.com' ELSE '' END"),
    ("attributes", "jsonb_build_object('first_name', 'Pat' || mod(j, 997), 'clinic', 'clinic-' || mod(j, 17))"),
    ("external_contact_id", "''"),
    ("created_at", "%(big_at)s::timestamptz - interval '10 days' + j * interval '1 millisecond'"),
    ("updated_at", "%(big_at)s::timestamptz - interval '10 days' + j * interval '1 millisecond'"),
]

# Messages beyond the main series (ids after the 50-entry one): the big campaign's (sent at 80 a second from three
# days before the clock, about 3% still 'sent') and the heavy phone's (spread over the 90 days, all final). Each is
# j = 1.. of its own range; its first message id is %(first)s.
EXTRA_MESSAGE_SOURCE = """
(SELECT b.*,
    CASE WHEN status = 'sent' THEN sent_at
         WHEN status = 'delivered' THEN sent_at + (2 + 30 * u_time) * interval '1 second'
         ELSE sent_at + (1 + 5 * u_time) * interval '1 second' END AS status_at
 FROM (SELECT j, %(first)s::bigint + j - 1 AS id, created_at,
          created_at + (0.5 + u_time) * interval '1 second' AS sent_at,
          u_time, u_engage, md5(%(seed)s::text || ':' || %(kind)s::text || ':' || j) AS h,
          CASE WHEN u_status < %(in_flight)s::float8 THEN 'sent' WHEN u_status < 0.955 THEN 'delivered'
               ELSE 'failed' END AS status
       FROM (SELECT j, %(start)s::timestamptz + (j - 1) * %(step)s::interval AS created_at,
                 bench_u(j * 7 + %(salt)s::int, 61) AS u_status, bench_u(j * 7 + %(salt)s::int, 62) AS u_time,
                 bench_u(j * 7 + %(salt)s::int, 63) AS u_engage
             FROM generate_series(%(lo)s::bigint, %(hi)s::bigint) AS j OFFSET 0) AS u
       OFFSET 0) AS b
 OFFSET 0) AS src
"""


def extra_message_columns(to: str, crm_record_id: str, campaign: str) -> list[tuple[str, str]]:
    """EXTRA_MESSAGE_SOURCE's columns, with these SQL expressions for the address, the CRM record and the campaign."""
    return [
        (name, {"to": to, "crm_record_id": crm_record_id, "campaign_id": campaign}.get(name, value))
        for name, value in EXTRA_MESSAGE_COLUMNS
    ]


EXTRA_MESSAGE_COLUMNS = [
    ("id", "id"),
    ("channel", "'sms'"),
    ("provider", "'genesys_sms'"),
    ("provider_message_id", "bench_uuid(h)"),
    ("to", ""),
    ("status", "status"),
    ("status_at", "status_at"),
    ("assumed", "false"),
    ("failure_category", "CASE WHEN status = 'failed' THEN 'invalid_destination' ELSE '' END"),
    ("retryable", "false"),
    ("provider_code", "bench_code('genesys_sms', status)"),
    ("needs_review", "false"),
    ("review_reason", "''"),
    ("crm_record_id", ""),
    ("priority", "'normal'"),
    ("conversation_id", "''"),
    ("correlation_id", "''"),
    ("metadata", "'{}'::jsonb"),
    ("content", """'{"text": "Reminder: your appointment is tomorrow. Reply YES to confirm."}'::jsonb"""),
    ("read_count", "0"),
    ("click_count", "0"),
    ("created_at", "created_at"),
    ("updated_at", "status_at"),
    ("campaign_id", ""),
    ("poll_count", "0"),
    ("sent_at", "sent_at"),
    ("confirmed_at", "CASE WHEN status = 'delivered' AND u_engage < 0.05 THEN status_at + interval '20 minutes' END"),
    ("confirmation", "CASE WHEN status = 'delivered' AND u_engage < 0.05 THEN 'YES' ELSE '' END"),
]
# The big campaign's sends: one per contact, each sent, with its message.
SEND_SOURCE = """
(SELECT s.j, m.id AS message_id, m.provider_message_id, m.sent_at, m.content, m."to", m.crm_record_id
 FROM generate_series(%(lo)s::bigint, %(hi)s::bigint) AS s(j)
 JOIN receipts_message m ON m.id = %(first)s::bigint + s.j - 1
 OFFSET 0) AS src
"""
SEND_COLUMNS = [
    ("id", "j"),
    ("idempotency_key", "NULL::text"),
    ("client", "NULL::bigint"),
    ("channel", "'sms'"),
    ("provider", "'genesys_sms'"),
    ("to", '"to"'),
    ("content", "content"),
    ("crm_record_id", "crm_record_id"),
    ("campaign_id", "%(big_id)s::bigint"),
    ("priority", "'normal'"),
    ("rank", "2"),
    ("metadata", "'{}'::jsonb"),
    ("time_zone", "'America/New_York'"),
    ("state", "'sent'"),
    ("attempts", "1"),
    ("claimed_at", "sent_at - interval '1 second'"),
    ("provider_message_id", "provider_message_id"),
    ("message_id", "message_id"),
    ("error", "''"),
    ("created_at", "%(big_at)s::timestamptz - interval '1 minute'"),
    ("sent_at", "sent_at"),
    ("finished_at", "sent_at"),
]
# The heavy CRM record's changes, about the heavy phone's messages, over the outbox's 30 days (ids after the rest).
HEAVY_OUTBOX_SOURCE = """
(SELECT o.*, m.crm_record_id, m.provider, m.provider_message_id, m.channel, m.status, m.status_at, m.assumed,
        m.failure_category, m.retryable, m.provider_code, m.needs_review, m.review_reason, NULL::text AS campaign,
        m."to"
 FROM (SELECT %(count)s::bigint - %(heavy)s::bigint + j AS id,
          %(t0)s::timestamptz - %(outbox_span)s::interval * (1 - j / (%(heavy)s::float8 + 1)) AS created_at,
          'status_changed' AS kind, 'sent' AS state,
          %(first)s::bigint + mod(j - 1, %(messages)s::bigint) AS message_id
       FROM generate_series(1, %(heavy)s::bigint) AS j
       OFFSET 0) AS o
 JOIN receipts_message m ON m.id = o.message_id
 OFFSET 0) AS src
"""
# What the fallback sweep decided for the campaigns' escalated messages: nothing (no fallback channel).
FALLBACKS = """
INSERT INTO campaigns_fallback (escalation_id, message_id, campaign_id, send_id, planned, reason, decided_at)
SELECT e.id, e.message_id, m.campaign_id, NULL, false, 'the campaign has no fallback channel',
    e.raised_at + interval '1 minute'
FROM receipts_escalation e JOIN receipts_message m ON m.id = e.message_id
WHERE m.campaign_id IS NOT NULL
ORDER BY e.id
"""

# The inbox: a sample of the timeline's webhook receipts of the last 30 days (processed, linked from their
# entries), and the rows that did not get that far, numbered together in the order they came in.
INBOX_TABLE = """
CREATE UNLOGGED TABLE bench_inbox (event_id bigint, state text, provider text, ref_id text, conversation_id text,
    channel text, code text, occurred_at timestamptz, received_at timestamptz)
"""
INBOX_STAGE = """
INSERT INTO bench_inbox
SELECT e.id AS event_id, 'processed' AS state, m.provider, m.provider_message_id AS ref_id, m.conversation_id,
    m.channel, e.provider_code AS code, e.occurred_at, e.received_at
FROM receipts_messageevent e JOIN receipts_message m ON m.id = e.message_id
WHERE e.source = 'webhook' AND e.received_at >= %(since)s::timestamptz AND bench_u(e.id, 40) < %(share)s::float8
"""
INBOX_OTHERS = """
INSERT INTO bench_inbox (event_id, state, provider, ref_id, conversation_id, channel, code, occurred_at, received_at)
SELECT NULL, state,
    (ARRAY['genesys_cloud', 'genesys_sms', 'webex_connect', 'generic'])[1 + floor(bench_u(j, 41) * 4)::int],
    'orphan-' || substr(md5(%(seed)s::text || ':o:' || j), 1, 24), '', 'sms', 'delivered', received_at, received_at
FROM (SELECT j, CASE
        WHEN j <= %(received)s::bigint THEN 'received'
        WHEN j <= %(orphan)s::bigint THEN 'orphan'
        WHEN j <= %(unmatched)s::bigint THEN 'unmatched'
        WHEN j <= %(rejected)s::bigint THEN 'rejected'
        ELSE 'dead' END AS state,
        %(t0)s::timestamptz - CASE
            WHEN j <= %(received)s::bigint THEN bench_u(j, 42) * interval '10 minutes'
            WHEN j <= %(orphan)s::bigint THEN bench_u(j, 42) * interval '23 hours'
            WHEN j <= %(unmatched)s::bigint THEN interval '25 hours' + bench_u(j, 42) * interval '28 days'
            ELSE bench_u(j, 42) * interval '30 days' END AS received_at
      FROM generate_series(1, %(dead)s::bigint) AS j) AS o
"""
INBOX_NUMBERED = """
CREATE UNLOGGED TABLE bench_inbox_numbered AS
SELECT row_number() OVER (ORDER BY received_at, event_id NULLS LAST, ref_id) AS id, * FROM bench_inbox
"""
INBOX_SOURCE = "bench_inbox_numbered AS src"
INBOX_COLUMNS = [
    ("id", "id"),
    ("provider", "provider"),
    ("source", "'webhook'"),
    ("state", "state"),
    (
        "dedupe_key",
        "CASE WHEN state = 'rejected' THEN NULL ELSE md5(%(seed)s::text || ':d:' || id) || md5(id || ':d') END",
    ),
    (
        "body",
        "CASE WHEN state = 'rejected' THEN '{\"id\": \"' || ref_id || '\", \"status\": ' "
        "WHEN provider = 'genesys_sms' THEN 'type=receipt&message_id=' || ref_id || '&message_state=' || code "
        "|| '&result_code=0&app_id=receipt-tracker' "
        "WHEN provider = 'webex_connect' THEN jsonb_build_object('deliveryInfoNotification', jsonb_build_object("
        "'deliveryInfo', jsonb_build_object('code', code, 'transid', ref_id, 'deliverychannel', channel, "
        "'timestamp', occurred_at)))::text "
        "WHEN provider = 'genesys_cloud' THEN jsonb_build_object('id', ref_id, 'conversationId', conversation_id, "
        "'status', code, 'timestamp', occurred_at, 'type', 'Receipt')::text "
        "ELSE jsonb_build_object('id', ref_id, 'status', code, 'timestamp', occurred_at)::text END",
    ),
    (
        "content_type",
        "CASE WHEN provider = 'genesys_sms' AND state <> 'rejected' THEN 'application/x-www-form-urlencoded' "
        "ELSE 'application/json' END",
    ),
    ("remote_addr", "('203.0.113.' || (1 + mod(id, 250)))::inet"),
    ("ref", "CASE WHEN state IN ('orphan', 'unmatched') THEN ref_id ELSE '' END"),
    (
        "error",
        "CASE state WHEN 'unmatched' THEN 'no message registered within the orphan window' "
        "WHEN 'rejected' THEN 'malformed: body is not JSON (Unterminated string starting at: line 1 column 30)' "
        "WHEN 'dead' THEN 'OperationalError: could not serialize access due to concurrent update' "
        "WHEN 'received' THEN 'OperationalError: server closed the connection unexpectedly' ELSE '' END",
    ),
    ("attempts", "CASE state WHEN 'rejected' THEN 0 WHEN 'dead' THEN 5 WHEN 'received' THEN 2 ELSE 1 END"),
    ("received_at", "received_at"),
    (
        "next_attempt_at",
        "CASE WHEN state = 'received' THEN %(t0)s::timestamptz + interval '20 minutes' ELSE received_at END",
    ),
    ("orphan_until", "CASE WHEN state IN ('orphan', 'unmatched') THEN received_at + interval '24 hours' END"),
    (
        "processed_at",
        "CASE WHEN state IN ('processed', 'orphan', 'unmatched') "
        "THEN received_at + (0.05 + 2 * bench_u(id, 43)) * interval '1 second' END",
    ),
]
INBOX_LINK = """
UPDATE receipts_messageevent e SET receipt_event_id = n.id
FROM bench_inbox_numbered n WHERE n.event_id = e.id
"""

# The outbox trigger gave each change a feed entry; number them all, as the feed's reads would have, in the order
# they were written.
FEED_POSITIONS = """
UPDATE crm_sync_feedentry e SET position = o.n
FROM (SELECT id, ROW_NUMBER() OVER (ORDER BY txid, id) AS n FROM crm_sync_outboxmessage) AS o
WHERE e.change_id = o.id AND e.position IS NULL
"""
# The CRM outbox: the changes of the last 30 days, each about a message of its time; the newest still pending.
OUTBOX_SOURCE = """
(SELECT o.*, m.crm_record_id, m.provider, m.provider_message_id, m.channel, m.status, m.status_at, m.assumed,
        m.failure_category, m.retryable, m.provider_code, m.needs_review, m.review_reason, c.name AS campaign,
        m."to"
 FROM (SELECT j AS id,
          %(t0)s::timestamptz - %(outbox_span)s::interval * (1 - (j - bench_u(j, 50)) / %(count)s::float8)
              AS created_at,
          CASE WHEN bench_u(j, 51) < 0.90 THEN 'status_changed' WHEN bench_u(j, 51) < 0.92 THEN 'review_resolved'
               WHEN bench_u(j, 51) < 0.925 THEN 'escalation' WHEN bench_u(j, 51) < 0.985 THEN 'suppression_added'
               ELSE 'suppression_lifted' END AS kind,
          CASE WHEN j > %(count)s::bigint - %(pending)s::bigint THEN 'pending'
               WHEN bench_u(j, 52) < 0.005 THEN 'skipped' WHEN bench_u(j, 52) < 0.006 THEN 'dead'
               ELSE 'sent' END AS state,
          GREATEST(1, LEAST(%(n)s::bigint, round(%(n)s::bigint * (1 - %(outbox_share)s::float8
              * (1 - j / %(count)s::float8)))::bigint - floor(bench_u(j, 53) * %(spread)s::int)::bigint)) AS message_id
       FROM generate_series(%(lo)s::bigint, %(hi)s::bigint) AS j
       OFFSET 0) AS o
 JOIN receipts_message m ON m.id = o.message_id
 LEFT JOIN campaigns_campaign c ON c.id = m.campaign_id
 OFFSET 0) AS src
"""
OUTBOX_COLUMNS = [
    ("id", "id"),
    ("idempotency_key", "'chg_' || md5(%(seed)s::text || ':x:' || id)"),
    ("kind", "kind"),
    ("crm_record_id", "crm_record_id"),
    ("message_id", "message_id"),
    (
        "stream",
        "CASE WHEN crm_record_id <> '' THEN 'record:' || crm_record_id ELSE 'message:' || message_id END",
    ),
    (
        "payload",
        "CASE WHEN kind LIKE 'suppression%%' THEN jsonb_build_object('channel', channel, "
        "'address_sha256', encode(sha256(convert_to(\"to\", 'UTF8')), 'hex'), 'reason', 'unsubscribe', "
        "'active', kind = 'suppression_added', 'message_id', message_id, 'crm_record_id', crm_record_id) "
        "ELSE jsonb_build_object('message_id', message_id, 'provider', provider, 'provider_message_id', "
        "provider_message_id, 'channel', channel, 'status', status, 'previous_status', 'sent', 'status_at', status_at, "
        "'assumed', assumed, 'failure_category', failure_category, 'retryable', retryable, 'provider_code', "
        "provider_code, 'needs_review', needs_review, 'review_reason', review_reason, 'campaign', campaign, "
        "'crm_record_id', crm_record_id, 'source', 'webhook') END",
    ),
    ("occurred_at", "created_at - interval '100 milliseconds'"),
    ("created_at", "created_at"),
    # Transaction ids below the server's current one, rising with the id: the feed serves them all.
    ("txid", "1 + floor((id - 1) * %(txids)s::float8 / %(count)s::float8)::bigint"),
    ("sequence", "CASE WHEN state = 'pending' THEN NULL ELSE id END"),
    ("state", "state"),
    ("attempts", "CASE state WHEN 'pending' THEN 0 WHEN 'dead' THEN 30 ELSE 1 END"),
    (
        "next_attempt_at",
        "CASE WHEN state = 'pending' THEN created_at ELSE created_at + interval '8 seconds' END",
    ),
    ("sent_at", "CASE WHEN state = 'sent' THEN created_at + (0.5 + 2 * bench_u(id, 54)) * interval '1 second' END"),
    (
        "last_error",
        "CASE state WHEN 'dead' THEN 'HTTP 400: INVALID_FIELD: No such column ''Delivery_Status__c''' "
        "WHEN 'skipped' THEN 'the CRM has no record ' || crm_record_id ELSE '' END",
    ),
]

# Suppressions over 700 days, oldest first; address 2j+1 of the pool (so no two open rows share an address).
SUPPRESSION_SOURCE = """
(SELECT s.*,
    CASE WHEN reason = 'soft_bounce_threshold' THEN created_at + interval '30 days' END AS expires_at,
    CASE WHEN reason = 'soft_bounce_threshold' AND created_at + interval '30 days' <= %(t0)s::timestamptz
             THEN 'system'
         WHEN bench_u(j, 64) < 0.05 THEN 'operator' ELSE '' END AS lift_source
 FROM (SELECT j, 2 * (j - 1) + 1 AS k,
          CASE WHEN bench_u(j, 60) < 0.9 THEN 'sms' ELSE 'email' END AS channel,
          %(t0)s::timestamptz - %(suppression_span)s::interval * (1 - (j - bench_u(j, 61)) / %(count)s::float8)
              AS created_at,
          CASE WHEN bench_u(j, 62) < 0.40 THEN 'unsubscribe' WHEN bench_u(j, 62) < 0.60 THEN 'hard_bounce'
               WHEN bench_u(j, 62) < 0.75 THEN 'invalid_destination' WHEN bench_u(j, 62) < 0.85 THEN 'manual'
               WHEN bench_u(j, 62) < 0.95 THEN 'soft_bounce_threshold' ELSE 'complaint' END AS reason,
          bench_u(j, 63) AS u_source
       FROM generate_series(%(lo)s::bigint, %(hi)s::bigint) AS j
       OFFSET 0) AS s
 OFFSET 0) AS src
"""
SUPPRESSION_COLUMNS = [
    ("id", "j"),
    ("channel", "channel"),
    (
        "address",
        "CASE WHEN channel = 'sms' THEN '+1555' || lpad(k::text, 7, '0') "
        "ELSE 'patient' || k || '@example' || mod(k, 40) || '.com' END",
    ),
    ("reason", "reason"),
    (
        "source",
        "CASE WHEN reason = 'manual' THEN CASE WHEN u_source < 0.6 THEN 'operator' ELSE 'import' END "
        "WHEN reason = 'unsubscribe' AND u_source < 0.3 THEN 'api' ELSE 'receipt' END",
    ),
    ("note", "CASE WHEN reason = 'manual' THEN 'asked on a call' ELSE '' END"),
    (
        "evidence",
        "CASE WHEN reason = 'manual' OR (reason = 'unsubscribe' AND u_source < 0.3) THEN '{}'::jsonb "
        "ELSE jsonb_build_object('receipt_key', md5(%(seed)s::text || ':s:' || j) || md5(j || ':s')) END",
    ),
    ("message_id", "NULL::bigint"),
    ("created_at", "created_at"),
    (
        "created_by",
        "CASE WHEN reason = 'manual' THEN CASE WHEN u_source < 0.6 THEN 'operator:admin' ELSE 'import:admin' END "
        "WHEN reason = 'unsubscribe' AND u_source < 0.3 THEN 'api:crm' ELSE 'receipt' END",
    ),
    ("user_id", "NULL::integer"),
    ("expires_at", "expires_at"),
    (
        "lifted_at",
        "CASE lift_source WHEN 'system' THEN expires_at "
        "WHEN 'operator' THEN created_at + (%(t0)s::timestamptz - created_at) * bench_u(j, 65) END",
    ),
    ("lifted_by", "CASE lift_source WHEN 'system' THEN 'system' WHEN 'operator' THEN 'operator:admin' ELSE '' END"),
    ("lift_source", "lift_source"),
    (
        "lift_reason",
        "CASE lift_source WHEN 'system' THEN 'expired' "
        "WHEN 'operator' THEN 'customer asked to be contacted again' ELSE '' END",
    ),
]
SUPPRESSION_HISTORY = """
INSERT INTO receipts_suppressionchange (suppression_id, action, source, actor, user_id, note, evidence, receipt_key, at)
SELECT suppression_id, action, source, actor, NULL, note, evidence, receipt_key, at FROM (
    SELECT id AS suppression_id, 'added' AS action, source, created_by AS actor, note, evidence,
        COALESCE(evidence ->> 'receipt_key', '') AS receipt_key, created_at AS at
    FROM receipts_suppression
    UNION ALL
    SELECT id, CASE WHEN lift_source = 'system' THEN 'expired' ELSE 'lifted' END, lift_source, lifted_by,
        lift_reason, '{}'::jsonb, '', lifted_at
    FROM receipts_suppression WHERE lifted_at IS NOT NULL
) AS h ORDER BY at, suppression_id
"""
# Every critical message not delivered within FALLBACK_AFTER (10 minutes) was escalated, as the sweep does; the
# older ones acknowledged.
ESCALATIONS = """
INSERT INTO receipts_escalation (message_id, raised_at, deadline, status, failure_category, reason,
    acknowledged_at, acknowledged_by_id, note, fallback)
SELECT id, raised_at, created_at + interval '10 minutes', status, failure_category,
    CASE WHEN raised_at < created_at + interval '10 minutes' THEN 'failed before the deadline: ' || status
         ELSE 'not delivered 0:10:00 after it was sent (status ' || status || ')' END,
    CASE WHEN created_at < %(t0)s::timestamptz - interval '1 day' THEN raised_at + interval '20 minutes' END,
    NULL, '', ''
FROM (SELECT id, created_at, status, failure_category,
          CASE WHEN status IN ('failed', 'rejected', 'expired', 'bounced')
               THEN LEAST(status_at, created_at + interval '10 minutes')
               ELSE created_at + interval '10 minutes' END AS raised_at
      FROM receipts_message
      WHERE priority = 'critical' AND NOT (status = 'delivered' AND NOT assumed)
          AND created_at < %(t0)s::timestamptz - interval '10 minutes') AS m
ORDER BY raised_at, id
"""

TYPE_DEFAULTS = {
    "character varying": "''",
    "text": "''",
    "integer": "0",
    "bigint": "0",
    "smallint": "0",
    "boolean": "false",
    "jsonb": "'{}'::jsonb",
    "json": "'{}'::json",
    "timestamp with time zone": "%(t0)s::timestamptz",
    "double precision": "0",
    "numeric": "0",
}


@dataclass
class Restore:
    """What to make again after a load: index definitions, then constraints (foreign keys last)."""

    indexes: list[tuple[str, str]] = field(default_factory=list)  # (name, CREATE INDEX ...)
    constraints: list[tuple[str, str, str]] = field(default_factory=list)  # (table, name, definition)


class Builder:
    def __init__(self, url: str, scale: float, seed: int, log: Log, big_campaign: int | None = None) -> None:
        self.url, self.scale, self.seed = url, scale, seed
        self.sizes = Sizes.at(scale, big_campaign)
        self.clock = Clock(log)
        self.t0 = datetime.now(UTC).replace(microsecond=0)
        n = self.sizes.messages
        self.params: dict[str, Any] = {
            "t0": self.t0,
            "seed": seed,
            "n": n,
            "span": SPAN,
            "outbox_span": OUTBOX_SPAN,
            "suppression_span": SUPPRESSION_SPAN,
            "campaigns": self.sizes.campaigns,
            # About three messages per phone number and per email address, skewed (see MESSAGE_SOURCE).
            "sms_pool": max(10, round(n * 0.65 / 3)),
            "email_pool": max(10, round(n * 0.35 / 3)),
            "outbox_share": OUTBOX_SPAN / SPAN,
            "spread": max(1, min(2000, n // 100)),  # how far back from its time an outbox change's message may be
        }
        self.conn = psycopg.connect(url, autocommit=True)
        for setting in ("maintenance_work_mem = '2GB'", "work_mem = '256MB'", "synchronous_commit = off"):
            self.conn.execute(f"SET {setting}")

    def run(self, statement: str, **params: Any) -> int:
        cursor = self.conn.execute(statement, {**self.params, **params} if "%(" in statement else None)
        return cursor.rowcount

    def insert(self, table: str, columns: list[tuple[str, str]], source: str, **params: Any) -> int:
        """INSERT INTO table (columns) SELECT expressions FROM source; NOT NULL columns the generator does not know
        (added by a later migration) get their type's empty value, and a warning."""
        known = {name for name, _ in columns}
        missing = self.conn.execute(
            "SELECT column_name, data_type FROM information_schema.columns WHERE table_schema = 'public' "
            "AND table_name = %s AND is_nullable = 'NO' AND column_default IS NULL AND is_identity = 'NO'",
            [table],
        ).fetchall()
        extra = [(name, TYPE_DEFAULTS.get(kind, "")) for name, kind in missing if name not in known]
        for name, value in extra:
            if not value:
                raise RuntimeError(f"{table}.{name} is NOT NULL, of a type the generator cannot fill; teach it")
            self.clock(f"warning: {table}.{name} is new to the generator: filled with {value}")
        names = ", ".join(sql.Identifier(name).as_string(self.conn) for name, _ in [*columns, *extra])
        values = ", ".join(expression for _, expression in [*columns, *extra])
        return self.run(f"INSERT INTO {table} ({names}) SELECT {values} FROM {source}", **params)  # noqa: S608

    # --- indexes -------------------------------------------------------------------------------------

    def strip(self, table: str, restore: Restore) -> None:
        """Drop every index and constraint of the table but its primary key (and CHECKs), remembering them."""
        constraints = self.conn.execute(
            "SELECT conname, pg_get_constraintdef(oid), contype FROM pg_constraint "
            "WHERE conrelid = %s::regclass AND contype IN ('u', 'f', 'x') ORDER BY contype DESC, conname",
            [table],
        ).fetchall()
        indexes = self.conn.execute(
            "SELECT c.relname, pg_get_indexdef(i.indexrelid) FROM pg_index i JOIN pg_class c ON c.oid = i.indexrelid "
            "WHERE i.indrelid = %s::regclass AND NOT i.indisprimary AND NOT EXISTS (SELECT 1 FROM pg_constraint k "
            "WHERE k.conindid = i.indexrelid AND k.conrelid = i.indrelid AND k.contype IN ('p', 'u', 'x')) "
            "ORDER BY c.relname",
            [table],
        ).fetchall()
        for name, definition, _ in constraints:
            self.run(
                sql.SQL("ALTER TABLE {} DROP CONSTRAINT {}")
                .format(sql.Identifier(table), sql.Identifier(name))
                .as_string(self.conn)
            )
            restore.constraints.append((table, name, definition))
        for name, definition in indexes:
            self.run(sql.SQL("DROP INDEX {}").format(sql.Identifier(name)).as_string(self.conn))
            restore.indexes.append((name, definition))

    def restore(self, restore: Restore) -> None:
        # Unique constraints (and their indexes) before the foreign keys that may lean on them.
        ordered = sorted(restore.constraints, key=lambda c: c[2].startswith("FOREIGN KEY"))
        for name, definition in restore.indexes:
            started = time.perf_counter()
            self.run(definition)
            self.clock(f"index {name}: {time.perf_counter() - started:.1f} s")
        for table, name, definition in ordered:
            started = time.perf_counter()
            statement = sql.SQL("ALTER TABLE {} ADD CONSTRAINT {} ").format(sql.Identifier(table), sql.Identifier(name))
            self.run(statement.as_string(self.conn) + definition)
            self.clock(f"constraint {name}: {time.perf_counter() - started:.1f} s")

    # --- the build -----------------------------------------------------------------------------------

    def build(self) -> Info:
        sizes, log = self.sizes, self.clock
        log(
            f"building scale {self.scale} (seed {self.seed}) in {database_name(self.url)}: "
            f"{sizes.messages:,} messages, "
            f"{sizes.suppressions:,} suppressions, {sizes.inbox:,} inbox rows, {sizes.outbox:,} outbox changes, "
            f"{sizes.campaigns} campaigns; clock {self.t0:%Y-%m-%d %H:%M:%S} UTC"
        )
        info = Info(
            scale=self.scale,
            seed=self.seed,
            version=GENERATOR_VERSION,
            built_at=self.t0,
            big_campaign=sizes.big_campaign,
            big_campaign_id=sizes.campaigns + 1,
        )
        write_info(self.url, info)  # incomplete: a build that dies is started again next time
        row = self.conn.execute("SELECT pg_current_xact_id()::text::bigint").fetchone()
        self.params["txids"] = max(1, int(row[0]) - 2) if row else 1
        self.run(FUNCTIONS.replace("{seed}", str(int(self.seed))))
        restore = Restore()
        for table in [*BIG_TABLES, *CAMPAIGN_TABLES]:
            self.strip(table, restore)
        log(f"dropped {len(restore.indexes)} indexes and {len(restore.constraints)} constraints for the load")

        big, big_id, big_at = sizes.big_campaign, sizes.campaigns + 1, self.t0 - timedelta(days=3)
        self.params.update(big=big, big_id=big_id, big_at=big_at)
        self.insert("campaigns_campaign", CAMPAIGN_COLUMNS, CAMPAIGN_SOURCE)
        self.insert("campaigns_campaign", BIG_CAMPAIGN_COLUMNS, BIG_CAMPAIGN_SOURCE)
        done = 0
        for lo, hi in chunks(sizes.messages):
            done += self.insert("receipts_message", MESSAGE_COLUMNS, MESSAGE_SOURCE, lo=lo, hi=hi)
            log(f"receipts_message: {done:,} / {sizes.messages:,} rows")
        long_id = sizes.messages + 1
        self.run(LONG_MESSAGE, id=long_id)
        big_first = long_id + 1
        heavy_first = big_first + big
        self.build_skew(big_first, heavy_first)
        events = 0
        for lo, hi in chunks(sizes.messages):
            events += self.insert("receipts_messageevent", EVENT_COLUMNS, EVENT_SOURCE, lo=lo, hi=hi)
            log(f"receipts_messageevent: {events:,} rows (messages up to {hi:,}, about {2.5 * sizes.messages:,.0f})")
        events += self.run(LONG_TIMELINE, id=long_id)
        last = heavy_first + HEAVY_PHONE_MESSAGES - 1
        for lo, hi in chunks(last - big_first + 1):
            events += self.insert(
                "receipts_messageevent", EVENT_COLUMNS, EVENT_SOURCE, lo=big_first + lo - 1, hi=big_first + hi - 1
            )
        log(f"receipts_messageevent: {events:,} rows (the big campaign's and the heavy phone's included)")

        self.build_inbox()
        done = 0
        for lo, hi in chunks(sizes.outbox):
            pending = max(1, round(200 * self.scale))
            done += self.insert(
                "crm_sync_outboxmessage",
                OUTBOX_COLUMNS,
                OUTBOX_SOURCE,
                lo=lo,
                hi=hi,
                count=sizes.outbox,
                pending=pending,
            )
            log(f"crm_sync_outboxmessage: {done:,} / {sizes.outbox:,} rows")
        done = self.insert(
            "crm_sync_outboxmessage",
            OUTBOX_COLUMNS,
            HEAVY_OUTBOX_SOURCE,
            count=sizes.outbox + HEAVY_RECORD_CHANGES,
            heavy=HEAVY_RECORD_CHANGES,
            first=heavy_first,
            messages=HEAVY_PHONE_MESSAGES,
        )
        log(f"crm_sync_outboxmessage: {done:,} changes of CRM record {HEAVY_RECORD}")
        log(f"crm_sync_feedentry: {self.run(FEED_POSITIONS):,} changes numbered in the change feed")
        done = 0
        for lo, hi in chunks(sizes.suppressions):
            done += self.insert(
                "receipts_suppression", SUPPRESSION_COLUMNS, SUPPRESSION_SOURCE, lo=lo, hi=hi, count=sizes.suppressions
            )
            log(f"receipts_suppression: {done:,} / {sizes.suppressions:,} rows")
        log(f"receipts_suppressionchange: {self.run(SUPPRESSION_HISTORY):,} rows")
        log(f"receipts_escalation: {self.run(ESCALATIONS):,} rows")
        log(f"campaigns_fallback: {self.run(FALLBACKS):,} rows")
        self.run(DROP_FUNCTIONS)
        for table in FILLED_TABLES:
            self.run(f"SELECT setval(pg_get_serial_sequence('{table}', 'id'), (SELECT max(id) FROM {table}))")  # noqa: S608

        log("making the indexes and constraints again")
        self.restore(restore)
        for table in FILLED_TABLES:
            started = time.perf_counter()
            self.run(f"VACUUM (ANALYZE) {table}")
            log(f"VACUUM (ANALYZE) {table}: {time.perf_counter() - started:.1f} s")
        info.counts = {table: self.count(table) for table in FILLED_TABLES}
        info.long_timeline_message = long_id
        info.build_seconds = round(log.seconds, 1)
        info.size_bytes, info.size = size_on_disk(self.url)
        info.complete = True
        self.conn.close()
        log(f"built in {info.build_seconds:.0f} s; {info.size} on disk")
        return info

    def build_skew(self, big_first: int, heavy_first: int) -> None:
        """Production's skew at the end of the table: the big campaign (its contacts, messages and sends), then the
        phone with HEAVY_PHONE_MESSAGES messages (all of one CRM record, HEAVY_RECORD)."""
        big, log = self.sizes.big_campaign, self.clock
        for lo, hi in chunks(big):
            self.insert("campaigns_contact", CONTACT_COLUMNS, CONTACT_SOURCE, lo=lo, hi=hi)
        log(f"campaigns_contact: {big:,} rows")
        columns = extra_message_columns(
            "'+1556' || lpad(j::text, 7, '0')", "'003Kc' || lpad(j::text, 10, '0') || 'IAA'", "%(big_id)s::bigint"
        )
        common = {"first": big_first, "kind": "big", "salt": 1, "in_flight": 0.03}
        done = 0
        for lo, hi in chunks(big):
            step = timedelta(milliseconds=12.5)  # 80 a second, the provider's limit
            done += self.insert(
                "receipts_message",
                columns,
                EXTRA_MESSAGE_SOURCE,
                lo=lo,
                hi=hi,
                start=self.params["big_at"],
                step=step,
                **common,
            )
            log(f"receipts_message: {done:,} / {big:,} of the big campaign")
        for lo, hi in chunks(big):
            self.insert("campaigns_send", SEND_COLUMNS, SEND_SOURCE, lo=lo, hi=hi, first=big_first)
        log(f"campaigns_send: {big:,} rows")
        columns = extra_message_columns(f"'{HEAVY_PHONE}'", f"'{HEAVY_RECORD}'", "NULL::bigint")
        done = self.insert(
            "receipts_message",
            columns,
            EXTRA_MESSAGE_SOURCE,
            lo=1,
            hi=HEAVY_PHONE_MESSAGES,
            first=heavy_first,
            kind="heavy",
            salt=2,
            in_flight=0.0,
            start=self.t0 - SPAN,
            step=(SPAN - timedelta(hours=1)) / HEAVY_PHONE_MESSAGES,
        )
        log(f"receipts_message: {done:,} to {HEAVY_PHONE}")

    def count(self, table: str) -> int:
        row = self.conn.execute(sql.SQL("SELECT count(*) FROM {}").format(sql.Identifier(table))).fetchone()
        return int(row[0]) if row else 0

    def build_inbox(self) -> None:
        sizes, log = self.sizes, self.clock
        # The shares of the states that are not processed (received, orphan, unmatched, rejected, dead).
        others = [0.0003, 0.005, 0.015, 0.01, 0.002]
        counts = [max(1, round(sizes.inbox * share)) for share in others]
        processed = sizes.inbox - sum(counts)
        since = self.t0 - INBOX_SPAN
        row = self.conn.execute(
            "SELECT count(*) FROM receipts_messageevent WHERE source = 'webhook' AND received_at >= %s", [since]
        ).fetchone()
        window = int(row[0]) if row else 0
        self.run(INBOX_TABLE)
        with self.conn.transaction():
            # A nested loop through the message's primary key: no hash of 10 million messages for a 1 % sample.
            self.run("SET LOCAL enable_hashjoin = off")
            self.run("SET LOCAL enable_mergejoin = off")
            self.run(INBOX_STAGE, since=since, share=min(1.0, processed / max(1, window)))
        bounds = dict(zip(["received", "orphan", "unmatched", "rejected", "dead"], _running(counts), strict=True))
        self.run(INBOX_OTHERS, **bounds)
        self.run(INBOX_NUMBERED)
        done = self.insert("receipts_receiptevent", INBOX_COLUMNS, INBOX_SOURCE)
        linked = self.run(INBOX_LINK)
        self.run("DROP TABLE bench_inbox, bench_inbox_numbered")
        log(f"receipts_receiptevent: {done:,} rows ({linked:,} linked from the timeline)")


def _running(counts: list[int]) -> list[int]:
    total, out = 0, []
    for count in counts:
        total += count
        out.append(total)
    return out


# --- the command -----------------------------------------------------------------------------------------


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument(
        "--database-url",
        default=os.environ.get("SCALE_DATABASE_URL") or DEFAULT_DATABASE_URL,
        help=f"the set's own database (env SCALE_DATABASE_URL; default {DEFAULT_DATABASE_URL}); local only",
    )
    parser.add_argument("--scale", type=float, default=1.0, help="share of the full sizes (default 1.0: 10M messages)")
    parser.add_argument("--seed", type=int, default=DEFAULT_SEED, help=f"default {DEFAULT_SEED}")
    parser.add_argument("--rebuild", action="store_true", help="drop the database and build the set again")
    parser.add_argument(
        "--big-campaign",
        type=int,
        default=None,
        metavar="SENDS",
        help="the big campaign's sends (and contacts and messages); default 1,000,000 x --scale",
    )
    args = parser.parse_args()
    if not 0 < args.scale <= 10:
        parser.error("--scale must be above 0 and at most 10")
    if args.big_campaign is not None and not 1 <= args.big_campaign <= 10_000_000:
        parser.error("--big-campaign must be 1 to 10,000,000")

    def log(text: str) -> None:
        print(text, flush=True)

    try:
        info = ensure(args.database_url, args.scale, args.seed, args.rebuild, log, args.big_campaign)
    except (Refused, psycopg.Error, RuntimeError) as exc:
        print(f"setup failed: {exc}", file=sys.stderr)
        return 2
    print(
        f"\ndata set in {database_name(args.database_url)} (scale {info.scale}, seed {info.seed}, clock "
        f"{info.built_at:%Y-%m-%d %H:%M:%S} UTC, built in {info.build_seconds:.0f} s):"
    )
    for table, count in info.counts.items():
        print(f"  {table:<28} {count:>12,}")
    print(f"  size on disk: {info.size}")
    print(f"  admin login {BENCH_USER} / {BENCH_PASSWORD}; API token (client {BENCH_USER!r}): {info.token}")
    print(f"  message with a 50-entry timeline: {info.long_timeline_message}")
    print(f"  the big campaign: {info.big_campaign_id} ({info.big_campaign:,} sends, three days before the clock)")
    print(
        f"  {HEAVY_PHONE}: {HEAVY_PHONE_MESSAGES:,} messages; "
        f"CRM record {HEAVY_RECORD}: {HEAVY_RECORD_CHANGES:,} changes"
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
