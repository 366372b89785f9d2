import logging
import time

from celery import shared_task
from django.conf import settings
from django.utils import timezone

from receipts import actions
from receipts.models import ReceiptEvent

log = logging.getLogger(__name__)


@shared_task(acks_late=True, reject_on_worker_lost=True, time_limit=120, soft_time_limit=100)
def drain_inbox() -> int:
    """Process due inbox rows in batches until none are left or the time budget is spent."""
    deadline = time.monotonic() + settings.INBOX_DRAIN_SECONDS
    total = 0
    while time.monotonic() < deadline:
        claimed = actions.process_due()
        total += claimed
        if claimed == 0:
            return total
        if claimed < settings.INBOX_BATCH_SIZE // 4 and settings.INBOX_LINGER > 0:
            # Receipts are arriving a few at a time: let them gather. A batch's fixed cost (claim, lock the
            # messages, write, commit) then spreads over more rows.
            time.sleep(settings.INBOX_LINGER)
    # More is waiting: hand over to a fresh task rather than hold this worker past its limit.
    drain_inbox.apply_async()
    return total


@shared_task(acks_late=True, reject_on_worker_lost=True, time_limit=120, soft_time_limit=100)
def sweep_inbox() -> int:
    """Beat: the safety net. Finds rows no kick reached (broker down, worker killed) and runs orphan upkeep."""
    now = timezone.now()
    rematched = actions.rematch_orphans()
    expired = actions.expire_orphans(now)
    if rematched or expired:
        log.info("orphans: %d matched, %d unmatched after the window", rematched, expired)
    if ReceiptEvent.objects.due(now).exists():
        return drain_inbox()
    return 0


@shared_task(acks_late=True, reject_on_worker_lost=True, time_limit=120, soft_time_limit=100)
def expire_receipts() -> int:
    """Beat: messages with no final receipt within RECEIPT_TIMEOUT become assumed delivered, for review."""
    from receipts.review import expire_receipts as expire

    total = 0
    while count := expire():
        total += count
    return total
