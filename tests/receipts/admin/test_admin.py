"""The operator's admin: browse and filter messages and receipts, read a timeline, replay dead events."""

from __future__ import annotations

import json
from typing import Any

import pytest
from django.test import Client

from receipts.models import InboxState, Message, ReceiptEvent
from tests.conftest import drain, post_webhook, register

pytestmark = pytest.mark.django_db


@pytest.fixture
def delivered_and_failed(client: Client) -> tuple[Any, Any]:
    delivered = register(provider_message_id="adm-1", to="+15550001111", crm_record_id="CRM-1", campaign="spring")
    failed = register(channel="email", provider="generic", provider_message_id="adm-2", to="x@example.com")
    for message_id, status in (("adm-1", "delivered"), ("adm-2", "failed")):
        body = {"id": message_id, "status": status, "timestamp": "2026-11-20T10:00:00Z", "errorCode": "blocked"}
        post_webhook(client, "generic", json.dumps(body))
    drain()
    return delivered, failed


def listed(response: Any, *needles: str) -> list[bool]:
    html = response.content.decode()
    return [needle in html for needle in needles]


@pytest.mark.parametrize(
    ("query", "shows_first", "shows_second"),
    [
        ("status__exact=delivered", True, False),
        ("channel__exact=email", False, True),
        ("provider__exact=generic", True, True),
        ("needs_review__exact=0", True, True),
        ("failure_category__exact=permanent_block", False, True),
        ("q=CRM-1", True, False),
        ("q=x@example.com", False, True),
        ("q=X@Example.COM", False, True),  # an email in its normal form
        ("q=adm-2", False, True),
        ("q=%28555%29%20000-1111", True, False),  # a phone number as typed: (555) 000-1111
        ("q=%2B1%20555%20000%201111", True, False),  # +1 555 000 1111
        ("q=adm", False, False),  # exact, not a substring: an index answers it
        ("q=CRM", False, False),
        ("created_at__range__gte=2000-01-01&created_at__range__lte=2100-01-01", True, True),
        ("created_at__range__gte=2000-01-01&created_at__range__lte=2000-01-02", False, False),
    ],
)
def test_message_list_filters_and_search(
    admin_client: Client, delivered_and_failed: tuple, query: str, shows_first: bool, shows_second: bool
) -> None:
    response = admin_client.get(f"/admin/receipts/message/?{query}")
    assert response.status_code == 200
    assert listed(response, "adm-1", "adm-2") == [shows_first, shows_second]


def test_campaign_filter_by_id(admin_client: Client, delivered_and_failed: tuple) -> None:
    delivered, _ = delivered_and_failed
    response = admin_client.get(f"/admin/receipts/message/?campaign__id__exact={delivered.campaign_id}")
    assert listed(response, "adm-1", "adm-2") == [True, False]


def test_message_page_shows_its_timeline(admin_client: Client, delivered_and_failed: tuple) -> None:
    _, failed = delivered_and_failed
    response = admin_client.get(f"/admin/receipts/message/{failed.pk}/change/")
    assert response.status_code == 200
    html = response.content.decode()
    assert "Timeline: every receipt, oldest first (1)" in html
    assert "failed/blocked" in html  # the provider code of its receipt
    assert "Permanent Block" in html  # its failure category, as the admin labels it
    assert "<strong>set the status</strong>" in html  # which receipt set the status
    assert "2026-11-20 10:00:00 UTC" in html  # provider time to the second, with its zone
    assert "<details><summary>raw receipt" in html  # the raw receipt folded
    assert f"message_id__exact={failed.pk}" in html  # its CRM changes
    assert "suppression/?q=x%40example.com" in html  # its address's suppressions
    assert "review history" not in html.lower()  # no empty tables
    assert "icon-no.svg" not in html  # no red crosses for "not assumed", "not retryable"


def test_a_conflict_is_explained_and_settled_from_the_message_page(admin_client: Client, client: Client) -> None:
    message = register(provider_message_id="conflict-1")
    for status, at in (("delivered", "10:00:00"), ("failed", "10:00:05")):
        body = {"id": "conflict-1", "status": status, "timestamp": f"2026-11-20T{at}Z", "errorCode": "blocked"}
        post_webhook(client, "generic", json.dumps(body))
    drain()
    message.refresh_from_db()
    assert message.review_reason == "conflicting_receipts"
    html = admin_client.get(f"/admin/receipts/message/{message.pk}/change/").content.decode()
    assert "final receipts that disagree: delivered" in html
    assert 'value="confirm_delivered"' in html
    response = admin_client.post(
        "/admin/receipts/reviewqueue/",
        {"action": "poll_again", "_selected_action": str(message.pk), "index": "0"},
    )
    assert response.status_code == 302
    message.refresh_from_db()
    assert message.resolutions.count() == 1
    html = admin_client.get(f"/admin/receipts/message/{message.pk}/change/").content.decode()
    assert "review history" in html.lower()


def test_message_event_list_filters(admin_client: Client, delivered_and_failed: tuple) -> None:
    response = admin_client.get("/admin/receipts/messageevent/?status__exact=failed")
    assert response.status_code == 200
    assert listed(response, "adm-1", "adm-2") == [False, True]
    response = admin_client.get("/admin/receipts/messageevent/?engagement__exact=read")
    assert listed(response, "adm-1", "adm-2") == [False, False]
    response = admin_client.get("/admin/receipts/messageevent/?failure_category__exact=permanent_block")
    assert listed(response, "adm-1", "adm-2") == [False, True]


def test_receipt_event_page_masks_addresses(admin_client: Client, client: Client) -> None:
    post_webhook(client, "generic", b'{"id": "m", "status": "sent", "to": "+15551234567"}')
    event = ReceiptEvent.objects.get()
    response = admin_client.get(f"/admin/receipts/receiptevent/{event.pk}/change/")
    assert response.status_code == 200
    html = response.content.decode()
    assert "+15551234567" not in html
    assert "***67" in html


