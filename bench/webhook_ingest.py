"""Webhook ingest benchmark: real HTTP against the app under granian on PostgreSQL, with a Celery worker and beat.

What it does (see bench/README.md):

1. Setup, not timed: an isolated deployment (tests/apprunner.AppEnv: its own PostgreSQL database and its own
   Celery queue on Redis), the web server (granian as deployed, or gunicorn gthread), one Celery worker, beat;
   messages registered through ``POST /api/v1/messages/`` (the real API) by a few concurrent clients.
2. A realistic mix of receipt bodies in the four wire formats, each signed with its provider's real scheme,
   pre-built as raw HTTP/1.1 request bytes.
3. The timed run: C concurrent clients on persistent keep-alive connections (asyncio streams writing the
   pre-built bytes and reading the status line, headers and Content-Length body), closed loop by default,
   open loop with ``--rate``.
4. Acknowledgement figures (receipts/s, latency percentiles), then the time until every stored receipt is
   processed, read from the database with psycopg, and the consistency checks (nothing lost, no timeline entry
   twice, final statuses as the mix predicts).

Run from the project root with its virtualenv::

    .venv/bin/python bench/webhook_ingest.py            # defaults: 20000 receipts, 16 clients, granian 3x4
    .venv/bin/python bench/webhook_ingest.py --help
"""

from __future__ import annotations

import argparse
import asyncio
import base64
import contextlib
import hashlib
import hmac
import json
import math
import os
import random
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from collections import Counter
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any
from urllib.parse import urlencode, urlsplit

ROOT = Path(__file__).resolve().parent.parent

DEFAULT_DATABASE_URL = "postgres://postgres@127.0.0.1:5432/postgres"
DEFAULT_BROKER_URL = "redis://127.0.0.1:6379/0"

# The secrets tests/apprunner.AppEnv configures the deployment with.
SECRET_GENESYS_CLOUD = b"e2e-gc"
SECRET_WEBEX = b"e2e-webex"
SECRET_GENERIC = "whsec_ZTJlLWdlbmVyaWMta2V5"
TOKEN_SMS = "e2e-sms"

# Share of the receipt stream per wire format (must add up to 1).
FORMAT_SHARE = {"genesys_sms": 0.35, "webex_connect": 0.25, "genesys_cloud": 0.25, "generic": 0.15}
DUPLICATE_SHARE = 0.05  # exact re-sends of a receipt already in the stream (provider retries)
ORPHAN_SHARE = 0.02  # receipts for messages never registered

PATHS = {
    "genesys_sms": "/webhooks/genesys-sms/",
    "webex_connect": "/webhooks/webex-connect/",
    "genesys_cloud": "/webhooks/genesys-cloud/",
    "generic": "/webhooks/generic/",
}

# Per provider: (weight, [receipt step, ...], expected final Message.status). Steps are provider-specific codes.
SEQUENCES: dict[str, list[tuple[float, list[str], str]]] = {
    "genesys_sms": [
        (0.86, ["6/0", "2/0"], "delivered"),  # accepted, delivered
        (0.04, ["1/0", "6/0", "2/0"], "delivered"),  # en route, accepted, delivered
        (0.05, ["6/0", "5/3"], "failed"),  # undeliverable, invalid carrier
        (0.02, ["6/0", "3/0"], "expired"),
        (0.02, ["8/1"], "rejected"),  # rejected upstream
        (0.01, ["6/0"], "sent"),  # no final receipt yet
    ],
    "webex_connect": [
        (0.80, ["7501", "7500"], "delivered"),
        (0.10, ["7501", "7500", "7502"], "delivered"),  # + read
        (0.06, ["7501", "7520"], "bounced"),  # Permanent_General bounce
        (0.03, ["7501", "7523"], "failed"),
        (0.01, ["7501"], "sent"),
    ],
    "genesys_cloud": [
        (0.85, ["Sent", "Delivered"], "delivered"),
        (0.05, ["Sent", "Delivered", "Read"], "delivered"),
        (0.06, ["Sent", "Failed:InvalidDestination"], "failed"),
        (0.03, ["Failed:RecipientOptedOut"], "rejected"),
        (0.01, ["Sent"], "sent"),
    ],
    "generic": [
        (0.85, ["queued", "sent", "delivered"], "delivered"),
        (0.09, ["queued", "sent", "failed:invalid_number"], "failed"),
        (0.04, ["queued", "expired"], "expired"),
        (0.02, ["queued", "sent"], "sent"),
    ],
}
CHANNEL = {"genesys_sms": "sms", "webex_connect": "email", "genesys_cloud": "sms", "generic": "sms"}
FINAL = ("delivered", "failed", "rejected", "expired", "bounced")


# --- the mix ---------------------------------------------------------------------------------------------


@dataclass
class Message:
    provider: str
    pmid: str
    to: str
    steps: list[str]
    expected: str


@dataclass
class Receipt:
    ident: int  # one per distinct receipt; an exact duplicate shares its original's
    provider: str
    pmid: str
    to: str
    step: str
    at: datetime  # provider time
    position: float  # place in the send order
    orphan: bool = False
    duplicate: bool = False
    data: bytes = b""  # the whole HTTP request, filled in by build_requests


@dataclass
class Mix:
    messages: list[Message]
    receipts: list[Receipt]  # in send order
    unique: int
    unique_registered: int
    orphans: int
    duplicates: int
    per_format: Counter
    expected_status: Counter


def weighted(rng: random.Random, options: list[tuple[float, list[str], str]]) -> list[str]:
    return list(rng.choices(options, weights=[w for w, _, _ in options])[0][1])


