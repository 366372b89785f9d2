"""Counters tests read at ``GET /_sim/stats``, and bounded logs of recent requests and pushes."""

from __future__ import annotations

import threading
import time
from collections import Counter, defaultdict, deque
from dataclasses import dataclass, field
from typing import Any

from simulator.config import PROVIDERS

REQUEST_LOG_SIZE = 200_000
PUSH_LOG_SIZE = 50_000
PEAK_WINDOW = 1.0  # seconds: peaks are the most sends admitted in any window (t - 1 s, t]


@dataclass
class Throughput:
    """One provider's send requests against the send limits (simulator/limits.py)."""

    accepted: int = 0
    over_limit: int = 0  # refused for either limit
    over_sender_limit: int = 0  # of those, refused for the sender's limit
    peak: int = 0  # the most accepted in any one-second window
    sender_peak: int = 0  # the most accepted from one sender in any one-second window
    recent: deque[float] = field(default_factory=deque)
    recent_by_sender: dict[str, deque[float]] = field(default_factory=dict)

    def public(self) -> dict[str, int]:
        return {
            "accepted": self.accepted,
            "over_limit": self.over_limit,
            "over_sender_limit": self.over_sender_limit,
            "peak": self.peak,
            "sender_peak": self.sender_peak,
        }


def count_in_window(times: deque[float], at: float) -> int:
    times.append(at)
    while times[0] <= at - PEAK_WINDOW:
        times.popleft()
    return len(times)


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
            self.throughput = {provider: Throughput() for provider in PROVIDERS}
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

    def send_admitted(self, provider: str, sender: str, at: float) -> None:
        """A send request let through by the send limits, at ``at`` on the simulator's clock (called in order)."""
        with self.lock:
            counts = self.throughput[provider]
            counts.accepted += 1
            counts.peak = max(counts.peak, count_in_window(counts.recent, at))
            by_sender = counts.recent_by_sender
            if len(by_sender) > 10_000:  # let senders gone quiet go
                for key in [k for k, times in by_sender.items() if times[-1] <= at - PEAK_WINDOW]:
                    del by_sender[key]
            counts.sender_peak = max(counts.sender_peak, count_in_window(by_sender.setdefault(sender, deque()), at))

    def send_refused(self, provider: str, scope: str) -> None:
        with self.lock:
            counts = self.throughput[provider]
            counts.over_limit += 1
            if scope == "sender":
                counts.over_sender_limit += 1

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
                "send_throughput": {p: counts.public() for p, counts in self.throughput.items()},
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
