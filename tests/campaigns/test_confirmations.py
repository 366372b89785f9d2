"""A reply "YES" (any of CONFIRM_WORDS, trimmed, any case) to a campaign's SMS confirms the latest message sent to
that number within CONFIRMATION_WINDOW_HOURS: the message keeps when and the word, the API and the admin show it,
and the CRM gets a ``confirmation`` change. Other replies confirm nothing, and the same reply processed twice
confirms once. The replies are Webex Connect MO events as the provider simulator pushes them."""

from __future__ import annotations

import json
import logging
import time
from datetime import timedelta
from typing import Any

import pytest
from django.contrib.auth.models import User
from django.test import Client
from django.utils import timezone
from rest_framework.test import APIClient

from campaigns.contacts import import_contacts
from crm_sync.adapters import field_map
from crm_sync.adapters.base import Change
from crm_sync.models import OutboxMessage
from receipts.models import Message, ReceiptEvent, Suppression
from simulator import SimulatorServer, webex_connect
from tests.campaigns.test_campaign_lifecycle import create, drain, start
from tests.conftest import drain as drain_inbox
from tests.conftest import post_webhook, register

pytestmark = pytest.mark.django_db

NUMBER = "+15550104242"


def reply(client: Client, text: str, number: str = NUMBER, tid: str | None = None, at: float | None = None) -> None:
    """The contact answers: the MO event the simulator pushes for ``POST /_sim/inbound``, then the worker runs."""
    mo = webex_connect.inbound_message(number, "ACME", text, time.time() if at is None else at)
    if tid is not None:
        mo.id = tid
    event = webex_connect.mo_event(mo)
    assert post_webhook(client, "webex_connect", json.dumps(event)).status_code == 200
    drain_inbox()


def confirmations() -> list[OutboxMessage]:
    return list(OutboxMessage.objects.filter(kind="confirmation").order_by("id"))


def sms(provider_message_id: str, **fields: Any) -> Message:
    return register(provider="genesys_sms", provider_message_id=provider_message_id, to=NUMBER, **fields)


def test_a_yes_to_a_campaign_sms_confirms_it_for_the_api_the_admin_and_the_crm(
    api: APIClient, client: Client, providers: SimulatorServer
) -> None:
    import_contacts(enumerate([{"crm_record_id": "003-ann", "phone": NUMBER, "first_name": "Ann"}]))
    campaign = start(api, create(api).json()["id"])
    assert drain().sent == 1
    [sent] = providers.sim.messages
    # The SMS Aggregation MT takes the number as digits in international format (issue 26).
    assert sent.to == NUMBER.removeprefix("+") and "Reply YES" in sent.body
    message = Message.objects.get(campaign=campaign)

    reply(client, "  yes\n")

    message.refresh_from_db()
    assert message.confirmation == "yes" and message.confirmed_at is not None
    assert timezone.now() - message.confirmed_at < timedelta(minutes=1)
    shown = api.get(f"/api/v1/messages/{message.pk}/").json()
    assert shown["confirmation"] == "yes" and shown["confirmed_at"] is not None
    assert api.get("/api/v1/messages/").json()["results"][0]["confirmation"] == "yes"

    [change] = confirmations()
    assert (change.crm_record_id, change.message_id) == ("003-ann", message.pk)
    assert change.payload["confirmation"] == "yes" and change.payload["confirmed_at"]
    assert change.payload["campaign"] == campaign.name
    assert NUMBER not in json.dumps(change.payload) and NUMBER[-10:] not in json.dumps(change.payload)

    client.force_login(User.objects.create_superuser("ops", "ops@example.com", "pw"))
    page = client.get(f"/admin/receipts/message/{message.pk}/change/").content.decode()
    assert "Confirmed at" in page and "Confirmation" in page and ">yes<" in page


def test_the_latest_message_to_the_number_is_the_one_confirmed(client: Client) -> None:
    older = sms("m-1")
    latest = sms("m-2")

    reply(client, "CONFIRM")

    older.refresh_from_db()
    latest.refresh_from_db()
    assert older.confirmed_at is None and older.confirmation == ""
    assert latest.confirmation == "CONFIRM"
    assert [c.message_id for c in confirmations()] == [latest.pk]