def new_id(rng: random.Random, provider: str) -> str:
    raw = f"{rng.getrandbits(128):032x}"
    if provider in ("genesys_sms", "webex_connect"):  # UUID-shaped ids
        return f"{raw[:8]}-{raw[8:12]}-{raw[12:16]}-{raw[16:20]}-{raw[20:]}"
    if provider == "generic":
        return f"msg-{raw[:24]}"
    return raw


def address(rng: random.Random, provider: str, n: int) -> str:
    if CHANNEL[provider] == "email":
        return f"user{n}.{rng.getrandbits(24):06x}@example.com"
    return f"+1415{rng.randrange(2000000, 9999999):07d}"


def build_mix(total: int, messages_wanted: int, seed: int) -> Mix:
    """About ``total`` receipts: 2% orphans, ~5% exact duplicates, the rest the sequences of registered messages.

    With ``messages_wanted`` 0 the number of messages follows from each format's share of the receipts;
    otherwise that many messages are drawn (formats in proportion) and the receipt count follows from them.
    """
    for provider, options in SEQUENCES.items():
        for _, steps, expected in options:
            if outcome_of(steps) != expected:
                raise ValueError(f"{provider} {steps} ends in {outcome_of(steps)}, not {expected}")
    rng = random.Random(seed)
    base = datetime.now(UTC) - timedelta(minutes=30)
    messages: list[Message] = []
    if messages_wanted:
        avg_len = {p: sum(w * len(s) for w, s, _ in SEQUENCES[p]) for p in SEQUENCES}
        msg_share = {p: FORMAT_SHARE[p] / avg_len[p] for p in SEQUENCES}
        norm = sum(msg_share.values())
        for provider in SEQUENCES:
            for _ in range(round(messages_wanted * msg_share[provider] / norm)):
                messages.append(Message(provider, "", "", weighted(rng, SEQUENCES[provider]), ""))
        registered = sum(len(m.steps) for m in messages)
        total = round(registered / (1 - ORPHAN_SHARE - DUPLICATE_SHARE))
    else:
        budget = total - round(total * ORPHAN_SHARE) - round(total * DUPLICATE_SHARE)
        for provider, share in FORMAT_SHARE.items():
            left = round(budget * share)
            while left > 0:
                steps = weighted(rng, SEQUENCES[provider])[:left]  # the last one may be cut to fit
                messages.append(Message(provider, "", "", steps, ""))
                left -= len(steps)
    orphans = round(total * ORPHAN_SHARE)
    for n, m in enumerate(messages):
        m.pmid, m.to = new_id(rng, m.provider), address(rng, m.provider, n)
        m.expected = outcome_of(m.steps)

    receipts: list[Receipt] = []
    ident = 0
    for m in messages:
        start, gap = rng.random(), rng.uniform(0.002, 0.03)
        sent_at = base + timedelta(seconds=rng.uniform(0, 600))
        for k, step in enumerate(m.steps):
            at = sent_at + timedelta(seconds=2 * k + rng.uniform(0, 1), microseconds=rng.randrange(1000))
            receipts.append(Receipt(ident, m.provider, m.pmid, m.to, step, at, start + k * gap))
            ident += 1
    unique_registered = len(receipts)
    orphan_providers = rng.choices(list(FORMAT_SHARE), weights=list(FORMAT_SHARE.values()), k=orphans)
    for n, provider in enumerate(orphan_providers):
        steps = weighted(rng, SEQUENCES[provider])
        at = base + timedelta(seconds=rng.uniform(0, 600))
        pmid, to = new_id(rng, provider), address(rng, provider, len(messages) + n)
        receipts.append(Receipt(ident, provider, pmid, to, steps[-1], at, rng.random(), orphan=True))
        ident += 1
    unique = len(receipts)
    duplicates = max(0, total - unique)
    for original in rng.sample(receipts, min(duplicates, unique)):
        copy = Receipt(**{**original.__dict__, "duplicate": True})
        copy.position = original.position + rng.uniform(0.001, 0.05)
        receipts.append(copy)
    receipts.sort(key=lambda r: r.position)
    return Mix(
        messages=messages,
        receipts=receipts,
        unique=unique,
        unique_registered=unique_registered,
        orphans=orphans,
        duplicates=len(receipts) - unique,
        per_format=Counter(r.provider for r in receipts),
        expected_status=Counter(m.expected for m in messages),
    )


STEP_STATUS = {
    "6/0": "sent",
    "1/0": "sent",
    "2/0": "delivered",
    "5/3": "failed",
    "3/0": "expired",
    "8/1": "rejected",
    "7501": "sent",
    "7500": "delivered",
    "7502": "delivered",
    "7520": "bounced",
    "7523": "failed",
    "Sent": "sent",
    "Delivered": "delivered",
    "Read": "delivered",
    "Failed:InvalidDestination": "failed",
    "Failed:RecipientOptedOut": "rejected",
    "queued": "queued",
    "sent": "sent",
    "delivered": "delivered",
    "failed:invalid_number": "failed",
    "expired": "expired",
}
RANK = {"pending": 0, "queued": 10, "sent": 20, "deferred": 25, **dict.fromkeys(FINAL, 30)}


def outcome_of(steps: list[str]) -> str:
    """The status a message ends in: the highest rank its receipts reach (each sequence has one final)."""
    best = "pending"
    for step in steps:
        status = STEP_STATUS[step]
        if RANK[status] > RANK[best]:
            best = status
    return best


# --- wire formats and signatures -------------------------------------------------------------------------


def iso(at: datetime, millis: bool = True) -> str:
    return at.isoformat(timespec="milliseconds" if millis else "seconds").replace("+00:00", "Z")


