"""Beat and kicks for sending (campaigns.dispatch)."""

from __future__ import annotations

from celery import shared_task

from campaigns import dispatch


@shared_task(name="campaigns.dispatch_sends", time_limit=300, soft_time_limit=280)
def dispatch_sends() -> int:
    """A POST /api/v1/sends/ asks for it; beat runs it every SEND_DISPATCH_INTERVAL for anything left."""
    total = 0
    while True:
        done = dispatch.dispatch()
        claimed = done.sent + done.suppressed + done.failed + done.unknown
        total += claimed
        if claimed == 0:
            return total


@shared_task(name="campaigns.reconcile_sends", time_limit=120, soft_time_limit=100)
def reconcile_sends() -> int:
    """Beat: sends whose worker died while sending (SEND_CLAIM_TIMEOUT) are settled, never sent again."""
    return dispatch.reconcile_stuck()
