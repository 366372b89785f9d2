"""The fallback channel: a critical campaign message that escalates (failed for good, or not delivered within
FALLBACK_AFTER) goes again, once, to the contact on the campaign's fallback channel, through its fallback provider,
the body rendered again; the dispatcher sends it through the provider simulator like any planned send. Nothing is
planned without a fallback channel, without an address on it, or to a suppressed address. A campaign with a
fallback that cannot work is refused when made."""

from __future__ import annotations

from datetime import timedelta
from typing import Any

import pytest
from django.contrib.auth.models import User
from django.test import Client
from django.utils import timezone
from rest_framework.test import APIClient

from campaigns import fallback as fallbacks
from campaigns import lifecycle, tasks
from campaigns.contacts import import_contacts
from campaigns.models import Campaign, Fallback, Send
from receipts.actions import escalation, suppression
from receipts.models import Escalation, Message
from simulator import SimulatorServer
from tests.campaigns.test_campaign_lifecycle import create, drain, start
from tests.conftest import drain as drain_inbox
from tests.conftest import post_webhook, register

pytestmark = pytest.mark.django_db

PHONE, EMAIL = "+15550105555", "ann@example.com"
SMS_FIRST = {
    "name": "Surgery tomorrow",
    "channel": "sms",
    "provider": "genesys_sms",
    "priority": "critical",
    "body": "Hi {{ contact.first_name }}, your surgery is at 8:00 tomorrow. Reply YES to confirm.",
    "fallback_channel": "email",
    "fallback_provider": "webex_connect",
    "fallback_subject": "{{ contact.first_name }}, about tomorrow",
}
EMAIL_FIRST = {
    **SMS_FIRST,
    "name": "Surgery tomorrow (email)",
    "channel": "email",
    "provider": "webex_connect",
    "subject": "About tomorrow",
    "fallback_channel": "sms",
    "fallback_provider": "genesys_sms",
    "fallback_subject": "",
}


def ann(**changes: Any) -> None:
    row = {"crm_record_id": "003-ann", "phone": PHONE, "email": EMAIL, "first_name": "Ann", **changes}
    report = import_contacts(enumerate([{k: v for k, v in row.items() if v is not None}]))
    assert not report.refused


def sent_campaign(api: APIClient, **campaign: Any) -> tuple[Campaign, Message]:
    response = create(api, **{**SMS_FIRST, **campaign})
    assert response.status_code == 201, response.content
    started = start(api, response.json()["id"])
    assert drain().sent == 1
    return started, Message.objects.get(campaign=started)


def rejected(client: Client, message: Message) -> None:
    """SMS Aggregation says the carrier refused it (REJECTED, permanent block): no retry can help."""
    body = f"type=receipt&message_id={message.provider_message_id}&message_state=8&result_code=1"
    assert post_webhook(client, "genesys_sms", body, "application/x-www-form-urlencoded").status_code == 200
    drain_inbox()


def escalated(client: Client, message: Message) -> Escalation:
    rejected(client, message)
    assert escalation.raise_escalations() == 1
    return Escalation.objects.get(message=message)


def test_a_critical_sms_that_fails_for_good_falls_back_once_to_email_through_the_simulator(
    api: APIClient, client: Client, providers: SimulatorServer
) -> None:
    ann()
    campaign, message = sent_campaign(api)
    assert lifecycle.complete_finished() == [campaign.pk]  # everything planned was sent
    raised = escalated(client, message)

    assert tasks.fall_back.apply().get() == 1
    assert fallbacks.fall_back() == 0  # once: the next sweeps leave it
    [planned] = Send.objects.filter(metadata__fallback_of=message.pk)
    assert planned.idempotency_key == f"fallback:{message.pk}"
    assert (planned.channel, planned.provider, planned.to, planned.priority) == (
        "email",
        "webex_connect",
        EMAIL,
        "critical",
    )
    assert planned.campaign_id == campaign.pk and planned.state == "planned"
    assert planned.content == {
        "text": "Hi Ann, your surgery is at 8:00 tomorrow. Reply YES to confirm.",
        "subject": "Ann, about tomorrow",
    }
    raised.refresh_from_db()
    assert "email fallback planned" in raised.fallback and f"send {planned.pk}" in raised.fallback
    assert raised.note == "" and raised.acknowledged_at is None  # the operator's part is untouched
    decided = Fallback.objects.get(escalation_id=raised.pk)
    assert decided.planned and decided.send_id == planned.pk
    client.force_login(User.objects.create_superuser("ops", "ops@example.com", "pw"))
    page = client.get(f"/admin/receipts/escalation/{raised.pk}/change/").content.decode()
    assert f"email fallback planned through webex_connect: send {planned.pk}" in page
    # The campaign had completed; it runs again until its fallback is out.
    assert Campaign.objects.get(pk=campaign.pk).state == "running"

    assert drain().sent == 1
    email = [m for m in providers.sim.messages if m.channel == "email"]
    assert [(m.provider, m.to) for m in email] == [("webex_connect", EMAIL)]
    assert email[0].extra.get("subject") == "Ann, about tomorrow"
    planned.refresh_from_db()
    assert planned.state == "sent"
    tracked = Message.objects.get(pk=planned.message_id)
    assert (tracked.channel, tracked.campaign_id, tracked.priority) == ("email", campaign.pk, "critical")
    assert tracked.metadata["fallback_of"] == message.pk

    assert lifecycle.complete_finished() == [campaign.pk]
    assert fallbacks.fall_back() == 0 and Send.objects.filter(campaign=campaign).count() == 2


