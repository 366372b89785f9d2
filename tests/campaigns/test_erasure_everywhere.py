"""An erasure on request erases a person everywhere (issue 20, item 2): after it, a dump of every table of the
database holds neither the address in any format nor the contact's attribute values; the audit line keeps only
the hash; and the address is blocked (no send, no contact) until an operator allows it again, which restores the
suppressions it had. The registry in receipts/personal.py names every text field of every model, so a new field
that could hold an address fails here until it is decided on."""

from __future__ import annotations

import json
from typing import Any

import pytest
from django.apps import apps
from django.contrib.admin.models import ADDITION, LogEntry
from django.contrib.auth import get_user_model
from django.contrib.contenttypes.models import ContentType
from django.db import connection, models
from django.test import Client
from rest_framework.test import APIClient

from campaigns import dispatch, lifecycle
from campaigns.contacts import import_contacts
from campaigns.models import Contact, Send
from receipts import personal
from receipts.actions import retention, suppression
from receipts.models import Erasure, SoftBounce, Suppression
from simulator import SimulatorServer
from tests.conftest import drain, post_webhook

pytestmark = pytest.mark.django_db

NUMBER = "+15557770123"
# Every way the number is written in what we store or receive.
NUMBER_FORMS = ("+15557770123", "15557770123", "5557770123", "555-777-0123", "(555) 777-0123", "%2B15557770123")
EMAIL = "zebulon.q@example.org"
ATTRIBUTES = {"first_name": "Zebulon", "last_name": "Quarterfield", "loyalty_code": "ZQ-771-GOLD"}
TEXT_FIELDS = (models.CharField, models.TextField, models.JSONField, models.BinaryField)


def personal_models() -> list[Any]:
    """Our apps' models, and the admin's log (an operator's edit quotes the row it changed)."""
    ours = [m for m in apps.get_models() if m._meta.app_label in ("receipts", "campaigns", "crm_sync")]
    return [m for m in ours if not m._meta.proxy] + [LogEntry]


def test_every_text_field_of_every_model_is_named_personal_or_not_exactly_once() -> None:
    unnamed, twice = [], []
    for model in personal_models():
        label = model._meta.label
        for field in model._meta.concrete_fields:
            if not isinstance(field, TEXT_FIELDS):
                continue
            yes = field.name in personal.PERSONAL.get(label, {})
            no = field.name in personal.NOT_PERSONAL.get(label, frozenset())
            if not yes and not no:
                unnamed.append(f"{label}.{field.name}")
            if yes and no:
                twice.append(f"{label}.{field.name}")
    assert unnamed == [], "say in receipts/personal.py whether these can hold personal data, and how erasure goes"
    assert twice == []
    # And the registry names nothing that is not there.
    fields = {m._meta.label: {f.name for f in m._meta.concrete_fields} for m in personal_models()}
    stale = [
        f"{label}.{name}"
        for table in (personal.PERSONAL, personal.NOT_PERSONAL)
        for label, names in table.items()
        for name in names
        if name not in fields.get(label, set())
    ]
    assert stale == []


def dump() -> str:
    """Every row of every table, as text: what a dump of the database would show."""
    lines = []
    with connection.cursor() as cursor:
        for table in connection.introspection.table_names():
            cursor.execute(f"SELECT * FROM {connection.ops.quote_name(table)}")  # noqa: S608 - names from the DB
            lines += [f"{table}: {row!r}" for row in cursor.fetchall()]
    return "\n".join(lines)


def leaks(text: str) -> list[str]:
    found = [form for form in NUMBER_FORMS if form in text]
    found += [word for word in (EMAIL, EMAIL.upper(), *ATTRIBUTES.values()) if word.lower() in text.lower()]
    return found


@pytest.fixture
def victim(api: APIClient, providers: SimulatorServer, settings: Any) -> dict[str, Any]:
    """The person, held everywhere the product can hold them: a contact with attributes, a campaign's send and
    its tracked message, a single send, a message with receipts and an orphan receipt quoting the number, a
    suppression with history and its CRM change, a soft bounce, and an operator's admin log line."""
    settings.CRM_BACKEND = "fake"
    rows = [
        {"crm_record_id": "003-victim", "phone": "+1 (555) 777-0123", "email": EMAIL, **ATTRIBUTES},
        {"crm_record_id": "003-other", "phone": "+15557770999", "first_name": "Otto"},
    ]
    assert not import_contacts(enumerate(rows)).refused
    campaign = api.post(
        "/api/v1/campaigns/",
        {
            "name": "reminders",
            "channel": "sms",
            "provider": "genesys_sms",
            "body": "Hi {{ contact.first_name }} {{ contact.last_name }}, code {{ contact.loyalty_code }}.",
        },
        format="json",
    ).json()
    assert api.post(f"/api/v1/campaigns/{campaign['id']}/start/").status_code == 200
    while lifecycle.plan_batch(campaign["id"]):
        pass
    while dispatch.dispatch().claimed:
        pass
    single = {"channel": "sms", "provider": "genesys_sms", "to": NUMBER, "content": {"text": "Dear Zebulon"}}
    assert api.post("/api/v1/sends/", single, format="json", HTTP_IDEMPOTENCY_KEY="one").status_code == 202
    while dispatch.dispatch().claimed:
        pass
    registered = api.post(
        "/api/v1/messages/",
        {"channel": "sms", "provider": "generic", "provider_message_id": "gen-1", "to": "555-777-0123"},
        format="json",
    )
    assert registered.status_code in (200, 201), registered.content
    web = Client()
    for body in (
        {"id": "gen-1", "status": "delivered", "timestamp": "2026-11-20T10:00:00Z", "to": "15557770123"},
        {"id": "never-sent", "status": "delivered", "timestamp": "2026-11-20T10:00:00Z", "to": "%2B15557770123"},
    ):
        assert post_webhook(web, "generic", json.dumps(body)).status_code == 200
    drain()
    stop, _ = suppression.suppress("sms", NUMBER, "unsubscribe", source="api", note="replied STOP")
    SoftBounce.objects.create(channel="sms", address=NUMBER, receipt_key="sb-1", bounced_at=stop.created_at)
    operator = get_user_model().objects.create_superuser("ann", password="pw")
    LogEntry.objects.log_action(
        operator.pk, ContentType.objects.get_for_model(Suppression).pk, stop.pk, str(stop), ADDITION, "Added."
    )
    held = dump()
    assert leaks(held), "the fixture should hold the person somewhere before the erasure"
    assert "Zebulon Quarterfield" in held  # the rendered text of the campaign's send
    return {"campaign": campaign["id"], "operator": operator}


