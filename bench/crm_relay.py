"""CRM relay benchmark: status changes through the outbox relay to the fake CRM, on PostgreSQL and Redis.

What it does (see bench/README.md, "crm_relay.py"):

1. Setup, not timed: an isolated deployment (tests/apprunner.AppEnv: its own PostgreSQL database and Celery
   queue on Redis), the fake CRM as its own process (``manage.py fake_crm``), one Celery worker and beat with
   ``CRM_BACKEND=generic`` (or ``salesforce``) pointing at it, and the messages the changes are about.
2. The run: this process makes status changes at ``--rate`` a second for ``--seconds``. With ``--source
   pipeline`` (the default) each change is a real receipt: an inbox row (as a webhook would store it) processed
   by ``receipts.actions.process.process_due``, whose status change the crm_sync receiver writes to the outbox in
   the same transaction. With ``--source events`` the changes are published directly (the outbox and relay alone).
   The relay is the deployed one: the beat entry ``crm-relay`` running ``crm_sync.relay_outbox``.
3. After the run: waits until every outbox row is sent, then reads what the fake CRM received and joins it
   with the outbox: changes/s delivered, lag from the change (outbox ``created_at``, inside the writing
   transaction) to its first arrival at the CRM (p50, p95, p99, max), duplicates, losses, CPU per component.

Run from the project root with its virtualenv::

    .venv/bin/python bench/crm_relay.py                  # 1000 changes/s for 30 s
    .venv/bin/python bench/crm_relay.py --rate 2000 --seconds 20 --source events
    .venv/bin/python bench/crm_relay.py --help
"""

from __future__ import annotations

import argparse
import contextlib
import json
import math
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from collections import Counter
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

ROOT = Path(__file__).resolve().parent.parent
DEFAULT_DATABASE_URL = "postgres://postgres@127.0.0.1:5432/postgres"
DEFAULT_BROKER_URL = "redis://127.0.0.1:6379/0"
STEPS = ["queued", "sent", "delivered"]
CLOCK_TICKS = os.sysconf("SC_CLK_TCK")


def parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--rate", type=float, default=1000.0, help="status changes a second (default 1000)")
    parser.add_argument("--seconds", type=float, default=30.0, help="how long to make changes (default 30)")
    parser.add_argument("--source", choices=["events", "pipeline"], default="events")
    parser.add_argument("--backend", choices=["generic", "salesforce"], default="generic")
    parser.add_argument("--records", type=int, default=2000, help="distinct CRM records (default 2000)")
    parser.add_argument("--worker-concurrency", type=int, default=2)
    parser.add_argument("--crm-latency", type=float, default=0.0, help="seconds the fake CRM takes to answer")
    parser.add_argument("--crm-throttle", type=float, default=0.0, help="share of CRM requests answered 429")
    parser.add_argument(
        "--timeout", type=float, help="seconds to wait for the backlog to drain (default TEST_READY_TIMEOUT, 300)"
    )
    parser.add_argument("--database-url", default="", help=f"admin connection (default {DEFAULT_DATABASE_URL})")
    parser.add_argument("--broker-url", default="", help=f"default {DEFAULT_BROKER_URL}")
    parser.add_argument("--setting", action="append", default=[], metavar="NAME=VALUE", help="extra app setting")
    parser.add_argument("--keep-logs", action="store_true")
    return parser.parse_args()


# --- CPU accounting (Linux /proc) ------------------------------------------------------------------------


def cpu_table() -> dict[int, tuple[int, str, float]]:
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
        table[int(entry)] = (int(fields[1]), title, (int(fields[11]) + int(fields[12])) / CLOCK_TICKS)
    return table


def cpu_by_component(roots: dict[int, str], database: str) -> Counter:
    table = cpu_table()
    usage: Counter = Counter()
    for pid, (_, title, cpu) in table.items():
        if pid == os.getpid():
            label = "bench (change producer)"
        elif title.startswith("postgres"):
            label = "postgresql (this db)" if f" {database} " in title else "postgresql (rest of server)"
        elif title.startswith("redis-server"):
            label = "redis"
        else:
            label, cursor, hops = "other processes", pid, 0
            while cursor > 1 and hops < 64:
                if cursor in roots:
                    label = roots[cursor]
                    break
                cursor, hops = table.get(cursor, (0, "", 0.0))[0], hops + 1
        usage[label] += cpu
    return usage