def test_a_yes_long_after_the_last_message_confirms_nothing_and_is_logged_masked(
    client: Client, settings: Any, caplog: pytest.LogCaptureFixture
) -> None:
    settings.CONFIRMATION_WINDOW = timedelta(hours=72)
    old = sms("m-old")
    long_ago = timezone.now() - timedelta(hours=73)
    Message.objects.filter(pk=old.pk).update(created_at=long_ago, sent_at=long_ago)

    with caplog.at_level(logging.INFO, logger="receipts.actions.confirmations"):
        reply(client, "Y")

    old.refresh_from_db()
    assert old.confirmed_at is None and not confirmations()
    logged = [r.getMessage() for r in caplog.records if "confirmation from" in r.getMessage()]
    assert logged and "ignored" in logged[0]
    assert NUMBER not in caplog.text and NUMBER[2:] not in caplog.text


def test_a_yes_from_a_number_we_never_wrote_to_is_ignored(client: Client) -> None:
    reply(client, "YES", number="+15550109999")
    assert not confirmations() and not Message.objects.exists()


def test_the_same_reply_processed_twice_confirms_once(client: Client) -> None:
    message = sms("m-1")
    at = time.time()
    reply(client, "ok", tid="mo-1", at=at)
    message.refresh_from_db()
    first = message.confirmed_at

    # A replay of the same inbox row (an operator's, or a worker that lost its commit's answer).
    ReceiptEvent.objects.update(state="received", next_attempt_at=timezone.now())
    assert drain_inbox() == 1
    # The provider posting the same event again is a duplicate: stored once.
    reply(client, "ok", tid="mo-1", at=at)
    assert ReceiptEvent.objects.count() == 1

    message.refresh_from_db()
    assert message.confirmed_at == first and message.confirmation == "ok"
    assert len(confirmations()) == 1
    assert message.events.filter(engagement="replied").count() == 1


def test_a_later_yes_keeps_the_first_confirmation(client: Client) -> None:
    message = sms("m-1")
    reply(client, "YES", tid="mo-1")
    message.refresh_from_db()
    first = (message.confirmed_at, message.confirmation)

    reply(client, "Ok", tid="mo-2")

    message.refresh_from_db()
    assert (message.confirmed_at, message.confirmation) == first
    assert len(confirmations()) == 1
    assert message.events.filter(engagement="replied").count() == 2  # both on its timeline


@pytest.mark.parametrize("text", ["Yes please call me", "yes!", "no", "maybe", "YESS"])
def test_a_reply_that_is_not_a_confirmation_word_changes_nothing(client: Client, text: str) -> None:
    message = sms("m-1")
    reply(client, text)

    message.refresh_from_db()
    assert message.confirmed_at is None and not confirmations()
    assert message.events.get().engagement == "replied"  # kept as a reply, as before


def test_stop_still_unsubscribes_and_confirms_nothing(client: Client, settings: Any) -> None:
    settings.CONFIRM_WORDS = ["YES", "STOP"]  # even a confirmation list naming it cannot turn STOP into consent
    message = sms("m-1")
    reply(client, "STOP")

    message.refresh_from_db()
    assert message.confirmed_at is None and not confirmations()
    assert message.unsubscribed_at is not None
    assert Suppression.objects.get().reason == "unsubscribe"


def test_the_confirmation_words_are_a_setting(client: Client, settings: Any) -> None:
    settings.CONFIRM_WORDS = ["SI", "Oui"]
    message = sms("m-1")
    reply(client, "YES", tid="mo-1")
    message.refresh_from_db()
    assert message.confirmed_at is None

    reply(client, "oui", tid="mo-2")
    message.refresh_from_db()
    assert message.confirmation == "oui"


def test_salesforce_gets_the_confirmation_from_the_default_field_map() -> None:
    at = timezone.now()
    change = Change(
        1,
        1,
        "k1",
        "confirmation",
        "003-ann",
        7,
        "record:003-ann",
        at,
        {"status": "delivered", "confirmed_at": at.isoformat(), "confirmation": "YES"},
    )
    fields = field_map.fields_for([change], field_map.DEFAULT_FIELD_MAP)
    assert fields["Delivery_Confirmed_At__c"] == field_map.salesforce_datetime(at)  # yyyy-MM-ddTHH:mm:ss.SSSZ
    assert fields["Delivery_Confirmation__c"] == "YES"
    assert field_map.validate(field_map.DEFAULT_FIELD_MAP) == []
