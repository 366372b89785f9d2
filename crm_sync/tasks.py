"""The CRM relay's Celery tasks (beat runs both); explicit names, and their former names still answer."""

import logging

from crm_sync import actions
from receipts.tasks import task

log = logging.getLogger(__name__)


@task("crm_sync.relay_outbox", formerly="crm_sync.tasks.relay_outbox")
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


@task("crm_sync.prune_outbox", formerly="crm_sync.tasks.prune_outbox", time_limit=600, soft_time_limit=550)
def prune_outbox() -> int:
    """Beat: drop sent changes older than CRM_OUTBOX_RETENTION_DAYS."""
    return actions.prune()
