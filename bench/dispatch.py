"""Campaign dispatch at the providers' limits: how close to each limit do sends go, and never over it?

1. Setup, not timed: a deployment as `make run` starts it (tests/apprunner.AppEnv: the front and granian, a sending
   worker with ``WORKER_QUEUES=send``, a worker for the rest, beat) on PostgreSQL + Redis (or ``--embedded``), the
   provider simulator in this process with a send limit per provider (its 429 is the proof of "over the limit"),
   and ``--messages`` contacts imported through ``POST /api/v1/contacts/``.
2. The run: one campaign per provider, each started through the API at the same moment. The app's buckets are set
   to the simulator's limits (``SEND_RATE_*``), with ``SEND_RATE_HEADROOM`` kept free.
3. After: per provider, sends a second from the first to the last accepted send, as a ratio of the limit; the
   simulator's peak in any one second and its refusals for the limit (goal: 0); the time from the start call to
   the first send; duplicates at the provider (the same contact twice: goal 0) and lost sends (a contact of the
   audience that never reached the provider: goal 0); CPU per message, of the sending worker and of the machine.

    .venv/bin/python bench/dispatch.py                        # 100,000 messages (SMS Aggregation, Webex, Genesys Cloud)
    .venv/bin/python bench/dispatch.py --messages 10000 --rate genesys_sms=50 --rate webex_connect=50
    .venv/bin/python bench/dispatch.py --embedded --messages 5000
"""

from __future__ import annotations

import argparse
import contextlib
import os
import shutil
import signal
import sys
import tempfile
import time
from collections import Counter
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
DEFAULT_DATABASE_URL = "postgres://postgres@127.0.0.1:5432/postgres"
DEFAULT_BROKER_URL = "redis://127.0.0.1:6379/0"
# Sends a second. Genesys Cloud's is its API limit, 300 requests a minute per token; the others are contract figures.
DEFAULT_RATES = {"genesys_sms": 80.0, "webex_connect": 80.0, "genesys_cloud": 5.0}
# Each provider's share of the messages: Genesys Cloud's 5 a second would take hours for a third of 100,000.
DEFAULT_SHARES = {"genesys_sms": 0.49, "webex_connect": 0.49, "genesys_cloud": 0.02}
CLOCK_TICKS = os.sysconf("SC_CLK_TCK")


def parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--messages", type=int, default=100_000, help="contacts, one message each (default 100000)")
    parser.add_argument(
        "--rate", action="append", default=[], metavar="PROVIDER=N", help="a provider's limit, sends a second"
    )
    parser.add_argument("--headroom", type=float, default=0.04, help="SEND_RATE_HEADROOM (default 0.04)")
    parser.add_argument("--worker-concurrency", type=int, default=4, help="sending worker processes (default 4)")
    parser.add_argument("--loops", type=int, default=2, help="SEND_LOOPS_PER_PROVIDER (default 2)")
    parser.add_argument("--embedded", action="store_true", help="SQLite and the filesystem broker")
    parser.add_argument("--timeout", type=float, default=7200.0, help="seconds to wait for the campaigns")
    parser.add_argument("--keep-logs", action="store_true")
    return parser.parse_args()


# --- CPU ------------------------------------------------------------------------------------------------------


def process_tree(root: int) -> list[int]:
    children: dict[int, list[int]] = {}
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            with contextlib.suppress(OSError, IndexError, ValueError):
                ppid = int((entry / "stat").read_text().rsplit(")", 1)[1].split()[1])
                children.setdefault(ppid, []).append(int(entry.name))
    found, todo = [], [root]
    while todo:
        pid = todo.pop()
        found.append(pid)
        todo += children.get(pid, [])
    return found


def cpu_seconds(pids: list[int]) -> float:
    """user + system time of the processes (and of their reaped children)."""
    total = 0
    for pid in pids:
        with contextlib.suppress(OSError, IndexError, ValueError):
            fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
            total += sum(int(f) for f in fields[11:15])  # utime, stime, cutime, cstime
    return total / CLOCK_TICKS


def machine_cpu_seconds() -> float:
    fields = Path("/proc/stat").read_text().splitlines()[0].split()[1:]
    busy = sum(int(f) for f in fields) - int(fields[3]) - int(fields[4])  # all but idle and iowait
    return busy / CLOCK_TICKS


# --- the run --------------------------------------------------------------------------------------------------


