"""Suppression check benchmark: 10,000 addresses per call against a list of 1,000,000 suppressions.

What it does (see bench/README.md):

1. Setup, not timed: an isolated deployment (tests/apprunner.AppEnv: a fresh PostgreSQL database when
   ``DATABASE_URL`` points at PostgreSQL, else a fresh SQLite file), migrated; 1,000,000 suppressions loaded
   straight into its table (COPY on PostgreSQL, executemany in one transaction on SQLite), then ANALYZE;
   the web server (granian, as deployed) started on it; an API token.
2. The timed calls: ``POST /api/v1/suppressions/check/`` with 10,000 addresses over real HTTP (a fresh random
   sample each call: some suppressed, some lifted or expired, most not on the list; a share typed in national
   format so that the slow normalisation path is measured too), one call at a time, after one warm-up call.
3. The figures: time per call (min, median, p95, max), the ratio to the 200 ms bar, and where the time goes
   (normalising, querying, the rest), measured in-process against the same database.

Run from the project root with its virtualenv::

    .venv/bin/python bench/suppression_check.py                 # SQLite (embedded mode)
    DATABASE_URL=postgres://postgres@127.0.0.1:5432/postgres .venv/bin/python bench/suppression_check.py
    .venv/bin/python bench/suppression_check.py --help
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import random
import shutil
import statistics
import sys
import tempfile
import time
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import httpx

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from tests.apprunner import AppEnv  # noqa: E402 - needs the project root on the path

BAR_MS = 200.0
COLUMNS = [
    "channel",
    "address",
    "reason",
    "source",
    "note",
    "evidence",
    "created_at",
    "created_by",
    "expires_at",
    "lifted_at",
    "lifted_by",
    "lift_source",
    "lift_reason",
]
REASONS = [
    ("unsubscribe", 40),
    ("hard_bounce", 20),
    ("invalid_destination", 15),
    ("manual", 10),
    ("soft_bounce_threshold", 10),
    ("complaint", 5),
]


def us_number(n: int) -> str:
    """The n-th (0 <= n < 6.4 billion) US number whose area code and exchange are 200-999 (already E.164)."""
    area, rest = divmod(n, 800 * 10**4)
    exchange, line = divmod(rest, 10**4)
    return f"+1{200 + area:03d}{200 + exchange:03d}{line:04d}"


def national(number: str) -> str:
    return f"({number[2:5]}) {number[5:8]}-{number[8:]}"


def rows(count: int, email_share: float, now: datetime, rng: random.Random) -> Iterator[tuple]:
    reasons = [r for r, weight in REASONS for _ in range(weight)]
    emails = int(count * email_share)
    for i, n in enumerate(rng.sample(range(6 * 10**8), count)):
        channel, address = ("email", f"user{n}@example{n % 97}.com") if i < emails else ("sms", us_number(n))
        reason = rng.choice(reasons)
        expires = lifted = None
        if reason == "soft_bounce_threshold":
            expires = now + timedelta(days=rng.randint(-20, 30))  # some already expired
        if rng.random() < 0.05:
            lifted = now - timedelta(days=rng.randint(1, 300))
        yield (
            channel,
            address,
            reason,
            "receipt",
            "",
            "{}",
            now - timedelta(days=rng.randint(1, 700)),
            "bench",
            expires,
            lifted,
            "operator" if lifted else "",
            "operator" if lifted else "",
            "bench" if lifted else "",
        )


def load(env: AppEnv, count: int, email_share: float, seed: int) -> tuple[list[str], list[str], float]:
    """Fill the table; returns the suppressed SMS numbers, all listed SMS numbers, and the seconds taken."""
    now = datetime.now(UTC)
    rng = random.Random(seed)
    active: list[str] = []
    listed: list[str] = []

    def tracked() -> Iterator[tuple]:
        for row in rows(count, email_share, now, rng):
            if row[0] == "sms":
                listed.append(row[1])
                if row[9] is None and (row[8] is None or row[8] > now):
                    active.append(row[1])
            yield row

    started = time.perf_counter()
    if env.admin_url:
        import psycopg

        with psycopg.connect(env.database_url) as conn, conn.cursor() as cur:
            with cur.copy(f"COPY receipts_suppression ({', '.join(COLUMNS)}) FROM STDIN") as copy:
                for row in tracked():
                    copy.write_row(row)
            cur.execute("ANALYZE receipts_suppression")
    else:
        import sqlite3

        path = env.database_url.removeprefix("sqlite:///")
        with contextlib.closing(sqlite3.connect(path)) as conn:
            placeholders = ", ".join("?" for _ in COLUMNS)
            sql = f"INSERT INTO receipts_suppression ({', '.join(COLUMNS)}) VALUES ({placeholders})"  # noqa: S608

            def as_sqlite() -> Iterator[tuple]:
                for row in tracked():
                    # Django keeps naive UTC text in SQLite.
                    yield tuple(
                        v.astimezone(UTC).replace(tzinfo=None).isoformat(sep=" ") if isinstance(v, datetime) else v
                        for v in row
                    )

            with conn:
                conn.executemany(sql, as_sqlite())
            conn.execute("ANALYZE")
    return active, listed, time.perf_counter() - started


def payload(active: list[str], listed: list[str], size: int, suppressed_share: float, national_share: float, rng):
    hits = rng.sample(active, int(size * suppressed_share))
    others = rng.sample(listed, int(size * 0.05))  # on the list, maybe lifted or expired: a real lookup either way
    fresh = [us_number(n) for n in rng.sample(range(6 * 10**8, 64 * 10**8), size - len(hits) - len(others))]
    addresses = hits + others + fresh
    rng.shuffle(addresses)
    return [national(a) if rng.random() < national_share else a for a in addresses]


def percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(q * (len(ordered) - 1)))]


def breakdown(env: AppEnv, bodies: list[list[str]]) -> dict[str, float]:
    """Median ms of each part of a check, in this process, against the deployment's database."""
    os.environ.update({"DATABASE_URL": env.database_url, "SECRET_KEY": "bench", "VAR_DIR": str(env.workdir / "var")})
    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "config.settings")
    import django

    django.setup()
    from django.utils import timezone

    from receipts.actions import suppression
    from receipts.addresses import normalize_fast

    parts: dict[str, list[float]] = {"normalise": [], "query": [], "check() in all": []}
    for addresses in bodies:
        started = time.perf_counter()
        normal = []
        for a in addresses:
            with contextlib.suppress(ValueError):
                normal.append(normalize_fast("sms", a))
        parts["normalise"].append((time.perf_counter() - started) * 1000)
        started = time.perf_counter()
        suppression.active_in("sms", sorted(set(normal)), timezone.now())
        parts["query"].append((time.perf_counter() - started) * 1000)
        started = time.perf_counter()
        suppression.check("sms", addresses)
        parts["check() in all"].append((time.perf_counter() - started) * 1000)
    return {name: statistics.median(values) for name, values in parts.items()}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--rows", type=int, default=1_000_000, help="suppressions in the list (default 1,000,000)")
    parser.add_argument("--addresses", type=int, default=10_000, help="addresses per call (default 10,000)")
    parser.add_argument("--calls", type=int, default=20, help="timed calls (default 20), after one warm-up")
    parser.add_argument("--suppressed-share", type=float, default=0.1, help="share of each call on the list")
    parser.add_argument("--national-share", type=float, default=0.1, help="share typed '(555) 123-4567'")
    parser.add_argument("--email-share", type=float, default=0.1, help="share of the list that is email")
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--keep", action="store_true", help="keep the deployment's folder (logs)")
    args = parser.parse_args()

    workdir = Path(tempfile.mkdtemp(prefix="bench-suppression-"))
    env = AppEnv(workdir, name="bench_suppr")
    backend = "PostgreSQL" if env.admin_url else "SQLite"
    try:
        env.create()
        print(f"database: {backend}, fresh ({env.name}); loading {args.rows:,} suppressions ...", flush=True)
        active, listed, seconds = load(env, args.rows, args.email_share, args.seed)
        print(f"loaded in {seconds:.1f} s ({args.rows / seconds:,.0f} rows/s); {len(active):,} active SMS entries")
        url = env.start_web(workers=1, threads=1, front=False)
        token = env.api_token("bench")
        rng = random.Random(args.seed + 1)
        bodies = [
            payload(active, listed, args.addresses, args.suppressed_share, args.national_share, rng)
            for _ in range(args.calls + 1)
        ]
        load_before = os.getloadavg()[0]
        times: list[float] = []
        with httpx.Client(base_url=url, headers={"Authorization": f"Token {token}"}, timeout=60) as http:
            for i, addresses in enumerate(bodies):
                body = json.dumps({"channel": "sms", "addresses": addresses})
                started = time.perf_counter()
                response = http.post(
                    "/api/v1/suppressions/check/", content=body, headers={"Content-Type": "application/json"}
                )
                elapsed = (time.perf_counter() - started) * 1000
                response.raise_for_status()
                answer = response.json()
                if answer["checked"] != len(addresses) or answer["invalid"]:
                    print(f"unexpected answer: {answer['checked']} checked, {answer['invalid']} invalid")
                    return 1
                if i:  # the first call warms connections and caches
                    times.append(elapsed)
                    expected = int(args.addresses * args.suppressed_share)
                    assert answer["suppressed"] >= expected, (answer["suppressed"], expected)
        load_after = os.getloadavg()[0]
        parts = breakdown(env, bodies[1:])

        median, p95 = statistics.median(times), percentile(times, 0.95)
        print(
            f"\nPOST /api/v1/suppressions/check/, {args.addresses:,} addresses "
            f"({args.suppressed_share:.0%} suppressed, {args.national_share:.0%} national format) "
            f"against {args.rows:,} rows, {args.calls} calls over HTTP (granian, 1 worker, 1 thread):"
        )
        print(
            f"  time per call: min {min(times):.1f} ms, median {median:.1f} ms, p95 {p95:.1f} ms, "
            f"max {max(times):.1f} ms"
        )
        print(f"  ratio to the {BAR_MS:.0f} ms bar: median {median / BAR_MS:.2f}, p95 {p95 / BAR_MS:.2f}")
        cpus = os.cpu_count()
        print(f"  load average (1 min) before/after the calls: {load_before:.2f} / {load_after:.2f}, {cpus} CPUs")
        print("  where the time goes (median, in-process): " + ", ".join(f"{k} {v:.1f} ms" for k, v in parts.items()))
        verdict = "PASS" if p95 < BAR_MS else "FAIL"
        print(f"{verdict}: p95 {p95:.1f} ms {'<' if p95 < BAR_MS else '>='} {BAR_MS:.0f} ms")
        return 0 if verdict == "PASS" else 1
    finally:
        env.destroy()
        if args.keep:
            print(f"deployment folder kept: {workdir}")
        else:
            shutil.rmtree(workdir, ignore_errors=True)


if __name__ == "__main__":
    sys.exit(main())
