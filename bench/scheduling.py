"""Scheduling under webhook load: does CRM sync keep its pace while webhooks pour in? (bench/README.md)

1. Setup, not timed: a deployment as `make run` starts it (tests/apprunner.AppEnv): the front and granian, an
   inbox worker (``WORKER_QUEUES=inbox``), a worker for the CRM relay and the polls (``WORKER_QUEUES=crm,poll``),
   beat, and the fake CRM as its own process (``CRM_BACKEND=generic``); messages with CRM records, registered in
   the database. On PostgreSQL + Redis by default, or ``--embedded`` (SQLite and the filesystem broker).
2. The run: signed generic webhooks over HTTP at ``--rate`` receipts a second for ``--seconds``, each a status
   change of a message (queued, sent, delivered), so each makes one outbox change for the CRM. Every second it
   records each queue's length (Redis lists, or the filesystem broker's files).
3. After: waits for the outbox to drain, then prints the lag from each change (its outbox row, written in the
   receipt's processing transaction) to its first arrival at the fake CRM (p50/p95/p99/max), the receipt-to-change
   lag (webhook answered -> outbox row), relay and high-priority poll runs (and any discarded as expired), and the
   queue lengths over time.

    .venv/bin/python bench/scheduling.py --rate 300 --seconds 30
    .venv/bin/python bench/scheduling.py --embedded --rate 150
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import math
import os
import re
import shutil
import signal
import sys
import tempfile
import threading
import time
from collections import Counter
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
DEFAULT_DATABASE_URL = "postgres://postgres@127.0.0.1:5432/postgres"
DEFAULT_BROKER_URL = "redis://127.0.0.1:6379/0"
STEPS = ["queued", "sent", "delivered"]


def parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--rate", type=float, default=300.0, help="receipts a second (default 300)")
    parser.add_argument("--seconds", type=float, default=30.0, help="how long to send (default 30)")
    parser.add_argument("--embedded", action="store_true", help="SQLite and the filesystem broker")
    parser.add_argument("--records", type=int, default=2000, help="distinct CRM records (default 2000)")
    parser.add_argument("--clients", type=int, default=32, help="concurrent webhook senders (default 32)")
    parser.add_argument(
        "--timeout", type=float, help="seconds to wait for the backlog to drain (default TEST_READY_TIMEOUT, 300)"
    )
    parser.add_argument("--no-front", action="store_true", help="granian on the port itself, without the front")
    parser.add_argument("--keep-logs", action="store_true")
    return parser.parse_args()


def percentile(values: list[float], p: float) -> float:
    if not values:
        return math.nan
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, max(0, math.ceil(p / 100 * len(ordered)) - 1))]


def setup_messages(count: int, records: int) -> list[Any]:
    from receipts.models import Message

    rows = [
        Message(
            channel="sms",
            provider="generic",
            provider_message_id=f"load-{i:07d}",
            to=f"+1415{3000000 + i:07d}",
            crm_record_id=f"003LOAD{i % records:07d}",
        )
        for i in range(count)
    ]
    return Message.objects.bulk_create(rows, batch_size=2000)


class QueueWatch(threading.Thread):
    """Every second, the length of each of the deployment's queues."""

    def __init__(self, queues: list[str], broker_url: str, broker_dir: Path) -> None:
        super().__init__(daemon=True)
        self.queues, self.broker_url, self.broker_dir = queues, broker_url, broker_dir
        self.samples: list[tuple[float, dict[str, int]]] = []
        self.stop = threading.Event()

    def lengths(self) -> dict[str, int]:
        if self.broker_url.startswith("redis"):
            import redis

            client = redis.Redis.from_url(self.broker_url)
            return {q: int(client.llen(q)) for q in self.queues}
        folder = self.broker_dir / "queue"
        files = [p.name for p in folder.glob("*.msg")] if folder.exists() else []
        return {q: sum(1 for f in files if f.endswith(f".{q}.msg")) for q in self.queues}

    def run(self) -> None:
        start = time.monotonic()
        while not self.stop.is_set():
            with contextlib.suppress(Exception):
                self.samples.append((time.monotonic() - start, self.lengths()))
            self.stop.wait(1.0)