def test_an_email_not_delivered_in_time_falls_back_to_sms(
    api: APIClient, client: Client, providers: SimulatorServer, settings: Any
) -> None:
    ann()
    _, message = sent_campaign(api, **EMAIL_FIRST)
    later = timezone.now() + settings.FALLBACK_AFTER + timedelta(seconds=1)
    assert escalation.raise_escalations(now=later) == 1

    assert fallbacks.fall_back(now=later) == 1
    assert Send.objects.get(metadata__fallback_of=message.pk).channel == "sms"
    assert drain(now=later + timedelta(seconds=1)).sent == 1

    texts = [m for m in providers.sim.messages if m.channel == "sms"]
    assert [(m.provider, m.to, m.body) for m in texts] == [
        ("genesys_sms", PHONE.lstrip("+"), "Hi Ann, your surgery is at 8:00 tomorrow. Reply YES to confirm.")
    ]  # the MT's phone_number: digits in international format


def test_nothing_is_planned_without_a_fallback_channel(
    api: APIClient, client: Client, providers: SimulatorServer
) -> None:
    ann()
    _, message = sent_campaign(api, fallback_channel="", fallback_provider="", fallback_subject="")
    raised = escalated(client, message)

    assert fallbacks.fall_back() == 0

    assert Send.objects.count() == 1
    raised.refresh_from_db()
    assert raised.fallback == ""
    assert "no fallback channel" in Fallback.objects.get(escalation_id=raised.pk).reason


def test_nothing_is_planned_for_a_contact_without_an_email(
    api: APIClient, client: Client, providers: SimulatorServer
) -> None:
    ann(email=None)
    _, message = sent_campaign(api)
    raised = escalated(client, message)

    assert fallbacks.fall_back() == 0

    assert Send.objects.count() == 1
    raised.refresh_from_db()
    assert (raised.fallback, raised.note, raised.acknowledged_at) == ("", "", None)  # the escalation stays as it is
    reason = Fallback.objects.get(escalation_id=raised.pk).reason
    assert "no email address" in reason and EMAIL not in reason


def test_nothing_is_planned_to_a_suppressed_email(api: APIClient, client: Client, providers: SimulatorServer) -> None:
    ann()
    suppression.suppress("email", EMAIL, "hard_bounce", source="receipt")
    _, message = sent_campaign(api)
    raised = escalated(client, message)

    assert fallbacks.fall_back() == 0

    assert Send.objects.count() == 1
    assert "suppressed (hard_bounce)" in Fallback.objects.get(escalation_id=raised.pk).reason


def test_an_escalation_an_operator_acknowledged_gets_no_fallback(
    api: APIClient, client: Client, providers: SimulatorServer
) -> None:
    ann()
    _, message = sent_campaign(api)
    raised = escalated(client, message)
    escalation.acknowledge([raised.pk], note="called her")

    assert fallbacks.fall_back() == 0
    assert Send.objects.count() == 1
    assert "acknowledged" in Fallback.objects.get(escalation_id=raised.pk).reason


def test_a_critical_message_registered_by_the_crm_gets_no_fallback(settings: Any) -> None:
    message = register(provider="genesys_sms", provider_message_id="crm-1", to=PHONE, priority="critical")
    later = timezone.now() + settings.FALLBACK_AFTER + timedelta(seconds=1)
    assert escalation.raise_escalations(now=later) == 1

    assert fallbacks.fall_back(now=later) == 0
    assert fallbacks.fall_back(now=later) == 0
    [decided] = Fallback.objects.all()
    assert (decided.message_id, decided.planned, decided.reason) == (message.pk, False, "not a campaign's message")


