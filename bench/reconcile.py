"""Bulk reconciliation benchmark: thousands of in-flight Genesys Cloud messages reconciled against the simulator.

What it does (see bench/README.md):

1. Setup, not timed: an isolated database (tests/apprunner.AppEnv: a fresh SQLite file, or a fresh PostgreSQL
   database when ``DATABASE_URL`` points at PostgreSQL), the provider simulator (a real HTTP server on
   127.0.0.1, enforcing Genesys Cloud's 300 requests a minute per token), ``N`` messages the simulator has sent
   (preloaded, settled with its default outcome mix) and the same ``N`` registered as in flight (bulk priority).
2. The timed run: one bulk reconciliation round, ``receipts.polling.reconcile``, exactly as the beat task runs
   it: the real client (shared token bucket and circuit breaker: Redis when ``REDIS_URL`` is set, else the
   embedded SQLite file), an analytics conversation details job paged with its cursor, the answers stored in the
   inbox as poll events.
3. Figures, read from the simulator's own request log: provider requests, requests per reconciled message,
   time to reconcile, requests the provider refused for exceeding its limit, and how long calls waited on our
   own bucket. ``--process`` also runs the answers through the status machine and times it.

Run from the project root with its virtualenv::

    .venv/bin/python bench/reconcile.py                      # 10,000 and 100,000 messages
    .venv/bin/python bench/reconcile.py --sizes 10000 --process
    .venv/bin/python bench/reconcile.py --help
"""

from __future__ import annotations

import argparse
import os
import shutil
import sys
import tempfile
import time
import uuid
from pathlib import Path

import httpx

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from tests.apprunner import AppEnv  # noqa: E402 - after the path is set

BAR_REQUESTS_PER_MESSAGE = 0.01


def parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--sizes", default="10000,100000", help="in-flight message counts, comma-separated")
    parser.add_argument("--process", action="store_true", help="also run the answers through the status machine")
    parser.add_argument("--page-size", type=int, default=1000, help="analytics results page size")
    parser.add_argument("--rate-limit", type=int, default=300, help="the simulator's (and our) limit a minute")
    parser.add_argument("--keep", action="store_true", help="keep the temporary database and logs")
    return parser.parse_args()


def setup_django(env: AppEnv, sim_url: str, args: argparse.Namespace) -> None:
    os.environ.update(
        {
            "DJANGO_SETTINGS_MODULE": "config.settings",
            "SECRET_KEY": "bench-not-secret",
            "DATABASE_URL": env.database_url,
            "CELERY_BROKER_URL": env.base_env["CELERY_BROKER_URL"],
            "CELERY_QUEUE": env.name,  # drain requests go to a queue of their own; --process drains inline
            "VAR_DIR": str(env.workdir / "var"),
            "GENESYS_CLOUD_BASE_URL": sim_url,
            "GENESYS_CLOUD_LOGIN_URL": sim_url,
            "GENESYS_CLOUD_CLIENT_ID": f"bench-{uuid.uuid4().hex[:8]}",
            "GENESYS_CLOUD_CLIENT_SECRET": "bench-secret",
            "GENESYS_RATE_LIMIT_PER_MINUTE": str(args.rate_limit),
            "POLL_ANALYTICS_PAGE_SIZE": str(args.page_size),
            "POLL_ANALYTICS_JOB_POLL_INTERVAL": "0.5",
            "LOG_LEVEL": "WARNING",
        }
    )
    import django

    django.setup()


