"""Receipts pushed to the app's webhooks, off the request path: a scheduler thread keeps a heap of due pushes and
hands them to a small pool of sender threads. A failed push (connection refused, timeout, 5xx, 429) is retried
``push_retries`` times, ``push_retry_spacing`` seconds apart growing by ``push_retry_backoff``, as Webex Connect
does (3 retries, 60 s apart, with spacing 60 and backoff 1).
"""

from __future__ import annotations

import heapq
import itertools
import logging
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

import httpx

from receipts.logging import mask
from simulator import genesys_cloud, genesys_sms, webex_connect
from simulator.model import SimMessage

if TYPE_CHECKING:
    from simulator.core import Simulator

log = logging.getLogger("simulator.push")

RENDERERS = {
    "genesys_cloud": genesys_cloud.receipt_push,
    "genesys_sms": genesys_sms.receipt_push,
    "webex_connect": webex_connect.receipt_push,
}
RETRYABLE_STATUSES = frozenset({408, 425, 429, 500, 502, 503, 504})
DUPLICATE_GAP = 0.25  # seconds between a receipt and its duplicate
OUT_OF_ORDER_GAP = 0.2  # an out-of-order intermediate receipt arrives this long after the final one


@dataclass(order=True)
class PushJob:
    due: float
    order: int
    message: SimMessage = field(compare=False)
    event: str = field(compare=False)  # "sent", "final", "mo", or "duplicate" (SMS Aggregation: a copy sent again)
    generation: int = field(compare=False)
    attempt: int = field(default=1, compare=False)
    copy: bool = field(default=False, compare=False)  # the deliberate duplicate


class Pusher:
    def __init__(self, sim: Simulator) -> None:
        self.sim = sim
        self.heap: list[PushJob] = []
        self.counter = itertools.count()
        self.wake = threading.Condition()
        self.stopping = False
        self.in_flight = 0
        self.pool = ThreadPoolExecutor(sim.config.push_concurrency, thread_name_prefix="sim-push")
        self.client = httpx.Client(
            timeout=sim.config.push_timeout,
            limits=httpx.Limits(max_connections=sim.config.push_concurrency * 2),
        )
        self.thread = threading.Thread(target=self.run, name="sim-push-scheduler", daemon=True)

    def start(self) -> None:
        self.thread.start()

    def stop(self) -> None:
        with self.wake:
            self.stopping = True
            pending = len(self.heap)
            self.heap.clear()
            self.wake.notify_all()
        self.thread.join(timeout=5)
        self.pool.shutdown(wait=True, cancel_futures=True)
        self.client.close()
        if pending:
            log.info("stopped with %d receipt push(es) not yet due; they are dropped", pending)

    def clear(self) -> None:
        with self.wake:
            self.heap.clear()

    def pending(self) -> int:
        with self.wake:
            return len(self.heap) + self.in_flight

    # --- scheduling -----------------------------------------------------------------------------------

    def schedule_message(self, message: SimMessage) -> None:
        """The receipts of a new message: intermediate when it is sent, final when it ends (silent: none)."""
        sent_due = message.sent_at
        if message.out_of_order and message.final_at is not None:
            sent_due = message.final_at + OUT_OF_ORDER_GAP
        self.schedule(message, "sent", sent_due)
        if message.final_at is not None:
            self.schedule(message, "final", message.final_at)

    def schedule(self, message: SimMessage, event: str, due: float) -> None:
        jobs = [PushJob(due, next(self.counter), message, event, message.generation)]
        if message.duplicate:
            jobs.append(PushJob(due + DUPLICATE_GAP, next(self.counter), message, event, message.generation, copy=True))
        with self.wake:
            for job in jobs:
                heapq.heappush(self.heap, job)
            self.wake.notify()

    def run(self) -> None:
        while True:
            with self.wake:
                while not self.stopping and (not self.heap or self.heap[0].due > time.time()):
                    timeout = (self.heap[0].due - time.time()) if self.heap else None
                    self.wake.wait(timeout)
                if self.stopping:
                    return
                job = heapq.heappop(self.heap)
                self.in_flight += 1
            try:
                self.pool.submit(self.fire, job)
            except RuntimeError:  # the pool shut down under us
                return

    # --- sending --------------------------------------------------------------------------------------

    def fire(self, job: PushJob) -> None:
        try:
            self._fire(job)
        except Exception:  # a bug here must not kill the pool thread silently
            log.exception("push of %s %s failed unexpectedly", job.message.provider, job.event)
        finally:
            with self.wake:
                self.in_flight -= 1

    def _fire(self, job: PushJob) -> None:
        message, config, stats = job.message, self.sim.config, self.sim.stats
        provider = message.provider
        if job.event == "final" and job.generation != message.generation:
            return  # the outcome was forced since; its own push is scheduled
        if not config.pushes(provider):  # pushing was turned off since it was scheduled
            stats.push(provider, "skipped_disabled")
            return
        url, body, headers, summary = RENDERERS[provider](message, job.event, config)
        started = time.time()
        entry = {
            "t": started,
            "due": job.due,
            "provider": provider,
            "id": message.id,
            "to": mask(message.to),
            "event": job.event,
            "summary": summary,
            "attempt": job.attempt,
            "duplicate": job.copy,
        }
        try:
            response = self.client.post(url, content=body, headers=headers)
            status: int | str = response.status_code
            detail = response.text[:200]
        except httpx.HTTPError as exc:
            status, detail = "error", f"{type(exc).__name__}: {exc}"
        entry["status"] = status
        stats.push(provider, "attempts")
        if job.copy:
            stats.push(provider, "duplicates")
        if isinstance(status, int) and 200 <= status < 300:
            stats.push(provider, "delivered", entry)
            log.info("%s", mask(f"push {provider} {summary} id={message.id} -> {status}{self.tag(job)}"))
            return
        retryable = status == "error" or status in RETRYABLE_STATUSES
        if retryable and job.attempt <= config.push_retries:
            delay = config.push_retry_spacing * config.push_retry_backoff ** (job.attempt - 1)
            stats.push(provider, "retries", entry)
            log.warning(
                "%s",
                mask(f"push {provider} {summary} id={message.id} -> {status}; retry {job.attempt} in {delay:g}s"),
            )
            retry = PushJob(time.time() + delay, next(self.counter), message, job.event, job.generation)
            retry.attempt, retry.copy = job.attempt + 1, job.copy
            with self.wake:
                heapq.heappush(self.heap, retry)
                self.wake.notify()
            return
        stats.push(provider, "gave_up" if retryable else "rejected", entry)
        log.warning("%s", mask(f"push {provider} {summary} id={message.id} -> {status} ({detail.strip()}); giving up"))

    @staticmethod
    def tag(job: PushJob) -> str:
        tags = [f"attempt {job.attempt}"] if job.attempt > 1 else []
        if job.copy:
            tags.append("duplicate")
        if job.event == "sent" and job.message.out_of_order:
            tags.append("out of order")
        return f" ({', '.join(tags)})" if tags else ""
