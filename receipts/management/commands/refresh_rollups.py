import time
from typing import Any

from django.core.management.base import BaseCommand, CommandError

from receipts.actions import rollups


class Command(BaseCommand):
    help = (
        "Count the delivery rollups again for every hour whose messages changed since the last refresh (all hours "
        "on the first run), with progress. Beat does the same every ROLLUP_INTERVAL; run this once after "
        "upgrading a database that already holds many messages."
    )

    def handle(self, *args: Any, **options: Any) -> None:
        started = time.monotonic()
        last = [0.0]

        def progress(done: int, total: int) -> None:
            if done == total or time.monotonic() - last[0] > 2:
                last[0] = time.monotonic()
                self.stdout.write(f"{done}/{total} hours counted ({time.monotonic() - started:.0f} s)")

        counted = rollups.refresh(progress=progress)
        if counted is None:
            raise CommandError("another refresh is running (beat's): try again in a few minutes")
        self.stdout.write(f"{counted} hour(s) counted in {time.monotonic() - started:.1f} s")