def body_and_headers(r: Receipt, signed_at: int) -> tuple[bytes, str, list[tuple[str, str]]]:
    if r.provider == "genesys_sms":
        state, _, result = r.step.partition("/")
        fields = {"type": "receipt", "message_id": r.pmid, "message_state": state, "result_code": result}
        fields |= {"app_id": "reminders", "conversation_id": f"c-{r.pmid[:8]}"}
        body = urlencode(fields).encode()
        return body, "application/x-www-form-urlencoded", [("X-Webhook-Token", TOKEN_SMS)]
    if r.provider == "webex_connect":
        status, description = {
            "7501": ("Submitted", "Submitted"),
            "7500": ("Delivered", "Delivered"),
            "7502": ("Read", "Read"),
            "7520": ("Failed", "Permanent_General"),
            "7523": ("Failed", "Invalid destination"),
        }[r.step]
        info = {
            "deliveryChannel": "email",
            "Description": description,
            "destinationType": "email",
            "timeStamp": r.at.isoformat(timespec="milliseconds"),
            "code": r.step,
            "deliveryStatus": status,
            "destination": r.to,
            "additionalInfo": "",
        }
        notification = {
            "deliveryInfo": info,
            "correlationid": f"corr-{r.pmid[:13]}",
            "callbackData": "callbackdata",
            "transid": r.pmid,
            "subtid": "",
        }
        body = json.dumps({"deliveryInfoNotification": notification}).encode()
        signature = hmac.new(SECRET_WEBEX, body, hashlib.sha256).hexdigest()
        return body, "application/json", [("X-Hub-Signature", f"sha256={signature}")]
    if r.provider == "genesys_cloud":
        status, _, reason = r.step.partition(":")
        receipt: dict = {
            "id": f"{r.ident:08x}{r.pmid[8:]}",
            "type": "Receipt",
            "status": status,
            "isFinalReceipt": status != "Sent",
            "direction": "Outbound",
            "channel": {"platform": "Sms", "type": "Private", "messageId": r.pmid, "time": iso(r.at)},
        }
        if reason:
            receipt["reasons"] = [{"code": reason, "message": f"{reason} reported by carrier"}]
        body = json.dumps(receipt).encode()
        signature = hmac.new(SECRET_GENESYS_CLOUD, body, hashlib.sha256).hexdigest()
        return body, "application/json", [("X-Hub-Signature-256", f"sha256={signature}")]
    status, _, error_code = r.step.partition(":")
    obj = {
        "id": r.pmid,
        "type": "sms",
        "to": r.to,
        "conversationId": f"conv-{r.pmid[4:16]}",
        "status": status,
        "timestamp": iso(r.at, millis=False),
        "errorCode": error_code or None,
        "metadata": {"campaignId": "bench", "triggerSource": "crm-scheduler"},
    }
    body = json.dumps(obj).encode()
    webhook_id, stamp = f"evt_{r.ident:010d}", str(signed_at)
    key = base64.b64decode(SECRET_GENERIC.removeprefix("whsec_"))
    digest = hmac.new(key, f"{webhook_id}.{stamp}.".encode() + body, hashlib.sha256).digest()
    headers = [
        ("webhook-id", webhook_id),
        ("webhook-timestamp", stamp),
        ("webhook-signature", f"v1,{base64.b64encode(digest).decode()}"),
    ]
    return body, "application/json", headers


def http_request(host: str, method: str, path: str, body: bytes, content_type: str, headers: list) -> bytes:
    lines = [f"{method} {path} HTTP/1.1", f"Host: {host}", f"Content-Type: {content_type}"]
    lines += [f"Content-Length: {len(body)}", "User-Agent: bench-webhook-ingest/1", "Accept: application/json"]
    lines += [f"{name}: {value}" for name, value in headers]
    return ("\r\n".join(lines) + "\r\n\r\n").encode() + body


def build_requests(mix: Mix, host: str) -> None:
    """Fill in every receipt's request bytes; a duplicate is the very same request as its original."""
    signed_at = int(time.time())
    built: dict[int, bytes] = {}
    for r in mix.receipts:
        if r.ident not in built:
            body, content_type, headers = body_and_headers(r, signed_at)
            built[r.ident] = http_request(host, "POST", PATHS[r.provider], body, content_type, headers)
        r.data = built[r.ident]


# --- a minimal HTTP/1.1 keep-alive client ----------------------------------------------------------------


class HttpError(Exception):
    pass


class Connection:
    """One persistent connection. Requests are pre-built bytes; answers are (status, body)."""

    def __init__(self, host: str, port: int) -> None:
        self.host, self.port = host, port
        self.reader: asyncio.StreamReader | None = None
        self.writer: asyncio.StreamWriter | None = None

    async def request(self, data: bytes) -> tuple[int, bytes]:
        if self.writer is None:
            self.reader, self.writer = await asyncio.open_connection(self.host, self.port)
        assert self.reader is not None
        self.writer.write(data)
        head = await self.reader.readuntil(b"\r\n\r\n")
        if not head.startswith(b"HTTP/1."):
            raise HttpError(f"not an HTTP response: {head[:40]!r}")
        status = int(head[9:12])
        lower = head.lower()
        at = lower.find(b"\r\ncontent-length:")
        if at >= 0:
            end = lower.index(b"\r\n", at + 2)
            body = await self.reader.readexactly(int(lower[at + 17 : end]))
        elif b"transfer-encoding: chunked" in lower:
            body = await self._chunked()
        else:
            body = await self.reader.read()
            self.close()
            return status, body
        if b"\r\nconnection: close" in lower:
            self.close()
        return status, body

    async def _chunked(self) -> bytes:
        assert self.reader is not None
        parts = []
        for _ in range(10000):
            size = int((await self.reader.readuntil(b"\r\n")).split(b";")[0], 16)
            if size == 0:
                await self.reader.readuntil(b"\r\n")
                return b"".join(parts)
            parts.append(await self.reader.readexactly(size))
            await self.reader.readexactly(2)
        raise HttpError("too many chunks")

    def close(self) -> None:
        if self.writer is not None:
            self.writer.close()
        self.reader = self.writer = None


