"""Beat and kicks for sending (campaigns.dispatch, campaigns.lifecycle)."""

from __future__ import annotations

import time

from celery import current_app, shared_task
from django.conf import settings
from django.utils import timezone

from campaigns import dispatch, fallback, lifecycle, throttle
from receipts.providers.limits import Limits, RateLimit, default_store

DISPATCH_BUDGET = 20.0  # seconds in which one provider's loop starts sends; then the next loop takes over
# One send takes at most SEND_MAX_WAIT for a token and the HTTP timeout (10 s) for the answer, so a loop ends by
# DISPATCH_BUDGET + SEND_BOUND; the soft time limit, which would stop a send midway, lies beyond it.
SEND_BOUND = 30.0
# A loop's slot outlives its task by this much at most: a worker killed mid-loop stalls the provider no longer.
SLOT_TTL = DISPATCH_BUDGET + SEND_BOUND + 15.0


@shared_task(name="campaigns.dispatch_sends", time_limit=60, soft_time_limit=50)
def dispatch_sends() -> list[str]:
    """Beat (every SEND_DISPATCH_INTERVAL) and POST /api/v1/sends/: one loop per provider with sends due."""
    now = timezone.now()
    providers = sorted(set(dispatch.due(now).values_list("provider", flat=True).distinct().order_by()))
    for provider in providers:
        for _ in range(settings.SEND_LOOPS_PER_PROVIDER):
            # A kick that waited longer than beat's interval is stale: the next tick sends a fresh one.
            current_app.send_task(
                "campaigns.dispatch_provider", args=[provider], expires=2 * settings.SEND_DISPATCH_INTERVAL
            )
    return providers


@shared_task(name="campaigns.dispatch_provider", time_limit=SLOT_TTL - 5, soft_time_limit=DISPATCH_BUDGET + SEND_BOUND)
def dispatch_provider(provider: str) -> int:
    """Send one provider's due sends until none is left or DISPATCH_BUDGET has passed. Loops of the same provider
    run side by side safely (each claims its own rows, all share the buckets); SEND_LOOPS_PER_PROVIDER of them at
    most, so that one busy provider does not take every sending worker from the others."""
    slots = Limits(f"dispatch:{provider}", RateLimit(), throttle.circuit_policy(), default_store())
    for slot in range(settings.SEND_LOOPS_PER_PROVIDER):
        with slots.exclusive(f"loop:{slot}", ttl=SLOT_TTL) as mine:
            if not mine:
                continue
            sent, more = send_loop(provider)
        if more:  # its time was up with sends still due: the next loop starts now, not at beat's next tick
            current_app.send_task("campaigns.dispatch_provider", args=[provider])
        return sent
    return 0


def send_loop(provider: str) -> tuple[int, bool]:
    """(sends handled, whether it stopped for time with more due)."""
    deadline, total = time.monotonic() + DISPATCH_BUDGET, 0
    while time.monotonic() < deadline:
        done = dispatch.dispatch(provider=provider, deadline=deadline)
        total += done.claimed - done.held - done.deferred
        if done.claimed == 0 or done.held:
            return total, False
    return total, True


@shared_task(name="campaigns.plan_campaigns", time_limit=120, soft_time_limit=100)
def plan_campaigns() -> int:
    """Beat, and a campaign's start: plan the running campaigns not fully planned, then complete the finished."""
    planned = lifecycle.plan(budget=60.0)
    lifecycle.complete_finished()
    return planned


@shared_task(name="campaigns.reconcile_sends", time_limit=120, soft_time_limit=100)
def reconcile_sends() -> dict[str, int]:
    """Beat: sends whose worker died while holding them (SEND_CLAIM_TIMEOUT) are put back or settled."""
    return dispatch.reconcile_stuck()


# --- the fallback channel (campaigns.fallback) ----------------------------------------------------------------


@shared_task(name="campaigns.fall_back", time_limit=120, soft_time_limit=100)
def fall_back() -> int:
    """Beat (every FALLBACK_SWEEP_INTERVAL): plan the fallback sends of escalated critical campaign messages; the
    dispatcher sends them at its next run."""
    return fallback.fall_back()
