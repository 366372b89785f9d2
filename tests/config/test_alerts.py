"""Alerts: a condition found fires once (banner, webhook, mail), stays open while it holds, and resolves with a
second notice; a notice that fails is sent again at the next check."""

from __future__ import annotations

import json
import re
import threading
from collections.abc import Iterator
from datetime import timedelta
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import pytest
from django.core import mail
from django.test import Client
from django.utils import timezone

from config import alerts
from crm_sync import actions as crm
from crm_sync.models import OutboxMessage
from receipts.actions import rollups
from receipts.models import Alert, Escalation, InboxState, Message, ReceiptEvent
from tests.conftest import drain, post_webhook, register

pytestmark = pytest.mark.django_db


class Receiver:
    """A webhook receiver on localhost: what an alerting integration would be, over real HTTP."""

    def __init__(self) -> None:
        self.bodies: list[dict[str, Any]] = []
        self.status = 200
        receiver = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                length = int(self.headers["Content-Length"])
                receiver.bodies.append(json.loads(self.rfile.read(length)))
                self.send_response(receiver.status)
                self.end_headers()

            def log_message(self, *args: Any) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}/alerts"
        threading.Thread(target=self.server.serve_forever, daemon=True).start()


@pytest.fixture
def receiver(settings: Any) -> Iterator[Receiver]:
    receiver = Receiver()
    settings.ALERT_WEBHOOK_URL = receiver.url
    settings.ALERT_EMAILS = ["oncall@example.com"]
    settings.EMAIL_BACKEND = "django.core.mail.backends.locmem.EmailBackend"
    yield receiver
    receiver.server.shutdown()


def failing_provider(client: Client, failed: int, delivered: int) -> None:
    for i in range(failed + delivered):
        register(provider_message_id=f"a-{i}", to=f"+1555000{i:04}")
        body = {"id": f"a-{i}", "status": "failed" if i < failed else "delivered", "timestamp": "2026-11-28T10:00:00Z"}
        assert post_webhook(client, "generic", json.dumps(body)).status_code == 200
    drain()
    rollups.refresh()


def test_a_low_delivery_rate_fires_once_and_resolves_with_a_second_notice(
    client: Client, receiver: Receiver, settings: Any
) -> None:
    settings.ALERT_MIN_FINAL = 20
    failing_provider(client, failed=10, delivered=15)  # 60% delivered

    assert alerts.evaluate()["fired"] == ["delivery_rate:generic"]
    assert [b["state"] for b in receiver.bodies] == ["firing"]
    assert receiver.bodies[0]["title"].startswith("Generic JSON delivers 60.0%")
    assert receiver.bodies[0]["link"].startswith(
        "http://127.0.0.1:8000/admin/receipts/message/?provider__exact=generic"
    )
    assert [m.subject for m in mail.outbox] == ["[firing] Generic JSON delivers 60.0% of its messages (under 90%)"]

    assert alerts.evaluate() == {"fired": [], "resolved": []}  # still holds: no second notice
    assert len(receiver.bodies) == 1

    Message.objects.update(status="delivered", failure_category="", updated_at=timezone.now())
    rollups.refresh()
    assert alerts.evaluate()["resolved"] == ["delivery_rate:generic"]
    assert [b["state"] for b in receiver.bodies] == ["firing", "resolved"]
    assert Alert.objects.get().resolved_at is not None


def test_too_few_messages_never_page_anyone(client: Client, receiver: Receiver) -> None:
    failing_provider(client, failed=3, delivered=0)
    assert alerts.evaluate()["fired"] == []


def test_a_notice_the_webhook_refused_is_sent_again_at_the_next_check(
    client: Client, receiver: Receiver, settings: Any
) -> None:
    settings.ALERT_MIN_FINAL = 5
    failing_provider(client, failed=5, delivered=0)
    receiver.status = 503
    alerts.evaluate()
    assert not Alert.objects.get().notified
    receiver.status = 200
    alerts.evaluate()
    assert Alert.objects.get().notified
    assert [b["state"] for b in receiver.bodies] == ["firing", "firing"]