CONNECTION_ERRORS = (ConnectionError, asyncio.IncompleteReadError, asyncio.LimitOverrunError, HttpError, OSError)


# --- setup: register the messages through the API --------------------------------------------------------


async def register_messages(messages: list[Message], host: str, port: int, token: str, clients: int) -> Counter:
    statuses: Counter = Counter()
    pending = iter(messages)

    async def client() -> None:
        conn = Connection(host, port)
        try:
            for m in pending:
                payload = {"channel": CHANNEL[m.provider], "provider": m.provider, "provider_message_id": m.pmid}
                payload |= {"to": m.to, "crm_record_id": f"crm-{m.pmid[:10]}", "campaign": "bench"}
                body = json.dumps(payload).encode()
                data = http_request(
                    f"{host}:{port}",
                    "POST",
                    "/api/v1/messages/",
                    body,
                    "application/json",
                    [("Authorization", f"Token {token}")],
                )
                for attempt in range(3):
                    try:
                        async with asyncio.timeout(30):
                            status, answer = await conn.request(data)
                        break
                    except CONNECTION_ERRORS:
                        conn.close()
                        if attempt == 2:
                            raise
                statuses[status] += 1
                if status not in (200, 201) and statuses[status] <= 3:
                    print(f"  registration answered {status}: {answer[:300]!r}", file=sys.stderr)
        finally:
            conn.close()

    await asyncio.gather(*(client() for _ in range(clients)))
    return statuses


# --- the timed run ---------------------------------------------------------------------------------------


@dataclass
class RunResult:
    started_wall: float = 0.0
    started: float = 0.0
    finished: float = 0.0
    latencies: list[float] = field(default_factory=list)
    latency_by_format: dict[str, list[float]] = field(default_factory=dict)
    statuses: Counter = field(default_factory=Counter)
    accepted: int = 0
    duplicates: int = 0
    acked_idents: set[int] = field(default_factory=set)
    retries: int = 0
    failures: int = 0  # no answer after every attempt
    errors: Counter = field(default_factory=Counter)
    error_bodies: list[str] = field(default_factory=list)
    sent: int = 0
    stopped_early: bool = False


async def drive(mix: Mix, host: str, port: int, clients: int, rate: float, max_seconds: float) -> RunResult:
    result = RunResult(latency_by_format={p: [] for p in FORMAT_SHARE})
    receipts = mix.receipts
    total = len(receipts)
    next_index = 0
    result.started_wall, result.started = time.time(), time.perf_counter()
    deadline = result.started + max_seconds

    async def client() -> None:
        nonlocal next_index
        conn = Connection(host, port)
        try:
            while next_index < total:
                if time.perf_counter() > deadline:
                    result.stopped_early = True
                    return
                index = next_index
                next_index += 1
                r = receipts[index]
                if rate:
                    scheduled = result.started + index / rate
                    delay = scheduled - time.perf_counter()
                    if delay > 0:
                        await asyncio.sleep(delay)
                    start = scheduled  # open loop: waiting for a free connection counts as latency
                else:
                    start = time.perf_counter()
                result.sent += 1
                answer = None
                for attempt in range(3):
                    try:
                        async with asyncio.timeout(30):
                            answer = await conn.request(r.data)
                        break
                    except CONNECTION_ERRORS as exc:
                        conn.close()
                        result.errors[type(exc).__name__] += 1
                        if attempt < 2:
                            result.retries += 1
                    except TimeoutError:
                        conn.close()
                        result.errors["timeout"] += 1
                        if attempt < 2:
                            result.retries += 1
                now = time.perf_counter()
                if answer is None:
                    result.failures += 1
                    continue
                status, body = answer
                result.statuses[status] += 1
                if status == 200:
                    latency = now - start
                    result.latencies.append(latency)
                    result.latency_by_format[r.provider].append(latency)
                    counts = json.loads(body)
                    result.accepted += counts["accepted"]
                    result.duplicates += counts["duplicates"]
                    result.acked_idents.add(r.ident)
                    result.finished = now
                elif len(result.error_bodies) < 5:
                    result.error_bodies.append(f"{status} {r.provider}: {body[:200]!r}")
        finally:
            conn.close()

    await asyncio.gather(*(client() for _ in range(clients)))
    result.finished = result.finished or time.perf_counter()
    return result


def percentile(sorted_values: list[float], q: float) -> float:
    if not sorted_values:
        return float("nan")
    index = min(len(sorted_values) - 1, max(0, math.ceil(q / 100 * len(sorted_values)) - 1))
    return sorted_values[index]


# --- after the run: the database -------------------------------------------------------------------------


@dataclass
class Processing:
    states: Counter
    done: bool
    waited: float
    last_processed_wall: float | None
    first_received_wall: float | None
    seen_done: float | None  # perf_counter when polling first saw no row left in 'received'


