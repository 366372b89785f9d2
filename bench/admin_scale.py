"""Every operator page, API endpoint and background job, timed at 10 million messages (issue 14).

What it does (see bench/README.md, "dataset.py and admin_scale.py"):

1. Setup, not timed: the scale data set (bench/dataset.py: built when missing, ``manage.py migrate`` either way,
   so the indexes other work adds are in place), then the web server on it as deployed (granian, DEBUG off), an
   admin session (the login page, its CSRF token, the POST) and the API token of the set's ``bench`` client.
2. What is timed, each ``--requests`` (20) times after one warm-up, over real HTTP, one request at a time:
   - every admin change list the admin index links to: page 1, one value of each filter, one day of each date
     range, the date hierarchy down to a day when there is one, a deep page (the "Older" link followed 10 times,
     or ``?p=`` up to 2000 when the list pages by number), one search; the operator pages (dashboard, provider
     limits, metrics, API docs);
   - the searches operators make on the Messages list and the review queue: a phone number in three formats, an
     email in upper case, a provider message id, a CRM record id, a conversation id, a correlation id (real
     values from the set); a message with a 50-entry timeline, a review item, a suppression and its import page,
     an inbox row, an outbox change;
   - the REST API with the token: messages (unfiltered, each filter, 10 pages down the cursor, a detail), the
     suppression list and a check of 10,000 addresses, the CRM change feed (10 pages from the start, a jump deep
     into it and 10 pages on from there);
   - the background jobs in this process (Django set up on the same database), each run inside a transaction
     rolled back after it, with the set's own clock as "now": receipt timeout, orphan rematch and expiry, the
     inbox drain claim, the polling due-scan and reconcile scan, the CRM relay claim, the inbox and outbox prunes,
     the escalation sweep, suppression expiry, the retry dispatch scan.
3. For every row over the bar: its SQL captured in-process (Django's test client or the job itself) and
   ``EXPLAIN (ANALYZE, BUFFERS)`` of its slowest query.
4. One Markdown table (p50, p95, max, status) and how many rows meet the bar: 300 ms at p95 for pages and
   endpoints, 1 s for jobs. Exit status 0 when all do, 1 otherwise, 2 when the setup failed.

Run from the project root with its virtualenv::

    .venv/bin/python bench/admin_scale.py                              # the full set (built first if missing)
    .venv/bin/python bench/admin_scale.py --scale 0.01 \\
        --database-url postgres://postgres@127.0.0.1:5432/receipts_scale_small
    .venv/bin/python bench/admin_scale.py --only "admin Messages" --requests 5
    .venv/bin/python bench/admin_scale.py --help
"""

from __future__ import annotations

import argparse
import contextlib
import json
import math
import os
import re
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from html import unescape
from pathlib import Path
from typing import Any
from urllib.parse import parse_qsl, urlencode, urljoin, urlsplit, urlunsplit

import httpx
import psycopg

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "bench"))

import dataset  # noqa: E402 - bench/ on the path

from tests.apprunner import free_port, wait_until  # noqa: E402 - needs the project root on the path

PAGE_BAR_MS = 300.0
JOB_BAR_MS = 1000.0
DEEP_PAGES = 10
SLOW_WARMUP = 10.0  # seconds: a row whose warm-up takes longer is timed SLOW_REQUESTS times, not --requests
SLOW_REQUESTS = 2
JOB_STATEMENT_TIMEOUT = "120s"  # a beat task timed as a whole: no statement of it may run longer
BIN = Path(sys.executable).parent


# --- rows ------------------------------------------------------------------------------------------------


@dataclass
class Row:
    """One thing to time: a request (its URL may need finding first, ``prepare``) or a job."""

    name: str
    kind: str  # "admin", "api" or "job"
    url: str = ""
    method: str = "GET"
    body: bytes | None = None
    prepare: Callable[[], str] | None = None  # finds the URL (following "next" links), untimed
    job: Callable[[], object] | None = None
    times: list[float] = field(default_factory=list)  # ms
    statuses: list[str] = field(default_factory=list)
    error: str = ""
    plan: str = ""

    @property
    def bar(self) -> float:
        return JOB_BAR_MS if self.kind == "job" else PAGE_BAR_MS

    def percentile(self, q: float) -> float:
        ordered = sorted(self.times)
        return ordered[max(0, math.ceil(q * len(ordered)) - 1)] if ordered else float("nan")  # nearest rank

    @property
    def ok_status(self) -> bool:
        return bool(self.statuses) and not self.error and all(s in ("200", "ok") for s in self.statuses)

    @property
    def passes(self) -> bool:
        return self.ok_status and bool(self.times) and self.percentile(0.95) < self.bar

    def status_text(self, asked: int) -> str:
        if self.error:
            return f"FAIL: {self.error}"
        counts: dict[str, int] = {}
        for status in self.statuses:
            counts[status] = counts.get(status, 0) + 1
        text = ", ".join(s if len(counts) == 1 else f"{s} x{n}" for s, n in counts.items())
        if not self.ok_status:
            text = f"FAIL {text}"
        if len(self.times) < asked:
            text += f" (n={len(self.times)})"
        return text