def test_after_an_erasure_no_table_holds_the_address_or_the_contacts_attributes(victim: dict[str, Any]) -> None:
    erasure = retention.erase_address("(555) 777-0123", requested_by="ticket 9", note="erase +1 555 777 0123")

    assert leaks(dump()) == []
    assert erasure.address_sha256 == personal.address_digest("sms", NUMBER)
    assert erasure.suppressed_for == ["unsubscribe"]
    assert erasure.others["campaigns.Contact"] == 1
    assert erasure.others["campaigns.Send"] == 2  # the campaign's and the single send
    # The other contact and what was sent to them are untouched; the campaign's counts still add up.
    assert Contact.objects.get().crm_record_id == "003-other"
    assert Send.objects.filter(campaign_id=victim["campaign"]).count() == 2
    assert Send.objects.get(campaign_id=victim["campaign"], to="").error == "erased on request"


def test_an_erased_address_is_refused_until_it_is_allowed_again(
    victim: dict[str, Any], api: APIClient, providers: SimulatorServer
) -> None:
    retention.erase_address(NUMBER, requested_by="ticket 9")
    again = {"channel": "sms", "provider": "genesys_sms", "to": "+1 555 777 0123", "content": {"text": "hi"}}

    refused = api.post("/api/v1/sends/", again, format="json", HTTP_IDEMPOTENCY_KEY="two")
    assert refused.status_code == 400
    assert "erased" in refused.json()["detail"]["to"][0] and "0123" not in refused.content.decode()
    report = import_contacts(enumerate([{"crm_record_id": "003-back", "phone": "555-777-0123"}]))
    assert (report.added, [line for line, _ in report.refused]) == (0, [0])
    assert "erased" in report.refused[0][1]
    check = api.post("/api/v1/suppressions/check/", {"channel": "sms", "addresses": [NUMBER]}, format="json")
    assert check.json()["results"][0]["reasons"] == ["erased"]
    # A send planned before (the sweep may hold one) is refused at send, like a suppressed one.
    planned, _ = dispatch.plan(again, None)
    while dispatch.dispatch().claimed:
        pass
    planned.refresh_from_db()
    assert (planned.state, planned.error) == ("suppressed", "suppressed: erased")

    # Allowed again on purpose, from the admin: the address is typed again, and its opt-out comes back with it.
    admin = Client()
    admin.force_login(victim["operator"])
    page = "/admin/receipts/erasure/allow/"
    assert admin.get(page).status_code == 200
    assert admin.post(page, {"address": NUMBER, "note": "asked to hear from us"}).status_code == 200  # unconfirmed
    assert suppression.is_suppressed("sms", NUMBER) == ["erased"]
    done = admin.post(page, {"address": "(555) 777-0123", "note": "asked again", "confirm": "on"})
    assert done.status_code == 302
    assert suppression.is_suppressed("sms", NUMBER) == ["unsubscribe"]
    assert Erasure.objects.get().lifted_by == "operator:ann"
    report = import_contacts(enumerate([{"crm_record_id": "003-back", "phone": "555-777-0123"}]))
    assert (report.added, report.refused) == (1, [])
    assert api.post("/api/v1/sends/", again, format="json", HTTP_IDEMPOTENCY_KEY="three").status_code == 202


def test_the_admin_erases_everywhere_and_says_what_went(victim: dict[str, Any]) -> None:
    admin = Client()
    admin.force_login(victim["operator"])
    done = admin.post(
        "/admin/receipts/erasure/add/",
        {"address": EMAIL.upper(), "note": f"request about {NUMBER}", "confirm": "on"},
        follow=True,
    )
    assert done.status_code == 200
    assert "1 campaigns.Contact" in done.content.decode()
    assert not Contact.objects.filter(email=EMAIL).exists()
    assert NUMBER not in Erasure.objects.get().note  # the request's note is masked
