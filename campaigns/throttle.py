"""How fast sends leave, shared by every worker: a token bucket per provider and per sender, the provider's
circuit breaker, and the count of each campaign's send failures that trips its failure-rate breaker.

The buckets are ``receipts.providers.limits`` buckets (Redis, or the SQLite file in the embedded mode), over a
window of ``SEND_RATE_WINDOW`` seconds holding one token at most: a provider limited to N sends a second gets at
most ``N * (1 - SEND_RATE_HEADROOM)`` a second on average and never more than N in any one second.
Genesys Cloud's own API budget (``GENESYS_RATE_LIMIT_PER_MINUTE``) and breaker stay in its client; its send bucket
here is off unless ``SEND_RATE_GENESYS_CLOUD`` is set.
"""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass

from django.conf import settings

from receipts.providers.limits import CircuitPolicy, Limits, RateLimit, default_store
from receipts.providers.registry import capabilities

log = logging.getLogger(__name__)


def own_breaker(provider: str) -> bool:
    """The provider's breaker lives here (its capabilities say; Genesys Cloud's client keeps its own)."""
    return capabilities(provider).own_breaker


def provider_rate(provider: str) -> float:
    """Sends a second the provider takes (0: no limit of ours)."""
    return float(getattr(settings, capabilities(provider).send_rate_setting, 0.0) or 0.0) if provider else 0.0


def bucket_rate(per_second: float) -> RateLimit:
    """``per_second`` over SEND_RATE_WINDOW, less the headroom, with the largest burst that still keeps any one
    second at ``per_second`` or under: burst + (budget - burst) / window <= per_second. A burst lets a worker
    that fell behind (a slow database write, a busy CPU) catch up on the tokens it would otherwise lose."""
    window = max(settings.SEND_RATE_WINDOW, 3 / per_second)  # a slow limit gets a window of 3 sends at least
    limit = max(3, round(per_second * window))
    rate = RateLimit(limit=limit, window=window, headroom=settings.SEND_RATE_HEADROOM, burst=1)
    if window > 1:
        burst = int((per_second - rate.budget / window) / (1 - 1 / window))
        rate = RateLimit(limit=limit, window=window, headroom=settings.SEND_RATE_HEADROOM, burst=max(1, burst))
    return rate


def circuit_policy() -> CircuitPolicy:
    return CircuitPolicy(
        threshold=settings.CIRCUIT_FAILURE_THRESHOLD,
        cooldown=settings.CIRCUIT_COOLDOWN_SECONDS,
        probe_timeout=settings.CIRCUIT_COOLDOWN_SECONDS,
    )


def provider_limits(provider: str) -> Limits | None:
    per_second = provider_rate(provider)
    if per_second <= 0 and not own_breaker(provider):
        return None
    rate = bucket_rate(per_second) if per_second > 0 else bucket_rate(1e6)
    return Limits(f"send:{provider}", rate, circuit_policy(), default_store())


def sender_limits(provider: str, sender: str) -> Limits | None:
    per_second = settings.SEND_RATE_PER_SENDER
    if per_second <= 0:
        return None
    name = f"send:{provider}:{Limits.scope(provider, sender)}"
    return Limits(name, bucket_rate(per_second), circuit_policy(), default_store())


@dataclass
class Gate:
    """The limits one send passes: its provider's, then its sender's."""

    provider: str
    limits: Limits | None
    sender: Limits | None

    def enter(self, max_wait: float) -> None:
        """Wait for a token of each (raises RateLimitWait past ``max_wait``, CircuitOpenError when the provider's
        breaker is open: nothing was sent, the send goes back to the queue). The time waited is counted."""
        waited = 0.0
        if self.limits is not None:
            if own_breaker(self.provider):
                self.limits.allow()
            if provider_rate(self.provider) > 0:
                waited += self.limits.acquire(max_wait)
        if self.sender is not None:
            waited += self.sender.acquire(max_wait)
        if waited:
            count_send(self.provider, "token_wait_ms", round(waited * 1000))

    def record(self, success: bool) -> None:
        if self.limits is not None and own_breaker(self.provider):
            self.limits.record(success)

    def pause(self, seconds: float) -> None:
        """The provider said 429: every worker waits ``seconds``."""
        if self.limits is not None:
            self.limits.pause(seconds)


def gate(provider: str, sender: str) -> Gate:
    return Gate(provider, provider_limits(provider), sender_limits(provider, sender))


# --- what sending did, for /metrics (campaigns.metrics): shared by every worker, like the buckets -------------


def stats_key(provider: str) -> str:
    return f"limits:send:{provider}:outcomes"  # beside the bucket and breaker of the same provider


def count_send(provider: str, field: str, amount: int = 1) -> None:
    try:
        default_store().incr(stats_key(provider), field, amount)
    except Exception as exc:  # counting must never stop a send
        log.debug("could not count %s: %s", field, exc)


def send_counters(provider: str) -> dict[str, int]:
    return default_store().counters(stats_key(provider))


# --- the failure-rate breaker's counts ----------------------------------------------------------------------

MINUTE = 60


def attempts_key(campaign_id: int, minute: int) -> str:
    # CELERY_QUEUE names the deployment: several can share one Redis.
    return f"campaign-sends:{settings.CELERY_QUEUE}:{campaign_id}:{minute}"


def window_minutes() -> int:
    return max(1, round(settings.CAMPAIGN_FAILURE_WINDOW / MINUTE))


def count_attempt(campaign_id: int, failed: bool, now: float | None = None) -> None:
    """One send attempt of a campaign, counted in its minute (every worker adds to the same counts)."""
    minute = int((now or time.time()) // MINUTE)
    default_store().incr(attempts_key(campaign_id, minute), "failed" if failed else "ok")


def recent_attempts(campaign_id: int, now: float | None = None) -> tuple[int, int]:
    """(attempts, failures) of the last CAMPAIGN_FAILURE_WINDOW seconds, by whole minutes."""
    store = default_store()
    current, minutes = int((now or time.time()) // MINUTE), window_minutes()
    attempts = failures = 0
    for minute in range(current - minutes + 1, current + 1):
        counts = store.counters(attempts_key(campaign_id, minute))
        attempts += counts.get("ok", 0) + counts.get("failed", 0)
        failures += counts.get("failed", 0)
    for old in range(current - minutes - 3, current - minutes + 1):  # forget what left the window
        store.delete(attempts_key(campaign_id, old))
    return attempts, failures


def forget_attempts(campaign_id: int, now: float | None = None) -> None:
    """A resumed campaign starts its window afresh (the failures that paused it are not held against it)."""
    current, minutes = int((now or time.time()) // MINUTE), window_minutes()
    for minute in range(current - minutes - 3, current + 1):
        default_store().delete(attempts_key(campaign_id, minute))
