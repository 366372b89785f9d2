import logging

from celery import shared_task

from crm_sync import actions

log = logging.getLogger(__name__)


@shared_task(acks_late=True, reject_on_worker_lost=True, time_limit=120, soft_time_limit=100)
def relay_outbox() -> int:
    """Beat: push due outbox changes to the CRM. Returns at once while another relay holds the lease."""
    report = actions.relay()
    if report.sent or report.failed or report.dead:
        log.info(
            "CRM relay: %d sent, %d skipped, %d backing off, %d dead in %d batches",
            report.sent,
            report.skipped,
            report.failed,
            report.dead,
            report.batches,
        )
    return report.sent


@shared_task(acks_late=True, reject_on_worker_lost=True, time_limit=600, soft_time_limit=550)
def prune_outbox() -> int:
    """Beat: drop sent changes older than CRM_OUTBOX_RETENTION_DAYS."""
    return actions.prune()