def main() -> int:
    args = parse_args()
    rates = dict(DEFAULT_RATES)
    for entry in args.rate:
        name, _, value = entry.partition("=")
        if name not in rates:
            sys.exit(f"--rate: unknown provider {name!r}; use {', '.join(rates)}")
        rates[name] = float(value)
    if args.embedded:
        for name in ("DATABASE_URL", "CELERY_BROKER_URL", "REDIS_URL"):
            os.environ.pop(name, None)
    else:
        os.environ["DATABASE_URL"] = os.environ.get("DATABASE_URL") or DEFAULT_DATABASE_URL
        os.environ["CELERY_BROKER_URL"] = os.environ.get("CELERY_BROKER_URL") or DEFAULT_BROKER_URL
        os.environ["REDIS_URL"] = os.environ.get("REDIS_URL") or os.environ["CELERY_BROKER_URL"]
    sys.path.insert(0, str(ROOT))
    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "config.settings")
    os.environ.setdefault("SECRET_KEY", "bench-not-secret")

    import httpx

    from simulator import SimulatorServer
    from tests.apprunner import AppEnv

    workdir = Path(tempfile.mkdtemp(prefix="bench-dispatch-"))
    env = AppEnv(workdir, name="benchsend")
    failed = False

    def on_term(signum: int, frame: object) -> None:
        raise KeyboardInterrupt

    signal.signal(signal.SIGTERM, on_term)
    sim = SimulatorServer(
        seed=1,
        push=False,  # receipts are another benchmark's (webhook_ingest.py); this one measures sending
        send_limits={p: r for p, r in rates.items() if p != "genesys_cloud"},
        rate_limit_per_minute=round(rates["genesys_cloud"] * 60),
    ).start()
    try:
        env.create()
        settings = {
            "GENESYS_SMS_MT_URL": f"{sim.url}/httpapi/receiver",
            "GENESYS_SMS_LOGIN": "bench",
            "GENESYS_SMS_PASSWORD": "bench",
            "GENESYS_SMS_SENDER": "+15559876543",
            "WEBEX_CONNECT_URL": sim.url,
            "WEBEX_CONNECT_SERVICE_KEY": "bench",
            "WEBEX_CONNECT_SENDER_ID": "ACME",
            "GENESYS_CLOUD_BASE_URL": sim.url,
            "GENESYS_CLOUD_LOGIN_URL": sim.url,
            "GENESYS_CLOUD_CLIENT_ID": "bench",
            "GENESYS_CLOUD_CLIENT_SECRET": "bench",
            "GENESYS_CLOUD_FROM_ADDRESS": "+15550001000",
            # Nothing else calls Genesys Cloud here (no polling): its API budget may go to sending.
            "GENESYS_RATE_LIMIT_PER_MINUTE": str(round(rates["genesys_cloud"] * 60)),
            "GENESYS_RATE_HEADROOM": str(args.headroom),
            "GENESYS_RATE_BURST": "1",
            "SEND_RATE_GENESYS_SMS": str(rates["genesys_sms"]),
            "SEND_RATE_WEBEX_CONNECT": str(rates["webex_connect"]),
            "SEND_RATE_HEADROOM": str(args.headroom),
            "SEND_LOOPS_PER_PROVIDER": str(args.loops),
            "SEND_DISPATCH_INTERVAL": "1",
            "DEFAULT_PHONE_REGION": "US",
            "LOG_LEVEL": os.environ.get("BENCH_LOG_LEVEL", "WARNING"),
        }
        url = env.start_web(workers=2, threads=4, **settings)
        sender = env.start_worker(concurrency=args.worker_concurrency, WORKER_QUEUES="send", **settings)
        env.start_worker(concurrency=1, WORKER_QUEUES="inbox,crm,poll", **settings)
        env.start_beat(**settings)
        token = env.api_token()
        api = httpx.Client(base_url=url, headers={"Authorization": f"Token {token}"}, timeout=300)

        shares = {p: round(args.messages * s) for p, s in DEFAULT_SHARES.items()}
        shares["genesys_sms"] += args.messages - sum(shares.values())
        print(f"setup: {args.messages} contacts, limits {rates} sends/s, headroom {args.headroom}", flush=True)
        n = 0
        audience: dict[str, list[str]] = {}
        for provider, count in shares.items():
            audience[provider] = [f"{provider}-{i}" for i in range(count)]
            for start in range(0, count, 10_000):
                rows = [
                    {
                        "crm_record_id": record,
                        "phone": f"+1555{(n + k) % 10_000_000:07d}",
                        "first_name": "Ann",
                        "bench_provider": provider,
                    }
                    for k, record in enumerate(audience[provider][start : start + 10_000])
                ]
                n += len(rows)
                answer = api.post("/api/v1/contacts/", json={"contacts": rows}).json()
                assert not answer["refused"], answer["refused"][:3]
        campaigns = {}
        for provider in shares:
            made = api.post(
                "/api/v1/campaigns/",
                json={
                    "name": f"bench {provider}",
                    "channel": "sms",
                    "provider": provider,
                    "body": "Hi {{ contact.first_name }}, your appointment is tomorrow at 10:00.",
                    "audience": {"attributes": {"bench_provider": provider}},
                },
            )
            assert made.status_code == 201, made.text
            campaigns[provider] = made.json()["id"]

        print("run: starting the campaigns", flush=True)
        worker_pids = process_tree(sender.pid)
        cpu_before, machine_before = cpu_seconds(worker_pids), machine_cpu_seconds()
        started = time.time()
        for campaign_id in campaigns.values():
            assert api.post(f"/api/v1/campaigns/{campaign_id}/start/").status_code == 200

        def accepted() -> dict[str, int]:
            return {p: n["accepted"] for p, n in sim.sim.stats.snapshot()["send_throughput"].items()}

        def done() -> bool:
            states = {p: api.get(f"/api/v1/campaigns/{c}/").json()["state"] for p, c in campaigns.items()}
            return all(s == "completed" for s in states.values())

        last_print = 0.0
        while not done():
            if time.time() - started > args.timeout:
                raise TimeoutError("the campaigns did not complete in time")
            if time.time() - last_print > 30:
                print(f"  {time.time() - started:6.0f} s: accepted {accepted()}", flush=True)
                last_print = time.time()
            time.sleep(2)
        worker_pids = process_tree(sender.pid)
        cpu_after, machine_after = cpu_seconds(worker_pids), machine_cpu_seconds()

        messages = list(sim.sim.messages)
        stats = sim.sim.stats.snapshot()["send_throughput"]
        total_sent = len(messages)
        print(f"\nresults: {total_sent} messages in {time.time() - started:.0f} s\n")
        columns = ["provider", "messages", "limit /s", "sent /s", "ratio", "peak in 1 s", "over the limit"]
        print("| " + " | ".join([*columns, "first send", "dup", "lost"]) + " |")
        print("|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|")
        for provider, campaign_id in campaigns.items():
            mine = sorted((m for m in messages if m.provider == provider), key=lambda m: m.created)
            per_contact = Counter(m.to for m in mine)
            duplicates = sum(c - 1 for c in per_contact.values())
            lost = len(audience[provider]) - len(per_contact)
            span = mine[-1].created - mine[0].created if len(mine) > 1 else float("nan")
            rate = (len(mine) - 1) / span if span else float("nan")
            limit = rates[provider]
            peak = stats.get(provider, {}).get("peak", "-")
            over = stats.get(provider, {}).get("over_limit", 0)
            if provider == "genesys_cloud":
                over = (
                    sim.sim.stats.snapshot()["requests"]["by_endpoint"]
                    .get("/api/v2/conversations/messages/agentless", {})
                    .get("by_status", {})
                    .get(429, 0)
                )
            first = mine[0].created - started if mine else float("nan")
            print(
                f"| {provider} | {len(mine)} | {limit:g} | {rate:.1f} | {rate / limit:.3f} | {peak} | {over} | "
                f"{first:.2f} s | {duplicates} | {lost} |"
            )
            progress = api.get(f"/api/v1/campaigns/{campaign_id}/").json()["progress"]
            if duplicates or lost or over or progress["sent"] != len(audience[provider]):
                failed = True
                print(f"  {provider}: progress {progress}")
        worker_cpu = cpu_after - cpu_before
        machine_cpu = machine_after - machine_before
        per_message = 1000 / max(total_sent, 1)
        print(
            f"\nCPU per message: sending worker {worker_cpu * per_message:.2f} ms; whole machine (PostgreSQL, Redis, "
            f"the simulator, the web server included) {machine_cpu * per_message:.2f} ms"
        )
        return 1 if failed else 0
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return 2
    except Exception:
        failed = True
        print(env.logs(), file=sys.stderr)
        raise
    finally:
        sim.stop()
        env.destroy()
        if failed or args.keep_logs:
            print(f"logs kept in {workdir}", file=sys.stderr)
        else:
            shutil.rmtree(workdir, ignore_errors=True)


if __name__ == "__main__":
    raise SystemExit(main())