def wait_processed(database_url: str, timeout: float) -> Processing:
    import psycopg

    waited_from = time.perf_counter()
    with psycopg.connect(database_url, autocommit=True) as conn:
        states: Counter = Counter()
        done = False
        seen_done = None
        for _ in range(int(timeout / 0.25) + 1):
            rows = conn.execute("SELECT state, count(*) FROM receipts_receiptevent GROUP BY state").fetchall()
            states = Counter(dict(rows))
            if states.get("received", 0) == 0:
                done, seen_done = True, time.perf_counter()
                break
            if time.perf_counter() - waited_from > timeout:
                break
            time.sleep(0.25)
        row = conn.execute(
            "SELECT extract(epoch FROM max(processed_at)), extract(epoch FROM min(received_at))"
            " FROM receipts_receiptevent"
        ).fetchone()
    last, first = (float(v) if v is not None else None for v in row)
    return Processing(states, done, time.perf_counter() - waited_from, last, first, seen_done)


def consistency(database_url: str) -> dict:
    import psycopg

    with psycopg.connect(database_url, autocommit=True) as conn:
        twice = conn.execute(
            "SELECT message_id, receipt_key, count(*) FROM receipts_messageevent"
            " GROUP BY message_id, receipt_key HAVING count(*) > 1 LIMIT 10"
        ).fetchall()
        timeline = conn.execute("SELECT count(*) FROM receipts_messageevent").fetchone()[0]
        statuses = Counter(dict(conn.execute("SELECT status, count(*) FROM receipts_message GROUP BY status")))
        review = conn.execute("SELECT count(*) FROM receipts_message WHERE needs_review").fetchone()[0]
        rows = conn.execute("SELECT count(*) FROM receipts_receiptevent").fetchone()[0]
        stored_dupes = conn.execute(
            "SELECT count(*) FROM (SELECT 1 FROM receipts_receiptevent WHERE dedupe_key IS NOT NULL"
            " GROUP BY provider, dedupe_key HAVING count(*) > 1) AS d"
        ).fetchone()[0]
        # Every row of one batch gets the batch's start time as processed_at.
        batches = conn.execute("SELECT count(DISTINCT processed_at) FROM receipts_receiptevent").fetchone()[0]
    return {
        "batches": batches,
        "twice": twice,
        "timeline": timeline,
        "statuses": statuses,
        "review": review,
        "rows": rows,
        "stored_dupes": stored_dupes,
    }


# --- CPU accounting (Linux /proc) ------------------------------------------------------------------------

CLOCK_TICKS = os.sysconf("SC_CLK_TCK") if hasattr(os, "sysconf") else 100


def read_proc() -> dict[int, tuple[int, str, float]]:
    """pid -> (ppid, title, CPU seconds used so far) for every process we can read."""
    table = {}
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            with open(f"/proc/{entry}/stat", "rb") as f:
                stat = f.read().decode(errors="replace")
            with open(f"/proc/{entry}/cmdline", "rb") as f:
                title = f.read().replace(b"\0", b" ").decode(errors="replace").strip()
        except OSError:
            continue
        fields = stat[stat.rindex(")") + 2 :].split()
        # utime + stime. A process that exits between two snapshots takes its share with it (short-lived
        # processes of other work, or a backend whose connection closed): that shows as "unattributed".
        table[int(entry)] = (int(fields[1]), title, (int(fields[11]) + int(fields[12])) / CLOCK_TICKS)
    return table


def machine_busy() -> float:
    """CPU seconds the whole machine spent busy (all cores), since boot."""
    with open("/proc/stat") as f:
        values = [int(v) for v in f.readline().split()[1:]]
    idle = values[3] + values[4]
    return (sum(values[:8]) - idle) / CLOCK_TICKS


class CpuMeter:
    """Which component a process belongs to: ours by process tree, PostgreSQL backends by database."""

    def __init__(self, roots: dict[int, str], database: str) -> None:
        self.roots, self.database, self.main_pid = roots, database, os.getpid()

    def classify(self, pid: int, table: dict[int, tuple[int, str, float]]) -> str:
        if pid in (self.main_pid, os.getpid()):
            return "load generator"
        title = table[pid][1]
        if title.startswith("postgres:"):  # a backend or a server process, by its process title
            return "postgresql (this db)" if f" {self.database} " in title else "postgresql (other)"
        if os.path.basename(title.split(" ", 1)[0]) == "postgres":  # the postmaster
            return "postgresql (other)"
        if title.startswith("redis-server"):
            return "redis"
        seen = 0
        while pid > 1 and seen < 64:
            if pid in self.roots:
                return self.roots[pid]
            pid = table.get(pid, (0, "", 0.0))[0]
            seen += 1
        return "other processes"


Usage = tuple[float, float, Counter, Counter]  # wall s, machine busy CPU s, CPU s per component, per other process