# --- the web server --------------------------------------------------------------------------------------


class Server:
    """granian on the set's database, as deployed (DEBUG off); stopped by its process group, which it leads."""

    def __init__(self, url: str, workdir: Path) -> None:
        self.port = free_port()
        self.base = f"http://127.0.0.1:{self.port}"
        self.log_path = workdir / "web.log"
        env = {**dataset.django_env(url), "ALLOWED_HOSTS": "127.0.0.1,localhost"}
        argv = [str(BIN / "granian"), "--interface", "wsgi", "--host", "127.0.0.1", "--port", str(self.port)]
        argv += ["--workers", "1", "--blocking-threads", "2", "--backlog", "256", "--no-ws", "--http", "1"]
        self.log = open(self.log_path, "w")  # noqa: SIM115 - closed in stop()
        self.proc = subprocess.Popen(
            [*argv, "config.wsgi:application"],
            cwd=ROOT,
            env=env,
            stdout=self.log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
        wait_until(lambda: httpx.get(f"{self.base}/healthz", timeout=2).status_code == 200, "granian")

    def stop(self) -> None:
        if self.proc.poll() is None:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(self.proc.pid, signal.SIGTERM)
            try:
                self.proc.wait(timeout=20)
            except subprocess.TimeoutExpired:
                os.killpg(self.proc.pid, signal.SIGKILL)
                self.proc.wait(timeout=10)
        self.log.close()


def admin_session(base: str) -> httpx.Client:
    """An operator's browser: the login page, its CSRF token, the POST, the session cookie."""
    client = httpx.Client(base_url=base, timeout=300)
    page = client.get("/admin/login/", params={"next": "/admin/"})
    token = re.search(r'name="csrfmiddlewaretoken" value="([^"]+)"', page.text)
    if page.status_code != 200 or not token:
        raise RuntimeError(f"admin login page: {page.status_code}")
    form = {"username": dataset.BENCH_USER, "password": dataset.BENCH_PASSWORD, "next": "/admin/"}
    answer = client.post("/admin/login/?next=/admin/", data={**form, "csrfmiddlewaretoken": token.group(1)})
    if answer.status_code != 302 or "sessionid" not in client.cookies:
        raise RuntimeError(f"admin login refused: {answer.status_code}")
    return client


# --- values from the set -----------------------------------------------------------------------------------


@dataclass
class Samples:
    """Real values to search for and pages to open, read from the set."""

    sms: dict[str, Any]
    email: dict[str, Any]
    conversation: dict[str, Any]
    correlation: dict[str, Any]
    review_sms: dict[str, Any]
    review_email: dict[str, Any]
    review_conversation: dict[str, Any]
    review_correlation: dict[str, Any]
    campaign: str
    largest_campaign_id: int
    suppression_id: int
    suppression_address: str
    outbox_id: int
    outbox_record: str
    feed_deep: str
    inbox_id: int
    inbox_ref: str
    check_addresses: list[str]


MESSAGE_FIELDS = 'id, "to", provider_message_id, crm_record_id, conversation_id, correlation_id'


def read_samples(url: str, messages: int) -> Samples:
    with psycopg.connect(url, autocommit=True) as conn:

        def one(query: str, *params: object) -> tuple:
            row = conn.execute(query, params).fetchone()  # type: ignore[call-overload]
            if row is None:
                raise RuntimeError(f"the set has no row for: {query}")
            return tuple(row)

        def message(where: str, start: int = messages // 2) -> dict[str, Any]:
            # An id index range from the middle of the set: neither the newest nor the oldest rows.
            query = f"SELECT {MESSAGE_FIELDS} FROM receipts_message WHERE id >= %s AND {where} ORDER BY id LIMIT 1"  # noqa: S608
            return dict(zip(MESSAGE_FIELDS.replace('"', "").split(", "), one(query, start), strict=True))

        def review(where: str) -> dict[str, Any]:
            query = (
                f"SELECT {MESSAGE_FIELDS} FROM receipts_message WHERE needs_review AND {where} ORDER BY id DESC LIMIT 1"  # noqa: S608
            )
            return dict(zip(MESSAGE_FIELDS.replace('"', "").split(", "), one(query), strict=True))

        outbox_max = one("SELECT max(id) FROM crm_sync_outboxmessage")[0]
        deep = one(
            "SELECT position FROM crm_sync_feedentry WHERE change_id >= %s ORDER BY change_id LIMIT 1",
            outbox_max * 9 // 10,
        )
        outbox = one(
            "SELECT id, crm_record_id FROM crm_sync_outboxmessage WHERE id >= %s AND crm_record_id <> '' "
            "ORDER BY id LIMIT 1",
            outbox_max // 2,
        )
        suppression = one(
            "SELECT id, address FROM receipts_suppression WHERE channel = 'sms' AND lifted_at IS NULL "
            "ORDER BY id DESC LIMIT 1"
        )
        inbox = one("SELECT id, ref FROM receipts_receiptevent WHERE state = 'unmatched' ORDER BY id DESC LIMIT 1")
        active = [
            r[0]
            for r in conn.execute(
                "SELECT address FROM receipts_suppression WHERE channel = 'sms' AND lifted_at IS NULL "
                "AND expires_at IS NULL ORDER BY id DESC LIMIT 1000"
            )
        ]
        listed = [
            r[0]
            for r in conn.execute(
                "SELECT address FROM receipts_suppression WHERE channel = 'sms' AND lifted_at IS NOT NULL "
                "ORDER BY id DESC LIMIT 500"
            )
        ]
        return Samples(
            sms=message("channel = 'sms' AND crm_record_id <> ''"),
            email=message("channel = 'email' AND crm_record_id <> ''"),
            conversation=message("conversation_id <> ''"),
            correlation=message("correlation_id <> ''"),
            review_sms=review("channel = 'sms'"),
            review_email=review("channel = 'email'"),
            review_conversation=review("conversation_id <> ''"),
            review_correlation=review("correlation_id <> ''"),
            campaign=one("SELECT name FROM campaigns_campaign ORDER BY id DESC LIMIT 1 OFFSET 3")[0],
            largest_campaign_id=one(
                "SELECT campaign_id FROM receipts_message WHERE campaign_id IS NOT NULL"
                " GROUP BY campaign_id ORDER BY count(*) DESC LIMIT 1"
            )[0],
            suppression_id=suppression[0],
            suppression_address=suppression[1],
            outbox_id=outbox[0],
            outbox_record=outbox[1],
            feed_deep=str(deep[0]),
            inbox_id=inbox[0],
            inbox_ref=inbox[1],
            check_addresses=check_addresses(active, listed),
        )


def national(number: str) -> str:
    return f"({number[2:5]}) {number[5:8]}-{number[8:]}"


def spaced(number: str) -> str:
    return f"{number[2:5]} {number[5:8]} {number[8:]}"


def check_addresses(active: list[str], listed: list[str], size: int = 10_000) -> list[str]:
    """The shape bench/suppression_check.py sends: 10% suppressed, 5% listed but lifted, the rest not on the list
    (+1556: no message and no suppression has one); every tenth typed in national format."""
    hits = (active * (size // 10 // max(1, len(active)) + 1))[: size // 10]
    lifted = (listed * (size // 20 // max(1, len(listed)) + 1))[: size // 20]
    fresh = [f"+1556{n:07d}" for n in range(size - len(hits) - len(lifted))]
    addresses = hits + lifted + fresh
    return [national(a) if i % 10 == 0 else a for i, a in enumerate(addresses)]


# --- the admin, discovered -------------------------------------------------------------------------------

LINK = re.compile(r'<th scope="row"[^>]*>\s*<a href="([^"]+)"[^>]*>([^<]+)</a>')
CHANGELIST = re.compile(r"^/admin/\w+/\w+/$")
FILTER_BLOCK = re.compile(r'<details data-filter-title="([^"]+)"(.*?)</details>', re.S)
FILTER_LINK = re.compile(r'<a href="(\?[^"]*)"[^>]*>([^<]*)</a>')
RANGE_INPUT = re.compile(r'name="(\w+)__range__gte"')
NEXT_LINK = re.compile(r'<a\s[^>]*?(?:rel="next"[^>]*?href="([^"]+)"|href="([^"]+)"[^>]*?rel="next")')
PAGE_LINK = re.compile(r'href="\?(?:[^"]*&amp;)?p=(\d+)"')
CURSOR = re.compile(r"[0-9]+\.[0-9]+")
HIERARCHY = re.compile(r'class="[^"]*toplinks[^"]*"(.*?)</(?:ul|nav)>', re.S)


def get_text(http: httpx.Client, url: str) -> str:
    answer = http.get(url)
    if answer.status_code != 200:
        raise RuntimeError(f"GET {url}: {answer.status_code}")
    return answer.text


def with_after(url: str, cursor: str) -> str:
    """The change feed's ``next`` is a bare cursor, to pass as ``after``."""
    parts = urlsplit(url)
    query = [(k, v) for k, v in parse_qsl(parts.query) if k != "after"] + [("after", cursor)]
    return urlunsplit(parts._replace(query=urlencode(query)))


def follow_next(http: httpx.Client, url: str, pages: int = DEEP_PAGES) -> str:
    """The URL of the page ``pages`` "next" links below ``url``: HTML rel="next", the API's ``next`` URL, or the
    change feed's ``next`` cursor."""
    for _ in range(pages):
        answer = http.get(url)
        if answer.status_code != 200:
            raise RuntimeError(f"GET {url}: {answer.status_code}")
        if answer.headers.get("content-type", "").startswith("application/json"):
            following = answer.json().get("next")
        else:
            match = NEXT_LINK.search(answer.text)
            following = unescape(match.group(1) or match.group(2)) if match else None
        if not following:
            raise RuntimeError(f"no next page after {url}")
        url = with_after(url, following) if CURSOR.fullmatch(following) else urljoin(url, following)
    return url


def day_params(html: str, day: datetime) -> list[tuple[str, str]]:
    """One day of each date range filter (django-admin-rangefilter: ``<field>__range__gte/__lte``)."""
    date = day.date().isoformat()
    return [
        (field_name, urlencode({f"{field_name}__range__gte": date, f"{field_name}__range__lte": date}))
        for field_name in dict.fromkeys(RANGE_INPUT.findall(html))
    ]


def hierarchy_day(http: httpx.Client, url: str, html: str) -> str | None:
    """Down the date hierarchy (year, month, day) by its first link at each level; None without one."""
    for level in range(3):
        block = HIERARCHY.search(html)
        links = [unescape(h) for h in re.findall(r'href="(\?[^"]+)"', block.group(1))] if block else []
        if not links:
            return None if level == 0 else url
        url = urljoin(url, links[0])
        html = get_text(http, url)
    return url


def changelist_rows(http: httpx.Client, path: str, label: str, samples: Samples, day: datetime) -> list[Row]:
    html = get_text(http, path)
    name = f"admin {label}:"
    rows = [Row(f"{name} page 1", "admin", path)]
    for title, block in FILTER_BLOCK.findall(html):
        if RANGE_INPUT.search(block):
            continue  # a date range: below
        # The first choice (often the rarest: Django lists them in declaration order) and the middle one.
        choices = [(unescape(h), unescape(t).strip()) for h, t in FILTER_LINK.findall(block) if h != "?"]
        for query, shown in dict.fromkeys(choices[:1] + choices[len(choices) // 2 :][:1]):
            rows.append(Row(f"{name} filter {title} = {shown}", "admin", path + query))
    for field_name, query in day_params(html, day):
        rows.append(Row(f"{name} {field_name} one day ({day:%Y-%m-%d})", "admin", f"{path}?{query}"))
    if HIERARCHY.search(html):
        rows.append(
            Row(
                f"{name} date hierarchy down to a day", "admin", prepare=lambda: hierarchy_day(http, path, html) or path
            )
        )
    if NEXT_LINK.search(html):
        rows.append(
            Row(
                f"{name} page {DEEP_PAGES + 1} (next link x{DEEP_PAGES})",
                "admin",
                prepare=lambda: follow_next(http, path),
            )
        )
    elif pages := [int(p) for p in PAGE_LINK.findall(html)]:
        deep = min(2000, max(pages))
        rows.append(Row(f"{name} page {deep} (?p=)", "admin", f"{path}?p={deep}"))
    if 'id="searchbar"' in html:
        rows += [
            Row(f"{name} search {what} {term!r}", "admin", f"{path}?{urlencode({'q': term})}")
            for what, term in searches(path, samples)
        ]
    if path.endswith("/receipts/message/"):
        sort = re.search(r'class="[^"]*column-updated_at[^"]*">\s*<div class="text"><a href="([^"]+)"', html)
        if sort:
            rows.append(Row(f"{name} sorted by updated at", "admin", path + unescape(sort.group(1))))
        by_address = re.search(r'class="[^"]*column-to[^"]*">\s*<div class="text"><a href="([^"]+)"', html)
        if by_address:
            rows.append(Row(f"{name} sorted by to", "admin", path + unescape(by_address.group(1))))
    return rows


def searches(path: str, samples: Samples) -> list[tuple[str, str]]:
    """What operators type into each list's search box."""
    if path.endswith(("/receipts/message/", "/receipts/reviewqueue/")):
        review = path.endswith("/reviewqueue/")
        sms = samples.review_sms if review else samples.sms
        email = samples.review_email if review else samples.email
        conversation = samples.review_conversation if review else samples.conversation
        correlation = samples.review_correlation if review else samples.correlation
        return [
            ("phone", sms["to"]),
            ("phone", national(sms["to"])),
            ("phone", spaced(sms["to"])),
            ("email", email["to"].upper()),
            ("provider message id", sms["provider_message_id"]),
            ("CRM record id", sms["crm_record_id"]),
            ("conversation id", conversation["conversation_id"]),
            ("correlation id", correlation["correlation_id"]),
        ]
    if path.endswith("/suppression/"):
        return [("phone", national(samples.suppression_address))]
    if path.endswith("/outboxmessage/"):
        return [("CRM record id", samples.outbox_record)]
    if path.endswith("/receiptevent/"):
        return [("ref", samples.inbox_ref), ("provider message id", samples.sms["provider_message_id"])]
    if path.endswith("/campaign/"):
        return [("name", samples.campaign.split("-")[0])]
    if path.endswith("/user/"):
        return [("username", dataset.BENCH_USER)]
    return [("phone", samples.sms["to"])]


def admin_rows(http: httpx.Client, samples: Samples, info: dataset.Info) -> list[Row]:
    index = get_text(http, "/admin/")
    links = list(dict.fromkeys(LINK.findall(index)))
    rows = [Row("admin index", "admin", "/admin/")]
    lists = {path: unescape(label) for path, label in links if CHANGELIST.match(path)}
    for path, label in links:
        if not CHANGELIST.match(path):
            rows.append(Row(f"page {unescape(label)} ({path})", "admin", path))
            if path == "/admin/dashboard/":  # each window reads other rollup rows (hourly, daily)
                for window in ("hour", "7d", "30d"):
                    rows.append(Row(f"page Dashboard, window {window}", "admin", f"{path}?window={window}"))
    day = info.built_at - timedelta(days=7)
    for path, label in lists.items():
        try:
            rows += changelist_rows(http, path, label, samples, day)
        except RuntimeError as exc:
            rows.append(Row(f"admin {label}: page 1", "admin", path, error=str(exc)))

    def page(model: str, suffix: str, what: str) -> None:
        path = next((p for p in lists if p.endswith(f"/{model}/")), None)
        if path:
            rows.append(Row(f"admin {lists[path]}: {what}", "admin", path + suffix))

    page("message", f"{info.long_timeline_message}/change/", "message with a 50-entry timeline")
    page("reviewqueue", f"{samples.review_sms['id']}/change/", "review item")
    page("suppression", f"{samples.suppression_id}/change/", "entry")
    page("suppression", "import/", "import page")
    page("outboxmessage", f"{samples.outbox_id}/change/", "change")
    page("receiptevent", f"{samples.inbox_id}/change/", "inbox row")
    if info.big_campaign_id:
        page("campaign", f"{info.big_campaign_id}/change/", f"the big campaign ({info.big_campaign:,} sends)")
    return rows


# --- the API ---------------------------------------------------------------------------------------------


def api_rows(http: httpx.Client, samples: Samples, info: dataset.Info) -> list[Row]:
    messages = "/api/v1/messages/"
    suppressions = "/api/v1/suppressions/"
    feed = "/api/v1/changes/"
    recent = (info.built_at - timedelta(hours=1)).isoformat().replace("+00:00", "Z")
    filters = {
        "status": "failed",
        "provider": "genesys_sms",
        "channel": "email",
        "campaign": samples.campaign,
        "updated_after": recent,
        "provider_message_id": samples.sms["provider_message_id"],
        "crm_record_id": samples.sms["crm_record_id"],
        "to": national(samples.sms["to"]),
        "needs_review": "true",
        "review_reason": "no_receipt",
    }
    rows = [Row(f"API GET {messages}", "api", messages)]
    rows += [Row(f"API GET {messages}?{k}={v}", "api", f"{messages}?{urlencode({k: v})}") for k, v in filters.items()]
    rows += [
        Row(f"API GET {messages} page {DEEP_PAGES + 1} (cursor)", "api", prepare=lambda: follow_next(http, messages)),
        Row(
            f"API GET {messages}?status=failed page {DEEP_PAGES + 1} (cursor)",
            "api",
            prepare=lambda: follow_next(http, f"{messages}?status=failed"),
        ),
        Row(f"API GET {messages}<id>/ (50-entry timeline)", "api", f"{messages}{info.long_timeline_message}/"),
        Row(f"API GET {suppressions}", "api", suppressions),
        Row(
            f"API GET {suppressions}?address=(national)",
            "api",
            f"{suppressions}?{urlencode({'address': national(samples.suppression_address)})}",
        ),
        Row(f"API GET {suppressions}?active=true", "api", f"{suppressions}?active=true"),
        Row(f"API GET {suppressions}?reason=complaint", "api", f"{suppressions}?reason=complaint"),
        Row(
            f"API GET {suppressions} page {DEEP_PAGES + 1} (cursor)",
            "api",
            prepare=lambda: follow_next(http, suppressions),
        ),
        Row(f"API GET {suppressions}<id>/", "api", f"{suppressions}{samples.suppression_id}/"),
        Row(
            f"API POST {suppressions}check/ ({len(samples.check_addresses):,} addresses)",
            "api",
            f"{suppressions}check/",
            method="POST",
            body=json.dumps({"channel": "sms", "addresses": samples.check_addresses}).encode(),
        ),
        Row("API GET /api/v1/campaigns/ (with totals)", "api", "/api/v1/campaigns/"),
        Row(
            "API GET /api/v1/campaigns/<id>/stats/ (the largest campaign)",
            "api",
            f"/api/v1/campaigns/{samples.largest_campaign_id}/stats/",
        ),
        *(
            [
                Row(
                    "API GET /api/v1/campaigns/<id>/ (the big campaign)",
                    "api",
                    f"/api/v1/campaigns/{info.big_campaign_id}/",
                )
            ]
            if info.big_campaign_id
            else []
        ),
        Row(f"API GET {feed} (from the start)", "api", feed),
        Row(f"API GET {feed} page {DEEP_PAGES + 1} from the start", "api", prepare=lambda: follow_next(http, feed)),
        Row(f"API GET {feed}?after=(90% into the feed)", "api", f"{feed}?after={samples.feed_deep}"),
        Row(
            f"API GET {feed} page {DEEP_PAGES + 1} from 90% into the feed",
            "api",
            prepare=lambda: follow_next(http, f"{feed}?after={samples.feed_deep}"),
        ),
        Row(
            f"API GET {feed}?after=(90%)&page_size=1000",
            "api",
            f"{feed}?after={samples.feed_deep}&page_size=1000",
        ),
        Row(
            f"API GET {feed}?crm_record_id=",
            "api",
            f"{feed}?{urlencode({'crm_record_id': samples.outbox_record})}",
        ),
        Row(
            f"API GET {feed}?after=(90%)&kind=suppression_added",
            "api",
            f"{feed}?after={samples.feed_deep}&kind=suppression_added",
        ),
    ]
    return rows


# --- the jobs, in this process ----------------------------------------------------------------------------


class Rollback(Exception):
    pass


def setup_django(url: str) -> None:
    os.environ.update(dataset.django_env(url))
    os.environ["ALLOWED_HOSTS"] = "127.0.0.1,localhost,testserver"
    os.environ["DJANGO_SETTINGS_MODULE"] = "config.settings"
    import django

    django.setup()


def relay_hold(now: datetime) -> Any:
    """The relay lease, as the relay takes it before it claims (the claim is fenced by it)."""
    from crm_sync import actions as crm

    return crm.Hold("bench", crm.take_lease("bench", now) or 0)


def job_rows(now: datetime) -> list[Row]:
    """What beat's schedule runs (config/settings.py CELERY_BEAT_SCHEDULE): the database work of each task, with the
    set's clock as "now"; a task that calls a provider or the CRM is timed up to that call (its claim or scan).
    Beat tasks this list does not know are timed as a whole (``beat_task``)."""
    from django.conf import settings

    from crm_sync import actions as crm
    from receipts import polling
    from receipts.actions import escalation, ingest, polls, process, retries, review, suppression

    jobs: list[tuple[str, str, Callable[[], object]]] = [
        ("receipts.expire_receipts", "receipt-timeout scan, one batch", lambda: review.expire_receipts(now)),
        ("receipts.sweep_inbox", "orphan rematch", ingest.rematch_orphans),
        ("receipts.sweep_inbox", "orphan expiry", lambda: ingest.expire_orphans(now)),
        ("receipts.drain_inbox", "inbox drain claim, one batch", lambda: process.process_due(now)),
        (
            "receipts.poll_high_priority",
            "polling due-scan (the claim)",
            lambda: polls.claim_due(now, settings.POLL_BATCH_SIZE),
        ),
        ("receipts.reconcile_bulk", "bulk reconcile scan (in_flight)", lambda: polling.in_flight(now)),
        (
            "crm_sync.relay_outbox",
            "CRM relay claim, one batch",
            lambda: crm.claim(now, crm.BatchReport(), settings.CRM_BATCH_SIZE, relay_hold(now)),
        ),
        ("receipts.prune_inbox", "inbox prune", lambda: ingest.prune_inbox(now)),
        ("crm_sync.prune_outbox", "outbox prune", lambda: crm.prune(now)),
        ("receipts.raise_escalations", "escalation sweep, one batch", lambda: escalation.raise_escalations(now)),
        (
            "receipts.expire_suppressions",
            "suppression expiry",
            lambda: (suppression.expire_due(now), suppression.prune_soft_bounces(now)),
        ),
        (
            "receipts.dispatch_retries",
            "retry dispatch scan",
            lambda: (retries.fail_stale_sends(now), retries.due_retries(now)),
        ),
    ]
    rows = [Row(f"job: {what} ({task})", "job", job=job) for task, what, job in jobs]
    known = {task for task, _, _ in jobs}
    for entry in settings.CELERY_BEAT_SCHEDULE.values():
        if entry["task"] not in known:
            known.add(entry["task"])
            rows.append(
                Row(f"job: {entry['task']} (the whole beat task, real clock)", "job", job=beat_task(entry["task"]))
            )
    return rows


def beat_task(name: str) -> Callable[[], object]:
    """The task's own function, run in this process (inside the caller's rolled-back transaction)."""
    from django.db import connection

    from config.celery import app

    def run() -> object:
        app.loader.import_default_modules()
        with connection.cursor() as cursor:
            cursor.execute(f"SET LOCAL statement_timeout = '{JOB_STATEMENT_TIMEOUT}'")
        return app.tasks[name].run()

    return run


@contextlib.contextmanager
def rolled_back() -> Iterator[None]:
    """A transaction that never commits: the job's changes are undone, its on_commit hooks never run."""
    from django.db import transaction

    try:
        with transaction.atomic():
            yield
            raise Rollback
    except Rollback:
        pass


def run_job(job: Callable[[], object]) -> float:
    with rolled_back():
        started = time.perf_counter()
        job()
        return (time.perf_counter() - started) * 1000
    return float("nan")  # not reached: rolled_back() swallows only its own Rollback


# --- timing ----------------------------------------------------------------------------------------------


def request(http: httpx.Client, row: Row) -> tuple[float, str]:
    headers = {"Content-Type": "application/json"} if row.body is not None else None
    started = time.perf_counter()
    try:
        answer = http.request(row.method, row.url, content=row.body, headers=headers)
    except httpx.TimeoutException:
        return (time.perf_counter() - started) * 1000, "timeout"
    elapsed = (time.perf_counter() - started) * 1000
    status = str(answer.status_code)
    if answer.is_redirect:
        status += f" -> {answer.headers.get('location', '')}"
    return elapsed, status


def measure(row: Row, clients: dict[str, httpx.Client], requests: int, budget: float) -> None:
    if row.error:
        return
    if row.prepare is not None:
        try:
            row.url = row.prepare()
        except (RuntimeError, httpx.HTTPError) as exc:
            row.error = str(exc)[:200]
            return

    def once() -> tuple[float, str]:
        if row.job is not None:
            try:
                return run_job(row.job), "ok"
            except Exception as exc:  # a job that fails is a row that fails, not the end of the benchmark
                return float("nan"), f"{type(exc).__name__}: {exc}"[:200]
        return request(clients[row.kind], row)

    warm, _ = once()
    count = min(requests, SLOW_REQUESTS) if warm > SLOW_WARMUP * 1000 else requests
    started = time.perf_counter()
    for i in range(count):
        elapsed, status = once()
        row.statuses.append(status)
        if elapsed == elapsed:  # not NaN
            row.times.append(elapsed)
        if i >= 2 and time.perf_counter() - started > budget:
            break


# --- the slow rows' SQL -----------------------------------------------------------------------------------


@dataclass
class Captured:
    """What the row's queries were, run once more in this process."""

    count: int
    seconds: float  # all of them
    slowest: float
    sql: str
    cancelled: bool  # the slowest raised in the app (cut short by a statement_timeout of the app's own)


def slowest_query(row: Row, token: str) -> Captured | None:
    """The row once more in this process, every query it makes recorded (time, SQL, whether it raised): the
    slowest."""
    from django.contrib.auth import get_user_model
    from django.db import connection
    from django.test import Client

    seen: list[tuple[float, str, bool]] = []

    def record(execute: Callable[..., Any], sql: str, params: Any, many: bool, context: dict[str, Any]) -> Any:
        started, failed = time.perf_counter(), True
        try:
            result = execute(sql, params, many, context)
            failed = False
            return result
        finally:
            text = connection.ops.last_executed_query(context["cursor"], sql, params) or sql
            seen.append((time.perf_counter() - started, text, failed))

    with connection.execute_wrapper(record):
        if row.job is not None:
            run_job(row.job)
        else:
            client = Client()
            extra: dict[str, Any] = {}
            if row.kind == "admin":
                user = get_user_model().objects.get(username=dataset.BENCH_USER)
                client.force_login(user, backend="django.contrib.auth.backends.ModelBackend")
            else:
                extra["HTTP_AUTHORIZATION"] = f"Token {token}"
            parts = urlsplit(row.url)
            path = parts.path + (f"?{parts.query}" if parts.query else "")
            client.generic(row.method, path, data=row.body or b"", content_type="application/json", **extra)
    queries = [q for q in seen if q[1].lstrip().upper().startswith(("SELECT", "WITH", "UPDATE", "DELETE", "INSERT"))]
    if not queries:
        return None
    slowest, sql, cancelled = max(queries)
    return Captured(len(seen), sum(q[0] for q in seen), slowest, sql, cancelled)


def explain(found: Captured) -> str:
    """EXPLAIN (ANALYZE, BUFFERS) of the slowest query. One the app cut short (``receipts.db.count_cheaply`` counts
    under a statement timeout and falls back to an estimate) is not run to its end: the app never waits for that.
    Its plan without ANALYZE is shown instead."""
    from django.db import connection

    with rolled_back(), connection.cursor() as cursor:
        if found.cancelled:
            cursor.execute("EXPLAIN " + found.sql)
            plan = "\n".join(line for (line,) in cursor.fetchall())
            return f"(cancelled in the app after {found.slowest * 1000:,.0f} ms; the plan without ANALYZE:)\n{plan}"
        cursor.execute("EXPLAIN (ANALYZE, BUFFERS) " + found.sql)
        return "\n".join(line for (line,) in cursor.fetchall())
    return ""


# --- the report -------------------------------------------------------------------------------------------


def cell(value: float) -> str:
    return "-" if value != value else f"{value:,.0f}" if value >= 100 else f"{value:.1f}"


def print_table(rows: list[Row], requests: int) -> None:
    print("| page or job | p50 ms | p95 ms | max ms | status |")
    print("|---|---:|---:|---:|---|")
    for row in rows:
        p50 = statistics.median(row.times) if row.times else float("nan")
        worst = max(row.times) if row.times else float("nan")
        name = row.name.replace("|", "\\|")
        status = row.status_text(requests).replace("|", "\\|")
        print(f"| {name} | {cell(p50)} | {cell(row.percentile(0.95))} | {cell(worst)} | {status} |")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument(
        "--database-url",
        default=os.environ.get("SCALE_DATABASE_URL") or dataset.DEFAULT_DATABASE_URL,
        help=f"the set's database (env SCALE_DATABASE_URL; default {dataset.DEFAULT_DATABASE_URL}); local only",
    )
    parser.add_argument("--scale", type=float, default=1.0, help="the set's size (default 1.0: 10M messages)")
    parser.add_argument("--seed", type=int, default=dataset.DEFAULT_SEED)
    parser.add_argument("--rebuild", action="store_true", help="build the set again first")
    parser.add_argument(
        "--big-campaign", type=int, default=None, metavar="SENDS", help="its sends (default 1,000,000 x --scale)"
    )
    parser.add_argument("--requests", type=int, default=20, help="timed requests per row (default 20), after 1 warm-up")
    parser.add_argument("--only", default="", metavar="SUBSTRING", help="time only the rows whose name has this")
    parser.add_argument("--budget", type=float, default=60.0, help="seconds per row before it stops early (at n >= 3)")
    parser.add_argument("--no-explain", action="store_true", help="do not capture and EXPLAIN the slow rows")
    args = parser.parse_args()

    def log(text: str) -> None:
        print(text, flush=True)

    def on_term(signum: int, frame: object) -> None:
        raise KeyboardInterrupt  # so that the finally clauses stop the web server

    signal.signal(signal.SIGTERM, on_term)
    workdir = Path(tempfile.mkdtemp(prefix="bench-admin-scale-"))
    server: Server | None = None
    keep = False  # the web server's log, when the setup failed
    try:
        try:
            info = dataset.ensure(args.database_url, args.scale, args.seed, args.rebuild, log, args.big_campaign)
            samples = read_samples(args.database_url, info.counts.get("receipts_message", 1))
            server = Server(args.database_url, workdir)
            admin = admin_session(server.base)
            api = httpx.Client(base_url=server.base, timeout=300, headers={"Authorization": f"Token {info.token}"})
            setup_django(args.database_url)
            rows = admin_rows(admin, samples, info) + api_rows(api, samples, info)
            rows += job_rows(info.built_at + timedelta(minutes=1))
        except (dataset.Refused, psycopg.Error, RuntimeError, TimeoutError, httpx.HTTPError) as exc:
            print(f"setup failed: {exc}", file=sys.stderr)
            if server:
                keep = True
                print(f"web server log: {server.log_path}", file=sys.stderr)
            return 2
        return time_rows(args, info, rows, server, admin, api)
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return 130
    finally:
        if server:
            server.stop()
        if not keep:
            shutil.rmtree(workdir, ignore_errors=True)


def time_rows(
    args: argparse.Namespace,
    info: dataset.Info,
    rows: list[Row],
    server: Server,
    admin: httpx.Client,
    api: httpx.Client,
) -> int:
    def log(text: str) -> None:
        print(text, flush=True)

    selected = [row for row in rows if args.only.lower() in row.name.lower()]
    log(
        f"\ntiming {len(selected)} of {len(rows)} rows, {args.requests} requests each after a warm-up, on {server.base}"
    )
    load_before = os.getloadavg()[0]
    clients = {"admin": admin, "api": api}
    for i, row in enumerate(selected, 1):
        measure(row, clients, args.requests, args.budget)
        p95 = row.percentile(0.95)
        mark = "ok  " if row.passes else "SLOW" if row.ok_status else "FAIL"
        log(f"[{i:3}/{len(selected)}] {mark} p95 {cell(p95):>8} ms  {row.name}  {row.status_text(args.requests)}")
    load_after = os.getloadavg()[0]

    slow = [row for row in selected if row.ok_status and not row.passes]
    if slow and not args.no_explain:
        log(f"\ncapturing the SQL of {len(slow)} row(s) over the bar")
        for row in slow:
            try:
                found = slowest_query(row, info.token)
                if found:
                    shown = found.sql if len(found.sql) <= 4000 else found.sql[:4000] + " ..."
                    row.plan = (
                        f"in-process: {found.count} queries, {found.seconds * 1000:,.0f} ms in SQL; the slowest, "
                        f"{found.slowest * 1000:,.0f} ms:\n{shown}\n\n{explain(found)}"
                    )
            except Exception as exc:  # a plan that cannot be had is reported, the table still printed
                row.plan = f"could not capture: {type(exc).__name__}: {exc}"

    print(
        f"\n## Timings: {info.counts.get('receipts_message', 0):,} messages (scale {info.scale}), "
        f"{args.requests} requests per row\n"
    )
    print_table(selected, args.requests)
    pages = [r for r in selected if r.kind != "job"]
    jobs = [r for r in selected if r.kind == "job"]
    print(
        f"\n{sum(r.passes for r in pages)} of {len(pages)} pages and endpoints meet the {PAGE_BAR_MS:.0f} ms bar "
        f"(p95, status 200); {sum(r.passes for r in jobs)} of {len(jobs)} jobs meet the {JOB_BAR_MS / 1000:.0f} s "
        "bar (p95)."
    )
    counts = ", ".join(f"{table} {count:,}" for table, count in info.counts.items())
    print(f"data set: {dataset.database_name(args.database_url)}, {info.size} on disk; {counts}")
    print(f"load average (1 min) before/after timing: {load_before:.2f} / {load_after:.2f} on {os.cpu_count()} CPUs")
    for row in slow:
        if row.plan:
            print(f"\n### {row.name} (p95 {row.percentile(0.95):,.0f} ms)\n\n```\n{row.plan}\n```")
    return 0 if all(r.passes for r in selected) else 1


if __name__ == "__main__":
    sys.exit(main())
