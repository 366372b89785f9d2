"""Ingest through Caddy, against granian alone and against a bare one-INSERT view behind the same Caddy.

Three deployments of one database (tests/apprunner.AppEnv, PostgreSQL when DATABASE_URL points at it):

- ``caddy``: the webhook endpoint as `make run` serves it, Caddy (config/Caddyfile) in front of granian;
- ``granian``: the same app, granian alone on its port;
- ``bare``: bench/bare_insert.py (one INSERT, no authentication, no parsing) under granian behind the same Caddy.

Each round drives each deployment in turn (the order rotates) with C clients on keep-alive connections posting
signed-in generic webhooks, each for ``--seconds``; rounds interleave, so the machine's other load falls on all
three alike. Printed: requests/s and the CPU seconds per 1,000 requests of the deployment's own processes (Caddy
and granian with its workers), per round and in total, and the ratios asked for: caddy / bare, caddy / granian.

    .venv/bin/python bench/front_ingest.py --rounds 3 --seconds 5 --clients 16
"""

from __future__ import annotations

import argparse
import asyncio
import base64
import os
import sys
import tempfile
import time
import uuid
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from tests.apprunner import BASIC_PASSWORD, BASIC_USER, AppEnv

CLOCK_TICKS = os.sysconf("SC_CLK_TCK")


def tree_cpu(roots: list[int]) -> float:
    """CPU seconds used so far by these processes and all their descendants."""
    parents: dict[int, int] = {}
    cpu: dict[int, float] = {}
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            fields = stat.read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        pid = int(stat.parent.name)
        parents[pid], cpu[pid] = int(fields[1]), (int(fields[11]) + int(fields[12])) / CLOCK_TICKS
    found, frontier = set(roots), set(roots)
    while frontier:
        frontier = {child for child, parent in parents.items() if parent in frontier} - found
        found |= frontier
    return sum(cpu.get(pid, 0.0) for pid in found)


def request(port: int, path: str) -> bytes:
    token = base64.b64encode(f"{BASIC_USER}:{BASIC_PASSWORD}".encode()).decode()
    body = b'{"id": "bench-%s", "status": "delivered", "timestamp": "2026-11-20T10:00:00Z"}' % uuid.uuid4().hex.encode()
    head = (
        f"POST {path} HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\nAuthorization: Basic {token}\r\n"
        f"Content-Type: application/json\r\nContent-Length: {len(body)}\r\n\r\n"
    )
    return head.encode() + body


async def client(port: int, path: str, until: float, counts: dict[str, int]) -> None:
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    try:
        while time.monotonic() < until:
            writer.write(request(port, path))
            status = (await reader.readline()).split(b" ", 2)[1]
            length, chunked = 0, False
            while (line := await reader.readline()) not in (b"\r\n", b""):
                if line.lower().startswith(b"content-length:"):
                    length = int(line.split(b":")[1])
                chunked = chunked or line.lower() == b"transfer-encoding: chunked\r\n"
            if not chunked:
                await reader.readexactly(length)
            else:
                while size := int((await reader.readline()).split(b";")[0], 16):
                    await reader.readexactly(size + 2)
                await reader.readline()
            counts["ok" if status == b"200" else "other"] += 1
    finally:
        writer.close()


async def drive(port: int, path: str, clients: int, seconds: float) -> dict[str, int]:
    counts = {"ok": 0, "other": 0}
    until = time.monotonic() + seconds
    await asyncio.gather(*(client(port, path, until, counts) for _ in range(clients)))
    return counts


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--seconds", type=float, default=5.0)
    parser.add_argument("--clients", type=int, default=16)
    parser.add_argument("--web-workers", type=int, default=2)
    parser.add_argument("--web-threads", type=int, default=4)
    args = parser.parse_args()

    env = AppEnv(Path(tempfile.mkdtemp(prefix="front-ingest-")), name="front_ingest").create()
    try:
        sizing = {"workers": args.web_workers, "threads": args.web_threads, "LOG_LEVEL": "WARNING"}
        ports: dict[str, int] = {}
        pids: dict[str, list[int]] = {}
        for name, options in (
            ("caddy", {}),
            ("granian", {"front": False}),
            ("bare", {"app": "bench.bare_insert:application"}),
        ):
            before = len(env.processes)
            url = env.start_web(**sizing, **options)  # type: ignore[arg-type]
            ports[name] = int(url.rsplit(":", 1)[1])
            pids[name] = [proc.pid for proc, _ in env.processes[before:]]
        names = ["caddy", "granian", "bare"]
        totals = {name: [0, 0, 0.0, 0.0] for name in names}  # ok, other, seconds, cpu
        print(
            f"{args.rounds} rounds x {args.seconds:g} s each, {args.clients} clients, granian {args.web_workers}x"
            f"{args.web_threads}, database {env.database_url.split('://')[0]}"
        )
        print(f"{'round':>5} {'deployment':>10} {'req/s':>8} {'CPU ms/req':>11} {'not 200':>8}")
        for round_no in range(args.rounds):
            order = names[round_no % 3 :] + names[: round_no % 3]
            for name in order:
                cpu_before, started = tree_cpu(pids[name]), time.monotonic()
                counts = asyncio.run(drive(ports[name], "/webhooks/generic/", args.clients, args.seconds))
                wall, cpu = time.monotonic() - started, tree_cpu(pids[name]) - cpu_before
                total = totals[name]
                total[0] += counts["ok"]
                total[1] += counts["other"]
                total[2] += wall
                total[3] += cpu
                per = 1000 * cpu / max(counts["ok"], 1)
                print(f"{round_no + 1:>5} {name:>10} {counts['ok'] / wall:>8.0f} {per:>11.2f} {counts['other']:>8}")
        rate = {name: totals[name][0] / totals[name][2] for name in names}
        cost = {name: 1000 * totals[name][3] / max(totals[name][0], 1) for name in names}
        print()
        for name in names:
            print(f"{'all':>5} {name:>10} {rate[name]:>8.0f} {cost[name]:>11.2f} {totals[name][1]:>8}")
        print(f"\ncaddy / bare: {rate['caddy'] / rate['bare']:.2f} of the requests/s")
        print(
            f"caddy / granian alone: {rate['caddy'] / rate['granian']:.2f} of the requests/s, "
            f"{cost['caddy'] / cost['granian']:.2f} x the CPU per request"
        )
        return 0
    finally:
        env.destroy()


if __name__ == "__main__":
    sys.exit(main())