def test_receipt_event_errors_are_masked_in_the_list_and_the_page(admin_client: Client) -> None:
    """An error stored before errors were masked on write still shows masked."""
    event = ReceiptEvent.objects.create(
        provider="generic", state="dead", body="{}", error="DataError: Key (to)=(+15551234567) alice@example.com"
    )

    page = admin_client.get(f"/admin/receipts/receiptevent/{event.pk}/change/").content.decode()
    listing = admin_client.get("/admin/receipts/receiptevent/").content.decode()

    for html in (page, listing):
        assert "+15551234567" not in html and "alice@example.com" not in html
        assert "***67" in html


def test_replay_says_what_became_of_each_event_and_what_it_skipped(admin_client: Client, client: Client) -> None:
    register(provider_message_id="rp-1")
    post_webhook(client, "generic", b'{"id": "rp-1", "status": "delivered", "timestamp": "2026-11-20T10:00:00Z"}')
    post_webhook(client, "generic", b'{"id": "rp-2", "status": "sent", "timestamp": "2026-11-20T10:00:00Z"}')
    post_webhook(client, "generic", b'{"id": "rp-3", "status": "sent", "timestamp": "2026-11-20T10:00:00Z"}')
    dead, waiting, unmatched = ReceiptEvent.objects.order_by("id")
    ReceiptEvent.objects.filter(pk=dead.pk).update(state=InboxState.DEAD, attempts=5)
    ReceiptEvent.objects.filter(pk=unmatched.pk).update(state=InboxState.UNMATCHED)

    response = admin_client.post(
        "/admin/receipts/receiptevent/",
        {"action": "replay", "_selected_action": [dead.pk, waiting.pk, unmatched.pk]},
    )

    assert response.status_code == 200
    text = response.content.decode()
    assert 'outcome-processed">processed' in text  # the dead one, its message registered: done now
    assert 'outcome-orphan">waiting for its message' in text  # rp-3 still has no message
    assert "1 selected event(s) were left alone" in text
    dead.refresh_from_db()
    assert dead.state == InboxState.PROCESSED
    assert Message.objects.get(provider_message_id="rp-1").status == "delivered"


def test_operators_cannot_edit_receipts(admin_client: Client, delivered_and_failed: tuple) -> None:
    delivered, _ = delivered_and_failed
    response = admin_client.post(f"/admin/receipts/message/{delivered.pk}/change/", {"status": "failed"})
    assert response.status_code == 403
    delivered.refresh_from_db()
    assert delivered.status == "delivered"


def test_the_admin_index_links_the_operator_pages_beside_the_models(admin_client: Client) -> None:
    page = admin_client.get("/admin/").content.decode()

    assert 'href="/admin/receipts/message/"' in page  # Django's own app list is still there
    for url in ("/admin/provider-limits/", "/metrics", "/api/docs/"):
        assert f'href="{url}"' in page
    assert admin_client.get("/admin/provider-limits/").status_code == 200


def test_the_index_names_things_as_people_do_and_the_site_leads_to_the_dashboard(admin_client: Client) -> None:
    html = admin_client.get("/admin/").content.decode()
    assert ">Retries<" in html
    assert ">API clients<" in html
    assert "Retrys" not in html
    assert 'href="/admin/dashboard/">View site' in html or 'href="/admin/dashboard/"' in html
    root = admin_client.get("/")
    assert (root.status_code, root["Location"]) == (302, "/admin/dashboard/")


def test_pages_say_their_title_once(admin_client: Client) -> None:
    for url in ("/admin/provider-limits/", "/admin/receipts/suppression/import/", "/admin/dashboard/"):
        html = admin_client.get(url).content.decode()
        assert html.count("<h1>") == 1, url


def test_bootstrap_admin_prints_the_address_the_app_listens_on(monkeypatch: Any, capsys: Any) -> None:
    from django.core.management import call_command

    monkeypatch.setenv("WEB_PORT", "8123")
    call_command("bootstrap_admin", "--username", "boss")
    out = capsys.readouterr().out
    assert "http://127.0.0.1:8123/admin/" in out
    assert "manage.py changepassword boss" in out


def test_an_escalation_says_whom_to_call_and_how_to_mark_it_done(admin_client: Client) -> None:
    from django.utils import timezone

    from receipts.models import Escalation

    message = register(provider_message_id="crit-1", to="+15550009999", crm_record_id="003XX", priority="critical")
    escalation = Escalation.objects.create(message=message, deadline=timezone.now(), status="pending")
    html = admin_client.get(f"/admin/receipts/escalation/{escalation.pk}/change/").content.decode()
    assert "Call +15550009999 (CRM record 003XX)" in html
    assert "Acknowledge" in html


def test_the_review_queue_puts_critical_messages_first_then_the_oldest(admin_client: Client) -> None:
    from datetime import timedelta

    from django.utils import timezone

    from receipts.models import Message

    now = timezone.now()
    for name, priority, age in (("old-bulk", "bulk", 5), ("new-crit", "critical", 1), ("old-normal", "normal", 4),
                                ("new-normal", "normal", 2)):  # fmt: skip
        message = register(provider_message_id=name, priority=priority)
        Message.objects.filter(pk=message.pk).update(
            needs_review=True, review_reason="no_receipt", created_at=now - timedelta(hours=age)
        )
    html = admin_client.get("/admin/receipts/reviewqueue/").content.decode()
    shown = sorted(("old-bulk", "new-crit", "old-normal", "new-normal"), key=html.find)
    assert shown == ["new-crit", "old-normal", "new-normal", "old-bulk"]