async def send_webhooks(
    url: str, auth: tuple[str, str], messages: list[Any], rate: float, seconds: float, clients: int
) -> dict:
    import httpx

    total = int(rate * seconds)
    answers: Counter = Counter()
    answered_at: dict[str, float] = {}
    queue: asyncio.Queue = asyncio.Queue()
    start = time.monotonic()

    async def sender(client: httpx.AsyncClient) -> None:
        while True:
            item = await queue.get()
            if item is None:
                return
            message, status = item
            body = json.dumps(
                {"id": message.provider_message_id, "status": status, "timestamp": time.strftime("%Y-%m-%dT%H:%M:%SZ")}
            )
            try:
                response = await client.post(url, content=body, headers={"Content-Type": "application/json"}, auth=auth)
                answers[response.status_code] += 1
                answered_at[f"{message.pk}:{status}"] = time.time()
            except httpx.HTTPError as exc:
                answers[type(exc).__name__] += 1

    async with httpx.AsyncClient(timeout=30, limits=httpx.Limits(max_connections=clients)) as client:
        workers = [asyncio.create_task(sender(client)) for _ in range(clients)]
        behind = 0.0
        for i in range(total):
            due = start + i / rate
            now = time.monotonic()
            if due > now:
                await asyncio.sleep(due - now)
            else:
                behind = max(behind, now - due)
            await queue.put((messages[i % len(messages)], STEPS[min(i // len(messages), len(STEPS) - 1)]))
        for _ in workers:
            await queue.put(None)
        await asyncio.gather(*workers)
    took = time.monotonic() - start
    return {"answers": answers, "took": took, "behind": behind, "answered_at": answered_at, "total": total}


def main() -> int:
    args = parse_args()
    if args.embedded:
        for name in ("DATABASE_URL", "CELERY_BROKER_URL", "REDIS_URL"):
            os.environ.pop(name, None)
    else:
        os.environ["DATABASE_URL"] = os.environ.get("DATABASE_URL") or DEFAULT_DATABASE_URL
        os.environ["CELERY_BROKER_URL"] = os.environ.get("CELERY_BROKER_URL") or DEFAULT_BROKER_URL
        os.environ["REDIS_URL"] = os.environ.get("REDIS_URL") or os.environ["CELERY_BROKER_URL"]
    sys.path.insert(0, str(ROOT))
    from tests.apprunner import BASIC_PASSWORD, BASIC_USER, READY_TIMEOUT, AppEnv, free_port, wait_until

    def on_term(signum: int, frame: object) -> None:
        raise KeyboardInterrupt

    signal.signal(signal.SIGTERM, on_term)
    workdir = Path(tempfile.mkdtemp(prefix="bench-sched-"))
    env = AppEnv(workdir, name="benchsched")
    passed = False
    try:
        import httpx

        env.create()
        crm_port = free_port()
        env._spawn("fake-crm", [sys.executable, "manage.py", "fake_crm", "--port", str(crm_port)])
        crm_url = f"http://127.0.0.1:{crm_port}"
        wait_until(lambda: httpx.get(f"{crm_url}/_fake/summary", timeout=1).status_code == 200, "fake CRM")
        settings = {
            "CRM_BACKEND": "generic",
            "CRM_URL": f"{crm_url}/crm/changes",
            "CRM_SIGNING_SECRET": "fake-crm-signing-secret",
            "SWEEP_INTERVAL": "5",
        }
        web = env.start_web(workers=3, threads=4, front=not args.no_front, **settings)
        info = ["--loglevel", "INFO"]
        for label, queues in (("worker-inbox", "inbox"), ("worker-sync", "crm,poll")):
            argv = [str(Path(sys.executable).parent / "celery"), "-A", "config", "worker", "--concurrency", "2"]
            argv += ["--without-gossip", "--without-mingle", "--without-heartbeat", "--hostname", f"{label}@%h", *info]
            env._spawn(label, argv, WORKER_QUEUES=queues, LOG_LEVEL="INFO", **settings)
        env.start_beat(**settings)

        os.environ.update(
            {
                "DATABASE_URL": env.database_url,
                "SECRET_KEY": "bench-not-secret",
                "VAR_DIR": str(workdir / "var"),
                "CELERY_QUEUE": env.name,
                "LOG_LEVEL": "WARNING",
            }
        )
        os.environ.setdefault("DJANGO_SETTINGS_MODULE", "config.settings")
        import django

        django.setup()
        from django.db import connection

        from crm_sync.models import OutboxMessage

        total = int(args.rate * args.seconds)
        messages = setup_messages(math.ceil(total / len(STEPS)), args.records)
        connection.close()
        mode = "SQLite + filesystem broker" if args.embedded else "PostgreSQL + Redis"
        server = "granian 3x4 alone" if args.no_front else "front + granian 3x4"
        print(f"setup: {mode}, {server}, inbox worker x2, sync worker x2, beat, fake CRM;")
        print(f"       {len(messages)} messages on {args.records} CRM records")
        queues = [env.name, f"{env.name}.crm", f"{env.name}.poll"]
        watch = QueueWatch(queues, os.environ.get("CELERY_BROKER_URL", ""), workdir / "var" / "broker")
        watch.start()
        time.sleep(2.0)
        print(f"run: {total} signed generic webhooks at {args.rate:.0f}/s for {args.seconds:.0f} s")
        sent = asyncio.run(
            send_webhooks(
                f"{web}/webhooks/generic/",
                (BASIC_USER, BASIC_PASSWORD),
                messages,
                args.rate,
                args.seconds,
                args.clients,
            )
        )
        offered = sent["total"] / sent["took"]
        print(f"run: {sent['total']} sent in {sent['took']:.1f} s ({offered:.0f}/s); answers {dict(sent['answers'])}")
        if sent["behind"] > 0.5:
            print(f"  the sender fell up to {sent['behind']:.1f} s behind its schedule")

        deadline = time.monotonic() + (args.timeout or READY_TIMEOUT)
        expected = sent["answers"].get(200, 0)
        while time.monotonic() < deadline:
            made = OutboxMessage.objects.count()
            unsent = OutboxMessage.objects.exclude(state__in=["sent", "skipped"]).count()
            if made >= expected and unsent == 0:
                break
            time.sleep(0.5)
        watch.stop.set()
        rows = {
            key: (created.timestamp(), message_id, payload.get("status"))
            for key, created, message_id, payload in OutboxMessage.objects.values_list(
                "idempotency_key", "created_at", "message_id", "payload"
            )
        }
        unsent = OutboxMessage.objects.exclude(state__in=["sent", "skipped"]).count()
        connection.close()
        received = httpx.get(f"{crm_url}/_fake/changes", timeout=60).json()
        first: dict[str, float] = {}
        for change in received:
            first.setdefault(change["key"], change["received_at"])
        crm_lags = [first[k] - created for k, (created, _, _) in rows.items() if k in first]
        ingest_lags = [
            created - sent["answered_at"][f"{mid}:{status}"]
            for _, (created, mid, status) in rows.items()
            if f"{mid}:{status}" in sent["answered_at"]
        ]
        logs = {name: (workdir / f"{name}.log").read_text() for name in ("worker-inbox", "worker-sync")}
        pattern = (
            r"Task (crm_sync\.relay_outbox|receipts\.poll_high_priority|receipts\.drain_inbox)\[[^\]]+\] succeeded"
        )
        runs = Counter(re.findall(pattern, logs["worker-sync"] + logs["worker-inbox"]))
        discarded = sum(len(re.findall(r"Discarding revoked task", text)) for text in logs.values())

        print()
        print(f"outbox: {len(rows)} changes for {expected} accepted receipts; unsent at the end: {unsent}")
        print(
            f"receipt answered -> outbox change: p50 {percentile(ingest_lags, 50):.2f} s, "
            f"p95 {percentile(ingest_lags, 95):.2f} s, p99 {percentile(ingest_lags, 99):.2f} s"
        )
        print(
            f"outbox change -> CRM: p50 {percentile(crm_lags, 50):.2f} s, p95 {percentile(crm_lags, 95):.2f} s, "
            f"p99 {percentile(crm_lags, 99):.2f} s, max {max(crm_lags, default=math.nan):.2f} s"
        )
        print(f"task runs: {dict(runs)}; discarded as expired/revoked: {discarded}")
        print("queue lengths (s: inbox / crm / poll):")
        step = max(1, len(watch.samples) // 15)
        for at, lengths in watch.samples[::step]:
            print(f"  {at:5.0f}: " + " / ".join(str(lengths.get(q, 0)) for q in queues))
        peak = {q: max((s.get(q, 0) for _, s in watch.samples), default=0) for q in queues}
        print("peak queue lengths: " + ", ".join(f"{q.removeprefix(env.name) or 'inbox'} {n}" for q, n in peak.items()))
        with open("/proc/loadavg") as f:
            print(f"load average at the end: {' '.join(f.read().split()[:3])} on {os.cpu_count()} cores")
        reached = offered >= 0.95 * args.rate
        passed = unsent == 0 and discarded == 0 and percentile(crm_lags, 99) < 5.0 and len(first) >= len(rows)
        print(f"verdict: {'PASS' if passed else 'FAIL'} (nothing discarded, every change at the CRM, p99 lag < 5 s)")
        if not reached:
            print(f"  at {offered:.0f} receipts/s, not the {args.rate:.0f}/s asked for: this machine's webhook ceiling")
    except KeyboardInterrupt:
        print("\ninterrupted; tearing down", file=sys.stderr)
        return 130
    finally:
        with contextlib.suppress(KeyboardInterrupt):
            signal.signal(signal.SIGINT, signal.SIG_IGN)
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