class CpuSampler:
    """Samples /proc once a second in a process of its own, and answers the CPU used since the last ``mark()``.

    Sampling (rather than two snapshots) keeps the CPU of processes that exit mid-run, such as a PostgreSQL
    backend whose connection reached CONN_MAX_AGE, to within one interval; a process of its own keeps the
    reading of /proc (a few ms) off the load generator's event loop. Its own CPU counts as the load generator's.
    """

    def __init__(self, meter: CpuMeter, interval: float = 1.0) -> None:
        import multiprocessing

        context = multiprocessing.get_context("fork")
        self.conn, child = context.Pipe()
        self.process = context.Process(target=self._run, args=(meter, interval, child), daemon=True)
        self.process.start()
        self.conn.recv()  # the baseline is taken

    def mark(self) -> Usage:
        self.conn.send("mark")
        return self.conn.recv()

    def stop(self) -> None:
        with contextlib.suppress(OSError):
            self.conn.send("stop")
        self.process.join(timeout=5)
        if self.process.is_alive():
            self.process.terminate()

    @staticmethod
    def _run(meter: CpuMeter, interval: float, conn: Any) -> None:
        signal.signal(signal.SIGINT, signal.SIG_IGN)  # the parent handles Ctrl-C, then stops us
        signal.signal(signal.SIGTERM, signal.SIG_DFL)
        seen: dict[int, tuple[str, float]] = {}  # pid -> (component, CPU seconds at the last sample)
        per: Counter = Counter()
        others: Counter = Counter()

        def sample(baseline: bool = False) -> None:
            table = read_proc()
            for pid, (_, title, cpu) in table.items():
                known = seen.get(pid)
                label = known[0] if known else meter.classify(pid, table)
                # A process first seen now was born since the last sample: all its CPU is new.
                used = 0.0 if baseline else cpu - (known[1] if known else 0.0)
                seen[pid] = (label, cpu)
                if used > 0:
                    per[label] += used
                    if label == "other processes":
                        others[title[:60]] += used
            for pid in [p for p in seen if p not in table]:
                del seen[pid]

        started, busy = time.perf_counter(), machine_busy()
        sample(baseline=True)
        conn.send("ready")
        for _ in range(100000):  # bounded: about a day at one sample a second
            if not conn.poll(interval):
                sample()
                continue
            if conn.recv() == "stop":
                return
            sample()
            now, busy_now = time.perf_counter(), machine_busy()
            conn.send((now - started, busy_now - busy, per.copy(), others.copy()))
            started, busy = now, busy_now
            per.clear()
            others.clear()


def print_cpu(title: str, usage: Usage) -> None:
    wall, busy, per, others = usage
    cores = os.cpu_count() or 1
    if wall <= 0:
        return
    print(f"CPU {title}: machine {busy / wall:.0%} of 1 core busy on average ({cores} cores, {wall:.1f} s)")
    parts = [f"{label} {seconds / wall:.0%}" for label, seconds in per.most_common() if seconds / wall >= 0.005]
    print("  " + ", ".join(parts))
    busiest = [
        f"{name or '?'} {seconds / wall:.0%}" for name, seconds in others.most_common(3) if seconds / wall >= 0.02
    ]
    if busiest:
        print(f"  (not part of this benchmark: {'; '.join(busiest)}: the figures are disturbed)")
    if busy - sum(per.values()) > 0.1 * wall:
        print(f"  unattributed (kernel, exited processes) {(busy - sum(per.values())) / wall:.0%}")


APP = ("web server", "celery worker", "celery beat", "postgresql (this db)", "redis")


def print_costs(cpu: list[tuple[str, Usage]], sent: int, rows: int) -> None:
    """CPU per receipt by component, and what it implies for a machine with nothing else on it.

    These hold even when other work disturbs the machine (they count only our processes' CPU time), so they
    are the figures to compare between runs on a busy machine.
    """
    if not cpu or not sent:
        return
    load = cpu[0][1][2]
    total: Counter = Counter()
    for _, usage in cpu:
        total.update(usage[2])
    per = {label: total[label] / sent * 1000 for label in (*APP, "load generator")}
    print(
        "CPU per receipt (ms, load + processing): "
        + ", ".join(f"{label} {value:.2f}" for label, value in per.items() if value >= 0.005)
    )
    cores = os.cpu_count() or 1
    ingest = (load["web server"] + load["postgresql (this db)"] + load["load generator"]) / sent * 1000
    app = sum(per[label] for label in APP)
    if ingest > 0 and app > 0:
        print(
            f"  on {cores} idle cores that is a ceiling of about {cores * 1000 / ingest:.0f} receipts/s acknowledged"
            f" while processing waits (web server + PostgreSQL during the load + load generator: {ingest:.2f} ms),"
            f" {cores * 1000 / (app + per['load generator']):.0f} receipts/s with processing keeping up"
            f" ({app:.2f} ms app + {per['load generator']:.2f} ms load generator)"
        )


# --- report ----------------------------------------------------------------------------------------------


def ms(seconds: float) -> str:
    return f"{seconds * 1000:.1f}"


