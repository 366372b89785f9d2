"""Run the fake CRM (simulator/fake_crm.py) in the foreground until Ctrl-C."""

import signal
import threading
from typing import Any

from django.core.management.base import BaseCommand

from simulator.fake_crm import FakeCrm


class Command(BaseCommand):
    help = "Run a fake CRM (generic endpoint, Salesforce token and composite upsert) on 127.0.0.1."

    def add_arguments(self, parser: Any) -> None:
        parser.add_argument("--port", type=int, default=8765)
        parser.add_argument("--signing-secret", default="fake-crm-signing-secret")
        parser.add_argument("--client-id", default="fake-client-id")
        parser.add_argument("--client-secret", default="fake-client-secret")
        parser.add_argument("--latency", type=float, default=0.0, help="seconds before every answer")
        parser.add_argument("--throttle", type=float, default=0.0, help="share of requests answered 429")
        parser.add_argument("--fail-share", type=float, default=0.0, help="share of requests answered 503")

    def handle(self, *args: Any, **options: Any) -> None:
        crm = FakeCrm(
            "127.0.0.1",
            options["port"],
            signing_secret=options["signing_secret"],
            client_id=options["client_id"],
            client_secret=options["client_secret"],
        )
        crm.set_latency(options["latency"])
        if options["throttle"]:
            crm.throttle(options["throttle"])
        if options["fail_share"]:
            crm.fail_share(options["fail_share"])
        stop = threading.Event()
        signal.signal(signal.SIGTERM, lambda *_: stop.set())
        crm.start()
        self.stdout.write(f"fake CRM on {crm.url}")
        self.stdout.write(
            f"  generic:    CRM_BACKEND=generic CRM_URL={crm.generic_url} CRM_SIGNING_SECRET=<--signing-secret>"
        )
        self.stdout.write(
            f"  salesforce: CRM_BACKEND=salesforce SALESFORCE_TOKEN_URL={crm.token_url} "
            "SALESFORCE_CLIENT_ID=<--client-id> SALESFORCE_CLIENT_SECRET=<--client-secret>"
        )
        self.stdout.write("  control:    GET /_fake/summary, GET /_fake/changes, POST /_fake/faults, POST /_fake/reset")
        self.stdout.flush()
        try:
            while not stop.wait(0.5):
                pass
        except KeyboardInterrupt:
            pass
        finally:
            crm.stop()