def test_each_rule(client: Client, receiver: Receiver, settings: Any) -> None:
    settings.ALERT_REVIEW_QUEUE_MAX = 0
    now = timezone.now()
    quiet = register(provider="webex_connect", provider_message_id="wx-1")
    Message.objects.filter(pk=quiet.pk).update(status="sent", sent_at=now - timedelta(hours=1))
    reviewed = register(provider_message_id="r-1")
    Message.objects.filter(pk=reviewed.pk).update(needs_review=True, review_reason="no_receipt")
    ReceiptEvent.objects.create(provider="generic", body="{}", state=InboxState.DEAD, dedupe_key="x")
    Escalation.objects.create(message=reviewed, deadline=now, status="pending")

    keys = {f.key for f in alerts.findings(now)}

    assert {"silent:webex_connect", "review_queue", "inbox_dead", "escalations"} <= keys
    assert "silent:generic" not in keys  # nothing of it in flight


def test_open_alerts_show_as_a_banner_to_staff(admin_client: Client, client: Client) -> None:
    Alert.objects.create(
        key="inbox_dead", title="3 receipts failed every attempt", link="/admin/receipts/receiptevent/"
    )
    html = admin_client.get("/admin/").content.decode()
    assert 'id="alerts"' in html
    assert "3 receipts failed every attempt" in html
    Alert.objects.update(resolved_at=timezone.now())
    assert 'id="alerts"' not in admin_client.get("/admin/").content.decode()


def test_a_complaint_rate_over_the_threshold_fires(client: Client, receiver: Receiver, settings: Any) -> None:
    settings.ALERT_MIN_FINAL = 20
    for i in range(25):
        register(channel="email", provider_message_id=f"e-{i}", to=f"user{i}@example.com")
        body = {"id": f"e-{i}", "status": "delivered", "timestamp": "2026-11-28T10:00:00Z"}
        assert post_webhook(client, "generic", json.dumps(body)).status_code == 200
    drain()
    Message.objects.filter(provider_message_id="e-0").update(complained_at=timezone.now(), updated_at=timezone.now())
    rollups.refresh()

    assert "complaint_rate" in alerts.evaluate()["fired"]  # 1 of 25 delivered: 4%
    assert Alert.objects.get(key="complaint_rate").title == "Email complaint rate 4.00% (over 0.10%)"


def changes_for_the_crm(client: Client) -> None:
    """Status changes, each written to the CRM outbox as it is made."""
    register(provider_message_id="crm-1", to="+15550007777", crm_record_id="003A")
    assert post_webhook(client, "generic", json.dumps({"id": "crm-1", "status": "delivered"})).status_code == 200
    drain()
    assert OutboxMessage.objects.pending().exists()


def test_with_no_crm_configured_nothing_waits_for_one(
    client: Client, admin_client: Client, receiver: Receiver, settings: Any
) -> None:
    settings.CRM_BACKEND = "none"
    changes_for_the_crm(client)
    later = timezone.now() + timedelta(minutes=40)

    assert "crm_lag" not in {f.key for f in alerts.findings(later)}
    assert alerts.evaluate(later)["fired"] == []
    assert crm.summary(later).lag is None
    html = admin_client.get("/admin/dashboard/").content.decode()
    assert "CRM changes waiting" not in html
    assert "no CRM configured" in html
    assert re.search(r'crm_relay_lag_seconds\{backend="none"\} 0\.0', client.get("/metrics").content.decode())

    # With a CRM to push to, the same changes wait for it, and 40 minutes is late.
    settings.CRM_BACKEND = "generic"
    assert alerts.evaluate(later)["fired"] == ["crm_lag"]


def test_an_open_alert_says_what_holds_now_not_what_held_when_it_fired(
    client: Client, admin_client: Client, receiver: Receiver, settings: Any
) -> None:
    settings.CRM_BACKEND, settings.ALERT_CRM_LAG_MINUTES = "generic", 10
    changes_for_the_crm(client)
    start = timezone.now()

    assert alerts.evaluate(start + timedelta(minutes=11))["fired"] == ["crm_lag"]
    assert Alert.objects.get().title == "CRM sync is 11 minutes behind (over 10)"

    assert alerts.evaluate(start + timedelta(minutes=51)) == {"fired": [], "resolved": []}
    alert = Alert.objects.get()
    assert alert.title == "CRM sync is 51 minutes behind (over 10)"
    assert alert.fired_at == start + timedelta(minutes=11)  # still the one alert, fired once
    assert "CRM sync is 51 minutes behind" in admin_client.get("/admin/").content.decode()
    assert [b["state"] for b in receiver.bodies] == ["firing"]  # a figure that moved is not a new notice