def report(mix: Mix, run: RunResult, proc: Processing, db: dict, cpu: list[tuple[str, Usage]]) -> tuple[bool, bool]:
    """Print everything; answer (the bar is met, the consistency checks hold)."""
    elapsed = run.finished - run.started
    ok_count = run.statuses.get(200, 0)
    rps = ok_count / elapsed if elapsed > 0 else 0.0
    lat = sorted(run.latencies)
    p50, p95, p99 = (percentile(lat, q) for q in (50, 95, 99))
    print()
    print("== acknowledgement (HTTP)")
    print(
        f"receipts sent          {run.sent} of {len(mix.receipts)}"
        + ("  (stopped at --max-seconds)" * run.stopped_early)
    )
    print(f"answered 200           {ok_count}  (accepted {run.accepted}, duplicates {run.duplicates})")
    others = {s: n for s, n in sorted(run.statuses.items()) if s != 200}
    print(f"non-200                {sum(others.values())}  {others or ''}")
    print(f"no answer              {run.failures}  (retries {run.retries}, errors {dict(run.errors) or 0})")
    for line in run.error_bodies:
        print(f"  e.g. {line}")
    print(f"elapsed                {elapsed:.2f} s")
    print(f"acknowledged           {rps:.0f} receipts/s")
    print(f"ack latency ms         p50 {ms(p50)}  p95 {ms(p95)}  p99 {ms(p99)}  max {ms(lat[-1] if lat else 0)}")
    for provider, values in run.latency_by_format.items():
        values.sort()
        print(f"  {provider:<14} n={len(values):<6} p50 {ms(percentile(values, 50))}  p99 {ms(percentile(values, 99))}")

    print()
    for title, usage in cpu:
        print_cpu(title, usage)
    print_costs(cpu, run.sent, db["rows"])
    print()
    print("== processing (database)")
    states = dict(sorted(proc.states.items()))
    if proc.last_processed_wall is not None:
        drain = proc.last_processed_wall - run.started_wall
        after_ack = proc.last_processed_wall - (run.started_wall + elapsed)
        print(f"all processed after    {drain:.2f} s from the first request  ({after_ack:+.2f} s after the last ack)")
        if proc.seen_done is not None:
            print(f"  (last processed_at; polling saw it done at {proc.seen_done - run.started:.2f} s)")
        if drain > 0:
            print(f"processing throughput  {db['rows'] / drain:.0f} inbox rows/s (rows / time to all processed)")
    if db["batches"]:
        print(f"processing batches     {db['batches']} (average {db['rows'] / db['batches']:.1f} rows a batch)")
    if not proc.done:
        print(f"NOT DONE: rows still 'received' after waiting {proc.waited:.0f} s (--timeout)")
    print(f"inbox rows by state    {states}")
    print(f"  expected             processed {mix.unique_registered}, orphan {mix.orphans}")
    acked_unique = len(run.acked_idents)
    lost = acked_unique - db["rows"]
    print(f"unique receipts acked  {acked_unique}  (server counted accepted {run.accepted})")
    print(f"inbox rows             {db['rows']}")
    print(f"lost                   {lost}" + ("  (negative: rows for receipts never acknowledged)" if lost < 0 else ""))
    print(f"stored twice           {db['stored_dupes']} dedupe keys")
    print(f"timeline entries       {db['timeline']}  (expected {mix.unique_registered})")
    print(f"timeline duplicated    {len(db['twice'])} (message, receipt) pairs  {db['twice'][:3] or ''}")
    got = {s: db["statuses"].get(s, 0) for s in sorted(set(db["statuses"]) | set(mix.expected_status))}
    want = {s: mix.expected_status.get(s, 0) for s in got}
    print(f"message statuses       {got}")
    print(f"  predicted by the mix {want}")
    final_got = sum(got[s] for s in got if s in FINAL)
    final_want = sum(want[s] for s in want if s in FINAL)
    print(f"final status           {final_got} messages (predicted {final_want}); needs_review {db['review']}")

    bar = rps >= 1000 and p99 < 0.100 and lost == 0 and run.failures == 0
    checks = {
        "lost": lost == 0 and run.failures == 0,
        "all 200": ok_count == len(mix.receipts),
        "processed": proc.done,
        "states": proc.states.get("processed", 0) == mix.unique_registered
        and proc.states.get("orphan", 0) == mix.orphans,
        "timeline": not db["twice"] and db["timeline"] == mix.unique_registered,
        "statuses": got == want,
    }
    failed = [name for name, good in checks.items() if not good]
    print()
    print(
        f"VERDICT: {'PASS' if bar else 'FAIL'} against the bar (>= 1000 receipts/s: {rps:.0f}, p99 < 100 ms:"
        f" {ms(p99)} ms, lost 0: {lost}); consistency {'OK' if not failed else 'FAILED: ' + ', '.join(failed)}"
    )
    return bar, not failed


# --- main ------------------------------------------------------------------------------------------------


def calibrate() -> float:
    """Milliseconds for a fixed pure-Python loop: tells a slower machine (or a busier host) apart between runs."""
    started = time.perf_counter()
    total = 0
    for i in range(1_000_000):
        total += i * i % 7
    return (time.perf_counter() - started) * 1000


def component(argv: list[str]) -> str:
    text = " ".join(argv)
    if "gunicorn" in text or "granian" in text:
        return "web server"
    return "celery beat" if " beat " in f"{text} " else "celery worker"


def parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--receipts", type=int, default=20000, help="receipts to send (default 20000)")
    parser.add_argument(
        "--messages",
        type=int,
        default=0,
        help="messages to register; 0 (default) derives them from --receipts and the mix (about 2.3 receipts"
        " a message); when set, the receipt count follows from the messages' sequences instead",
    )
    # Tuned on the 2-core machine (bench/README.md): acknowledgements are CPU-bound, so more clients only add
    # queueing; 8 keeps p99 well under 100 ms at the same receipts/s as 16 or 32.
    parser.add_argument("--clients", type=int, default=16, help="concurrent keep-alive clients (default 16)")
    parser.add_argument("--rate", type=float, default=0, help="offered receipts/s (open loop); 0 = closed loop")
    parser.add_argument(
        "--server", choices=["granian", "gunicorn"], default="granian", help="web server (default granian, as deployed)"
    )
    parser.add_argument("--web-workers", type=int, default=3, help="web server workers (default 3)")
    parser.add_argument("--web-threads", type=int, default=4, help="threads per web worker (default 4)")
    parser.add_argument("--worker-concurrency", type=int, default=2, help="Celery worker concurrency (default 2)")
    parser.add_argument(
        "--worker-nice",
        type=int,
        default=0,
        help="run the Celery worker at this nice level (e.g. 10: processing yields the CPU to the webhooks)",
    )
    parser.add_argument("--register-clients", type=int, default=16, help="concurrent clients for registration")
    parser.add_argument("--timeout", type=float, default=300, help="seconds to wait for processing (default 300)")
    parser.add_argument("--max-seconds", type=float, default=600, help="cap on the load phase (default 600)")
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument(
        "--database-url", default=None, help=f"admin URL (default $DATABASE_URL or {DEFAULT_DATABASE_URL})"
    )
    parser.add_argument("--broker-url", default=None, help=f"default $CELERY_BROKER_URL or {DEFAULT_BROKER_URL}")
    parser.add_argument("--keep-logs", action="store_true", help="keep the deployment's folder (logs) afterwards")
    return parser.parse_args()


