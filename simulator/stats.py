"""Counters tests read at ``GET /_sim/stats``, and bounded logs of recent requests and pushes."""

from __future__ import annotations

import threading
import time
from collections import Counter, defaultdict, deque
from typing import Any

REQUEST_LOG_SIZE = 200_000
PUSH_LOG_SIZE = 50_000


class Stats:
    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.reset()

    def reset(self) -> None:
        with self.lock:
            self.started = time.time()
            self.requests: dict[str, Counter[str]] = defaultdict(Counter)  # endpoint -> status -> n
            self.faults: Counter[str] = Counter()
            self.tokens_issued = 0
            self.sends: Counter[str] = Counter()  # provider -> messages accepted through its send API
            self.duplicate_sends = 0
            self.pushes: dict[str, Counter[str]] = defaultdict(Counter)  # provider -> what happened -> n
            self.analytics_jobs = 0
            self.request_log: deque[tuple[float, str, str, int, str]] = deque(maxlen=REQUEST_LOG_SIZE)
            self.push_log: deque[dict[str, Any]] = deque(maxlen=PUSH_LOG_SIZE)

    def request(self, method: str, endpoint: str, status: int, principal: str, at: float) -> None:
        name = f"{method} {endpoint}"
        with self.lock:
            self.requests[name][str(status)] += 1
            self.request_log.append((at, method, endpoint, status, principal))

    def fault(self, kind: str) -> None:
        with self.lock:
            self.faults[kind] += 1

    def token_issued(self) -> None:
        with self.lock:
            self.tokens_issued += 1

    def sent(self, provider: str, n: int = 1) -> None:
        with self.lock:
            self.sends[provider] += n

    def duplicate_send(self) -> None:
        with self.lock:
            self.duplicate_sends += 1

    def analytics_job(self) -> None:
        with self.lock:
            self.analytics_jobs += 1

    def push(self, provider: str, what: str, entry: dict[str, Any] | None = None) -> None:
        with self.lock:
            self.pushes[provider][what] += 1
            if entry is not None:
                self.push_log.append(entry)

    def snapshot(self) -> dict[str, Any]:
        with self.lock:
            by_status: Counter[str] = Counter()
            by_endpoint = {}
            for endpoint, statuses in sorted(self.requests.items()):
                by_status.update(statuses)
                by_endpoint[endpoint] = {"total": sum(statuses.values()), "by_status": dict(sorted(statuses.items()))}
            push_totals: Counter[str] = Counter()
            for counts in self.pushes.values():
                push_totals.update(counts)
            return {
                "since": self.started,
                "requests": {
                    "total": sum(by_status.values()),
                    "by_status": dict(sorted(by_status.items())),
                    "by_endpoint": by_endpoint,
                },
                "faults": dict(self.faults),
                "tokens_issued": self.tokens_issued,
                "sends": dict(self.sends),
                "duplicate_sends": self.duplicate_sends,
                "analytics_jobs": self.analytics_jobs,
                "pushes": {**push_totals, "by_provider": {p: dict(c) for p, c in self.pushes.items()}},
            }

    def recent_requests(
        self, since: float = 0.0, endpoint: str = "", method: str = "", limit: int = REQUEST_LOG_SIZE
    ) -> list[dict[str, Any]]:
        with self.lock:
            rows = list(self.request_log)
        out = []
        for at, m, ep, status, principal in rows:
            if at < since or (endpoint and ep != endpoint) or (method and m != method):
                continue
            out.append({"t": at, "method": m, "endpoint": ep, "status": status, "principal": principal})
        return out[-limit:]

    def recent_pushes(self, since: float = 0.0, limit: int = PUSH_LOG_SIZE) -> list[dict[str, Any]]:
        with self.lock:
            rows = [e for e in self.push_log if e["t"] >= since]
        return rows[-limit:]