def test_a_fallback_that_escalates_in_its_turn_does_not_fall_back_again(
    api: APIClient, client: Client, providers: SimulatorServer, settings: Any
) -> None:
    ann()
    _, message = sent_campaign(api)
    escalated(client, message)
    assert fallbacks.fall_back() == 1
    assert drain().sent == 1
    email = Message.objects.get(channel="email")

    later = timezone.now() + settings.FALLBACK_AFTER + timedelta(seconds=1)
    assert escalation.raise_escalations(now=later) == 1  # the email is critical too, and was not delivered in time
    assert fallbacks.fall_back(now=later) == 0
    assert "a fallback itself" in Fallback.objects.get(message_id=email.pk).reason
    assert Send.objects.count() == 2


def test_an_old_escalation_gets_no_fallback(
    api: APIClient, client: Client, providers: SimulatorServer, settings: Any
) -> None:
    ann()
    _, message = sent_campaign(api)
    escalated(client, message)

    assert fallbacks.fall_back(now=timezone.now() + settings.FALLBACK_MAX_AGE + timedelta(seconds=1)) == 0
    assert not Fallback.objects.exists() and Send.objects.count() == 1


@pytest.mark.parametrize(
    ("changes", "field", "words"),
    [
        ({"fallback_channel": "sms", "fallback_provider": "genesys_sms"}, "fallback_channel", "another channel"),
        ({"fallback_provider": ""}, "fallback_provider", "provider"),
        ({"fallback_subject": ""}, "fallback_subject", "subject"),
        ({"fallback_subject": "{{ first_name }}"}, "fallback_subject", "contact."),
        ({"fallback_provider": "genesys_sms"}, "fallback_provider", "SMS only"),
        ({"fallback_channel": "", "fallback_subject": ""}, "fallback_provider", "fallback channel"),
        ({"fallback_channel": "fax"}, "fallback_channel", ""),
        ({"fallback_provider": "generic"}, "fallback_provider", ""),
        (
            {**EMAIL_FIRST, "body": "x" * 766, "fallback_provider": "genesys_cloud"},
            "body",
            "as the SMS fallback: 766 characters",
        ),
        ({**EMAIL_FIRST, "body": "x" * 2000}, "body", "segments"),
    ],
)
def test_a_fallback_that_cannot_work_is_refused_when_the_campaign_is_made(
    api: APIClient, providers: SimulatorServer, changes: dict[str, Any], field: str, words: str
) -> None:
    response = create(api, **{**SMS_FIRST, **changes})
    assert response.status_code == 400, response.content
    assert field in response.json()["detail"], response.json()
    assert words in str(response.json()["detail"][field])
    assert not Campaign.objects.exists()


def test_the_problems_name_the_fallback_fields() -> None:
    base = {key: SMS_FIRST[key] for key in ("channel", "provider", "body")}
    assert lifecycle.problems({**base, "fallback_channel": "email", "fallback_provider": "webex_connect"}) == {
        "fallback_subject": ["an email fallback needs a subject"]
    }
    assert "fallback_channel" in lifecycle.problems({**base, "fallback_channel": "sms", "fallback_provider": "x"})
    assert lifecycle.problems({**base, "fallback_channel": "", "fallback_provider": ""}) == {}


def test_a_good_fallback_is_shown_by_the_api_and_the_admin(
    api: APIClient, client: Client, providers: SimulatorServer
) -> None:
    made = create(api, **SMS_FIRST)
    assert made.status_code == 201, made.content
    shown = made.json()
    assert (shown["fallback_channel"], shown["fallback_provider"], shown["fallback_subject"]) == (
        "email",
        "webex_connect",
        "{{ contact.first_name }}, about tomorrow",
    )
    changed = api.patch(f"/api/v1/campaigns/{shown['id']}/", {"fallback_channel": "sms"}, format="json")
    assert changed.status_code == 400 and "fallback_channel" in changed.json()["detail"]

    client.force_login(User.objects.create_superuser("ops", "ops@example.com", "pw"))
    page = client.get(f"/admin/campaigns/campaign/{shown['id']}/change/").content.decode()
    assert "Fallback channel" in page and "Fallback subject" in page