def configure_environment(args: argparse.Namespace) -> None:
    """Before the AppEnv exists: it reads the database and broker from the environment."""
    os.environ["DATABASE_URL"] = args.database_url or os.environ.get("DATABASE_URL") or DEFAULT_DATABASE_URL
    os.environ["CELERY_BROKER_URL"] = args.broker_url or os.environ.get("CELERY_BROKER_URL") or DEFAULT_BROKER_URL
    for url in (os.environ["DATABASE_URL"], os.environ["CELERY_BROKER_URL"]):
        if urlsplit(url).hostname not in ("127.0.0.1", "localhost", "::1"):
            raise SystemExit(f"refusing to run against a non-local service: {url}")
    # Signatures are made before the run; a long run must not see the generic ones age past the tolerance.
    # (Verifying costs the same whatever the tolerance.)
    os.environ.setdefault("WEBHOOK_TIMESTAMP_TOLERANCE", "3600")


def main() -> int:
    args = parse_args()
    configure_environment(args)
    sys.path.insert(0, str(ROOT))
    from tests.apprunner import AppEnv

    def on_term(signum: int, frame: object) -> None:
        raise KeyboardInterrupt

    signal.signal(signal.SIGTERM, on_term)
    # Ctrl-C must tear down even when started from a script that set SIGINT to ignored (background jobs).
    signal.signal(signal.SIGINT, signal.default_int_handler)

    mix = build_mix(args.receipts, args.messages, args.seed)
    shares = ", ".join(f"{p} {n / len(mix.receipts):.0%}" for p, n in mix.per_format.items())
    print(
        f"mix: {len(mix.receipts)} receipts ({shares}); {len(mix.messages)} messages;"
        f" {mix.unique} distinct receipts, {mix.duplicates} exact duplicates, {mix.orphans} orphans"
    )
    workdir = Path(tempfile.mkdtemp(prefix="bench-webhook-"))
    env = AppEnv(workdir, name="bench")
    passed = False
    sampler: CpuSampler | None = None
    try:
        print(f"setup: database {env.name} on {os.environ['DATABASE_URL'].rsplit('/', 1)[0]}, broker queue {env.name}")
        t = time.perf_counter()
        env.create()
        base = env.start_web(workers=args.web_workers, threads=args.web_threads, server=args.server, front=False)
        worker = env.start_worker(concurrency=args.worker_concurrency)
        if args.worker_nice:
            # The worker runs in a session (process group) of its own; its pool children inherit or get it here.
            os.setpriority(os.PRIO_PGRP, worker.pid, args.worker_nice)
        env.start_beat()
        token = env.api_token("bench")
        parts = urlsplit(base)
        host, port = parts.hostname or "127.0.0.1", parts.port or 80
        nice = f" nice {args.worker_nice}" if args.worker_nice else ""
        print(
            f"setup: {args.server} {args.web_workers}x{args.web_threads} at {base},"
            f" celery worker concurrency {args.worker_concurrency}{nice}, beat ({time.perf_counter() - t:.1f} s)"
        )
        t = time.perf_counter()
        statuses = asyncio.run(register_messages(mix.messages, host, port, token, args.register_clients))
        took = time.perf_counter() - t
        print(f"setup: registered {len(mix.messages)} messages via the API in {took:.1f} s {dict(statuses)}")
        if statuses.get(201, 0) != len(mix.messages):
            args.keep_logs = True
            print(f"registration failed; stopping. The deployment's logs:\n{env.logs()[-6000:]}", file=sys.stderr)
            return 2
        build_requests(mix, f"{host}:{port}")
        roots = {p.pid: component(p.args) for p, _ in env.processes}
        sampler = CpuSampler(CpuMeter(roots, env.name))
        time.sleep(1.0)  # also lets the registration's stragglers (sweeps, kicks) settle
        print_cpu("before the run (idle app; should be near 0)", sampler.mark())
        print(
            f"calibration: a fixed pure-Python loop took {calibrate():.0f} ms (lower is faster; compare between runs)"
        )
        mode = f"open loop at {args.rate:.0f}/s" if args.rate else "closed loop"
        print(f"run: {len(mix.receipts)} receipts, {args.clients} clients, {mode}")
        run = asyncio.run(drive(mix, host, port, args.clients, args.rate, args.max_seconds))
        during_load = sampler.mark()
        proc = wait_processed(env.database_url, args.timeout)
        cpu = [("during the load", during_load), ("after it, until processed", sampler.mark())]
        db = consistency(env.database_url)
        bar, consistent = report(mix, run, proc, db, cpu)
        passed = bar and consistent
        if not consistent:
            args.keep_logs = True
    except KeyboardInterrupt:
        print("\ninterrupted; tearing down", file=sys.stderr)
        return 130
    except subprocess.CalledProcessError as exc:
        args.keep_logs = True
        print(f"setup failed: {' '.join(map(str, exc.cmd))}\n{(exc.stderr or '')[-3000:]}", file=sys.stderr)
        return 2
    finally:
        with contextlib.suppress(KeyboardInterrupt):
            signal.signal(signal.SIGINT, signal.SIG_IGN)
            signal.signal(signal.SIGTERM, signal.SIG_IGN)
            if sampler is not None:
                sampler.stop()
            env.destroy()
            if args.keep_logs:
                print(f"logs kept in {workdir}")
            else:
                shutil.rmtree(workdir, ignore_errors=True)
    return 0 if passed else 1


if __name__ == "__main__":
    sys.exit(main())