# --- producing changes -----------------------------------------------------------------------------------


def setup_messages(count: int, records: int) -> list[Any]:
    from receipts.models import Message

    rows = [
        Message(
            channel="sms",
            provider="generic",
            provider_message_id=f"bench-{i:07d}",
            to=f"+1415{2000000 + i:07d}",
            crm_record_id=f"003BENCH{i % records:07d}",
        )
        for i in range(count)
    ]
    return Message.objects.bulk_create(rows, batch_size=2000)


class Producer:
    """Makes the i-th change at ``i / rate`` seconds after the start, in small transactions."""

    def __init__(self, source: str, messages: list[Any], rate: float, seconds: float) -> None:
        self.source, self.messages, self.rate, self.seconds = source, messages, rate, seconds
        self.total = int(rate * seconds)
        self.produced = 0
        self.behind_max = 0.0

    def change(self, i: int) -> tuple[Any, str, str]:
        message = self.messages[i % len(self.messages)]
        step = i // len(self.messages)
        return message, STEPS[step], (STEPS[step - 1] if step else "pending")

    def run(self) -> float:
        start = time.perf_counter()
        while self.produced < self.total:
            elapsed = time.perf_counter() - start
            due = min(self.total, int(elapsed * self.rate) + 1) - self.produced
            if due <= 0:
                time.sleep(min(0.01, (self.produced + 1) / self.rate - elapsed))
                continue
            self.behind_max = max(self.behind_max, (due - 1) / self.rate)
            batch = [self.change(i) for i in range(self.produced, self.produced + min(due, 500))]
            self.pipeline(batch) if self.source == "pipeline" else self.events(batch)
            self.produced += len(batch)
        return time.perf_counter() - start

    def events(self, batch: list[tuple[Any, str, str]]) -> None:
        from django.db import transaction
        from django.utils import timezone

        from receipts.events import DomainEvent, Kind, publish
        from receipts.models import Message

        now = timezone.now()
        with transaction.atomic():
            for status in {s for _, s, _ in batch}:
                ids = [m.pk for m, s, _ in batch if s == status]
                Message.objects.filter(pk__in=ids).update(status=status, status_at=now, updated_at=now)
            publish(
                [
                    DomainEvent(
                        Kind.STATUS_CHANGED,
                        occurred_at=now,
                        payload={
                            "message_id": m.pk,
                            "provider": m.provider,
                            "provider_message_id": m.provider_message_id,
                            "channel": m.channel,
                            "status": status,
                            "previous_status": previous,
                            "status_at": now.isoformat(),
                            "assumed": False,
                            "failure_category": "",
                            "retryable": False,
                            "provider_code": status,
                            "needs_review": False,
                            "review_reason": "",
                            "campaign": None,
                            "crm_record_id": m.crm_record_id,
                            "source": "webhook",
                        },
                        message_id=m.pk,
                        crm_record_id=m.crm_record_id,
                    )
                    for m, status, previous in batch
                ]
            )

    def pipeline(self, batch: list[tuple[Any, str, str]]) -> None:
        from django.utils import timezone

        from receipts.actions import process
        from receipts.models import ReceiptEvent
        from receipts.normalized import dedupe_key
        from receipts.providers.registry import PROVIDERS

        provider = PROVIDERS["generic"]
        rows = []
        now = timezone.now()
        for message, status, _ in batch:
            body = json.dumps(
                {"id": message.provider_message_id, "status": status, "timestamp": now.isoformat()}
            ).encode()
            receipts = provider.parse(body, "application/json")
            rows.append(
                ReceiptEvent(
                    provider="generic",
                    dedupe_key=dedupe_key(receipts),
                    body=body.decode(),
                    content_type="application/json",
                )
            )
        ReceiptEvent.objects.bulk_create(rows)  # what the webhook view stores, one row per receipt
        while process.process_due(limit=500):
            pass


# --- the run ---------------------------------------------------------------------------------------------


def percentile(values: list[float], p: float) -> float:
    if not values:
        return math.nan
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, max(0, math.ceil(p / 100 * len(ordered)) - 1))]


