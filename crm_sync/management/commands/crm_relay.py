"""Run the CRM relay by hand: once until nothing is due, or in a loop (what beat does, without Celery)."""

import time
from typing import Any

from django.conf import settings
from django.core.management.base import BaseCommand

from crm_sync import actions


class Command(BaseCommand):
    help = "Send due CRM outbox changes now (--loop: keep relaying every CRM_RELAY_INTERVAL seconds)."

    def add_arguments(self, parser: Any) -> None:
        parser.add_argument("--loop", action="store_true", help="keep going until interrupted")

    def handle(self, *args: Any, **options: Any) -> None:
        while True:
            report = actions.relay()
            if report.busy:
                self.stdout.write("another relay holds the lease")
            elif report.batches or not options["loop"]:
                self.stdout.write(
                    f"{report.sent} sent, {report.skipped} skipped, {report.failed} backing off, "
                    f"{report.dead} dead ({report.batches} batches)"
                )
            if not options["loop"]:
                return
            time.sleep(settings.CRM_RELAY_INTERVAL)