def run_size(n: int, sim_url: str, args: argparse.Namespace) -> dict:
    from receipts import polling
    from receipts.actions import process
    from receipts.models import Message, MessageEvent, ReceiptEvent
    from receipts.providers.genesys_cloud.client import client

    httpx.post(f"{sim_url}/_sim/reset", json={"messages": True}, timeout=60)
    t = time.perf_counter()
    answer = httpx.post(
        f"{sim_url}/_sim/messages",
        json={"provider": "genesys_cloud", "channel": "sms", "count": n, "age_seconds": 120},
        timeout=600,
    ).json()
    sims = answer["messages"]
    rows = [
        Message(
            channel="sms",
            provider="genesys_cloud",
            provider_message_id=s["id"],
            conversation_id=s["conversationId"],
            to=s["to"],
            priority="bulk",
            status="sent",
        )
        for s in sims
    ]
    Message.objects.bulk_create(rows, batch_size=2000)
    print(f"  setup: {n} messages preloaded and registered in {time.perf_counter() - t:.1f}s (not timed)")

    genesys = client()
    genesys.access_token()  # the token is not the reconciliation's cost
    before = genesys.limits.counters()
    httpx.post(f"{sim_url}/_sim/reset", timeout=30)
    started = time.perf_counter()
    result = polling.reconcile(genesys)
    elapsed = time.perf_counter() - started
    stats = httpx.get(f"{sim_url}/_sim/stats", timeout=30).json()
    after = genesys.limits.counters()

    api = {k: v for k, v in stats["requests"]["by_endpoint"].items() if "/api/v2/" in k}
    requests = sum(v["total"] for v in api.values())
    figures = {
        "messages": n,
        "answered": result.answered,
        "handed_on": result.handed_on,
        "requests": requests,
        "per_message": requests / max(1, result.answered),
        "seconds": elapsed,
        "over_limit": stats["faults"].get("rate_limited", 0),
        "limiter_waits": after.get("limiter_waits", 0) - before.get("limiter_waits", 0),
        "stored": result.accepted,
        "stopped": result.stopped,
        "by_endpoint": {k: v["total"] for k, v in api.items()},
    }
    if args.process:
        t = time.perf_counter()
        while process.process_due(limit=500):
            pass
        figures["process_seconds"] = time.perf_counter() - t
    MessageEvent.objects.all().delete()
    ReceiptEvent.objects.all().delete()
    Message.objects.all().delete()
    return figures


def main() -> int:
    args = parse_args()
    sizes = [int(s) for s in args.sizes.split(",") if s.strip()]
    workdir = Path(tempfile.mkdtemp(prefix="bench-reconcile-"))
    env = AppEnv(workdir, name="bench_reconcile")
    from simulator import SimulatorServer

    sim = SimulatorServer(seed=42, push=False, rate_limit_per_minute=args.rate_limit, analytics_page_max=1000)
    ok = True
    try:
        env.create()
        sim.start()
        setup_django(env, sim.url, args)
        from django.db import connection

        store = "Redis" if os.environ.get("REDIS_URL") else "embedded SQLite file"
        print(f"database: {connection.vendor}; shared limits: {store}; provider limit {args.rate_limit}/min")
        for n in sizes:
            print(f"\n== {n:,} in-flight messages")
            f = run_size(n, sim.url, args)
            print(f"  answered:                    {f['answered']:,} of {f['messages']:,} ({f['stored']:,} stored)")
            print(f"  failures handed on:          {f['handed_on']:,} (to the per-message tier, for their reason)")
            print(f"  provider requests:           {f['requests']}")
            for endpoint, count in sorted(f["by_endpoint"].items()):
                print(f"      {count:5d}  {endpoint}")
            print(f"  requests per message:        {f['per_message']:.5f}  (bar: <= {BAR_REQUESTS_PER_MESSAGE})")
            print(f"  time to reconcile:           {f['seconds']:.1f}s")
            print(f"  refused for the limit (429): {f['over_limit']}")
            print(f"  waits on our own bucket:     {f['limiter_waits']}")
            if "process_seconds" in f:
                print(f"  status machine (inline):     {f['process_seconds']:.1f}s")
            if f["stopped"]:
                print(f"  STOPPED: {f['stopped']}")
            passed = (
                f["per_message"] <= BAR_REQUESTS_PER_MESSAGE
                and f["over_limit"] == 0
                and f["answered"] + f["handed_on"] == n
                and not f["stopped"]
            )
            ok &= passed
            print(f"  verdict:                     {'PASS' if passed else 'FAIL'}")
    finally:
        sim.stop()
        env.destroy()
        if args.keep:
            print(f"kept {workdir}")
        else:
            shutil.rmtree(workdir, ignore_errors=True)
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