def main() -> int:
    args = parse_args()
    os.environ["DATABASE_URL"] = args.database_url or os.environ.get("DATABASE_URL") or DEFAULT_DATABASE_URL
    os.environ["CELERY_BROKER_URL"] = args.broker_url or os.environ.get("CELERY_BROKER_URL") or DEFAULT_BROKER_URL
    for url in (os.environ["DATABASE_URL"], os.environ["CELERY_BROKER_URL"]):
        if urlsplit(url).hostname not in ("127.0.0.1", "localhost", "::1"):
            raise SystemExit(f"refusing to run against a non-local service: {url}")
    if not os.environ["DATABASE_URL"].startswith(("postgres://", "postgresql://")):
        raise SystemExit("the benchmark runs on PostgreSQL (DATABASE_URL=postgres://...)")
    sys.path.insert(0, str(ROOT))
    from tests.apprunner import READY_TIMEOUT, AppEnv, free_port, wait_until

    def on_term(signum: int, frame: object) -> None:
        raise KeyboardInterrupt

    signal.signal(signal.SIGTERM, on_term)
    workdir = Path(tempfile.mkdtemp(prefix="bench-crm-"))
    env = AppEnv(workdir, name="benchcrm")
    passed = False
    try:
        import httpx

        t = time.perf_counter()
        env.create()
        crm_port = free_port()
        fake_argv = [sys.executable, "manage.py", "fake_crm", "--port", str(crm_port)]
        fake_argv += ["--latency", str(args.crm_latency), "--throttle", str(args.crm_throttle)]
        env._spawn("fake-crm", fake_argv)
        crm_url = f"http://127.0.0.1:{crm_port}"
        wait_until(lambda: httpx.get(f"{crm_url}/_fake/summary", timeout=1).status_code == 200, "fake CRM")
        crm_settings = {
            "CRM_BACKEND": args.backend,
            "CRM_URL": f"{crm_url}/crm/changes",
            "CRM_SIGNING_SECRET": "fake-crm-signing-secret",
            "SALESFORCE_TOKEN_URL": f"{crm_url}/services/oauth2/token",
            "SALESFORCE_CLIENT_ID": "fake-client-id",
            "SALESFORCE_CLIENT_SECRET": "fake-client-secret",
            "LOG_LEVEL": "WARNING",
        }
        for item in args.setting:
            name, _, value = item.partition("=")
            crm_settings[name] = value
        worker = env.start_worker(concurrency=args.worker_concurrency, **crm_settings)
        beat = env.start_beat(**crm_settings)

        # This process makes the changes: Django on the deployment's database.
        os.environ.update(
            {
                "DATABASE_URL": env.database_url,
                "SECRET_KEY": "bench-not-secret",
                "VAR_DIR": str(workdir / "var"),
                "CELERY_QUEUE": env.name,
                "LOG_LEVEL": "WARNING",
                "CRM_BACKEND": "none",
            }
        )
        os.environ.setdefault("DJANGO_SETTINGS_MODULE", "config.settings")
        import django

        django.setup()
        from django.db import connection

        from crm_sync.models import OutboxMessage

        per_message = len(STEPS)
        total = int(args.rate * args.seconds)
        messages = setup_messages(math.ceil(total / per_message), args.records)
        print(
            f"setup: database {env.name}, fake CRM at {crm_url} ({args.backend}), celery worker concurrency"
            f" {args.worker_concurrency} + beat, {len(messages)} messages on {args.records} CRM records"
            f" ({time.perf_counter() - t:.1f} s)"
        )
        roots = {worker.pid: "celery worker (relay)", beat.pid: "celery beat"}
        roots |= {p.pid: "fake CRM" for p, _ in env.processes if "fake_crm" in " ".join(map(str, p.args))}
        time.sleep(1.0)
        cpu_before = cpu_by_component(roots, env.name)
        mode = "real receipts through the pipeline" if args.source == "pipeline" else "published events"
        print(f"run: {total} status changes at {args.rate:.0f}/s for {args.seconds:.0f} s ({mode})")
        producer = Producer(args.source, messages, args.rate, args.seconds)
        run_start = time.time()
        took = producer.run()
        produced_at = time.time()
        cpu_produced = cpu_by_component(roots, env.name)
        print(f"run: {producer.produced} changes made in {took:.1f} s ({producer.produced / took:.0f}/s offered)")
        if producer.behind_max > 0.5:
            print(f"  the producer fell up to {producer.behind_max:.1f} s behind its schedule")

        def unsent() -> int:
            return OutboxMessage.objects.exclude(state__in=["sent", "skipped"]).count()

        deadline = time.monotonic() + (args.timeout or READY_TIMEOUT)
        while (left := unsent()) and time.monotonic() < deadline:
            time.sleep(0.25)
        drained_at = time.time()
        cpu_after = cpu_by_component(roots, env.name)
        connection.close()

        rows = {
            key: created.timestamp()
            for key, created in OutboxMessage.objects.values_list("idempotency_key", "created_at")
        }
        states = Counter(OutboxMessage.objects.values_list("state", flat=True))
        connection.close()
        received = httpx.get(f"{crm_url}/_fake/changes", timeout=60).json()
        summary = httpx.get(f"{crm_url}/_fake/summary", timeout=10).json()
        first_arrival: dict[str, float] = {}
        arrivals: Counter = Counter()
        for change in received:
            arrivals[change["key"]] += 1
            first_arrival.setdefault(change["key"], change["received_at"])
        if args.backend == "salesforce":
            print("note: Salesforce upserts carry no keys; lag and losses are read from the outbox's sent_at")
            sent = dict(OutboxMessage.objects.values_list("idempotency_key", "sent_at"))
            first_arrival = {k: v.timestamp() for k, v in sent.items() if v}
            arrivals = Counter(dict.fromkeys(first_arrival, 1))
        lags = [first_arrival[k] - created for k, created in rows.items() if k in first_arrival]
        lost = [k for k in rows if k not in first_arrival]
        duplicated = sum(1 for n in arrivals.values() if n > 1)
        first_created = min(rows.values()) if rows else run_start
        last_arrival = max(first_arrival.values()) if first_arrival else produced_at
        delivered_rate = len(first_arrival) / max(last_arrival - first_created, 1e-9)

        print()
        print(f"outbox rows: {len(rows)} {dict(states)}" + (f"; {left} still unsent after the timeout" if left else ""))
        print(f"CRM: {summary['requests']} requests {summary['by_status']}, {len(first_arrival)} distinct changes")
        print(f"changes/s delivered: {delivered_rate:.0f} (first change made -> last change at the CRM)")
        print(
            f"lag change -> CRM: p50 {percentile(lags, 50):.2f} s, p95 {percentile(lags, 95):.2f} s,"
            f" p99 {percentile(lags, 99):.2f} s, max {max(lags, default=math.nan):.2f} s"
        )
        print(f"drained {drained_at - produced_at:.1f} s after the last change was made")
        print(f"lost: {len(lost)}; changes that arrived more than once: {duplicated}")
        for title, before, after in (
            ("CPU seconds while changes were made", cpu_before, cpu_produced),
            ("CPU seconds after, until drained", cpu_produced, cpu_after),
        ):
            used = {k: after[k] - before.get(k, 0.0) for k in after if after[k] - before.get(k, 0.0) > 0.05}
            print(f"{title}: " + ", ".join(f"{k} {v:.1f}" for k, v in sorted(used.items(), key=lambda kv: -kv[1])))
        with open("/proc/loadavg") as f:
            print(f"load average at the end: {' '.join(f.read().split()[:3])} on {os.cpu_count()} cores")

        rate_ok = producer.produced / took >= 0.98 * args.rate and delivered_rate >= 0.98 * args.rate
        passed = not lost and not left and rate_ok and percentile(lags, 99) < 5.0 and args.rate >= 1000
        print(
            f"verdict: {'PASS' if passed else 'FAIL'} against the bar (>= 1000 changes/s sustained, p99 lag < 5 s,"
            " nothing lost)"
        )
    except KeyboardInterrupt:
        print("\ninterrupted; tearing down", file=sys.stderr)
        return 130
    except subprocess.CalledProcessError as exc:
        print(f"setup failed: {' '.join(map(str, exc.cmd))}\n{(exc.stderr or '')[-3000:]}", file=sys.stderr)
        return 2
    finally:
        with contextlib.suppress(KeyboardInterrupt):
            signal.signal(signal.SIGINT, signal.SIG_IGN)
            signal.signal(signal.SIGTERM, signal.SIG_IGN)
            with contextlib.suppress(Exception):
                from django.db import connections

                connections.close_all()
            env.destroy()
            if args.keep_logs or not passed:
                print(f"logs kept in {workdir}")
            else:
                shutil.rmtree(workdir, ignore_errors=True)
    return 0 if passed else 1


if __name__ == "__main__":
    sys.exit(main())
