"""Send a demo campaign through the provider simulator and report what comes back (`make demo`)."""

from __future__ import annotations

import time
from collections import Counter
from typing import Any

import httpx
from django.conf import settings
from django.core.management.base import BaseCommand, CommandError, CommandParser
from django.utils import timezone

from campaigns import lifecycle
from campaigns.api import request_planning
from campaigns.contacts import import_contacts
from campaigns.models import Campaign
from receipts.models import Message, MessageEvent

# (provider, channel, priority, share of the campaign)
PLAN = [
    ("genesys_cloud", "sms", "high", 0.4),
    ("genesys_sms", "sms", "normal", 0.3),
    ("webex_connect", "sms", "normal", 0.15),
    ("webex_connect", "email", "normal", 0.15),
]


class Command(BaseCommand):
    help = "Send a demo campaign through the provider simulator, then report statuses, polls and review items."

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("--messages", type=int, default=60, help="how many messages (default 60)")
        parser.add_argument("--app-url", default=settings.SIMULATOR_APP_URL, help="the app (default: WEB_PORT)")
        parser.add_argument("--simulator-url", default=f"http://127.0.0.1:{settings.SIMULATOR_PORT}")
        parser.add_argument("--report-every", type=float, default=10.0, help="seconds between reports")
        parser.add_argument("--report-for", type=float, default=0, help="stop after this many seconds (0: never)")

    def handle(self, *args: Any, **options: Any) -> None:
        self.wait_for(f"{options['app_url']}/healthz", "the app")
        self.wait_for(f"{options['simulator_url']}/_sim/health", "the provider simulator")
        campaign = f"demo-{timezone.now():%H%M%S}"
        planned = self.send_campaign(campaign, options["messages"])
        self.stdout.write(
            f"Started {planned} messages as campaigns {campaign}-*. Watch them in the admin: "
            f"{options['app_url']}/admin/campaigns/campaign/ and the review queue: "
            f"{options['app_url']}/admin/receipts/reviewqueue/"
        )
        started = time.monotonic()
        while not options["report_for"] or time.monotonic() - started < options["report_for"]:
            time.sleep(options["report_every"])
            self.report(campaign, time.monotonic() - started)

    def wait_for(self, url: str, what: str, timeout: float = 90) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            try:
                if httpx.get(url, timeout=2).status_code == 200:
                    return
            except httpx.HTTPError:
                pass
            time.sleep(0.5)
        raise CommandError(f"{what} did not answer at {url} within {timeout:.0f} s")

    def send_campaign(self, campaign: str, count: int) -> int:
        """Contacts, then one campaign per provider and channel, started: the sending worker sends them as it
        sends any campaign (suppression checked at send, within the providers' limits)."""
        rows = [
            {
                "crm_record_id": f"demo-contact-{index}",
                "phone": f"+1555010{index:04d}",
                "email": f"demo-{index}@example.com",
                "first_name": f"Guest {index}",
            }
            for index in range(count)
        ]
        import_contacts(enumerate(rows))
        groups: dict[tuple[str, str, str], list[str]] = {}
        for index in range(count):
            groups.setdefault(pick(index, count), []).append(f"demo-contact-{index}")
        planned = 0
        for (provider, channel, priority), records in groups.items():
            made = Campaign.objects.create(
                name=f"{campaign}-{provider}-{channel}",
                channel=channel,
                provider=provider,
                priority=priority,
                subject="Your appointment" if channel == "email" else "",
                body="Hi {{ contact.first_name }}: your appointment is tomorrow at 10:00. Reply STOP to opt out.",
                audience={"crm_record_ids": records},
            )
            try:
                lifecycle.start(made)
            except lifecycle.LifecycleError as exc:
                self.stderr.write(f"campaign {made.name} did not start: {exc}")
                continue
            planned += len(records)
        request_planning()
        return planned

    def report(self, campaign: str, elapsed: float) -> None:
        messages = Message.objects.filter(campaign__name__startswith=campaign)
        statuses = Counter(messages.values_list("status", flat=True))
        events = Counter(
            MessageEvent.objects.filter(message__campaign__name__startswith=campaign).values_list("source", flat=True)
        )
        review = messages.filter(needs_review=True).count()
        by_status = ", ".join(f"{status} {n}" for status, n in sorted(statuses.items()))
        self.stdout.write(
            f"[{elapsed:4.0f} s] {by_status} | receipts: {events.get('webhook', 0)} by webhook, "
            f"{events.get('poll', 0)} by poll | needing review: {review}"
        )


def pick(index: int, count: int) -> tuple[str, str, str]:
    position = (index + 0.5) / max(count, 1)
    edge = 0.0
    for provider, channel, priority, share in PLAN:
        edge += share
        if position < edge:
            return provider, channel, priority
    provider, channel, priority, _ = PLAN[-1]
    return provider, channel, priority
