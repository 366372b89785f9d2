"""Each channel its own sender identity (issue 26): an email address and a display name for email, a number or
sender id for SMS; settable per campaign (and its fallback) and per single send, checked against the allow-list and
against the channel; and what goes out through the simulator says so."""

from __future__ import annotations

from typing import Any

import pytest
from django.test import Client
from rest_framework.test import APIClient

from campaigns import fallback as fallbacks
from campaigns.models import Campaign, Send
from simulator import SimulatorServer
from tests.campaigns.test_campaign_lifecycle import create, drain, start
from tests.campaigns.test_fallback import SMS_FIRST, ann, escalated, sent_campaign
from tests.campaigns.test_sends import post

pytestmark = pytest.mark.django_db

NEWS = {
    "name": "Newsletter",
    "channel": "email",
    "provider": "genesys_cloud",
    "subject": "News for {{ contact.first_name }}",
    "body": "Hi {{ contact.first_name }}",
}


@pytest.fixture
def allowed(settings: Any, providers: SimulatorServer) -> SimulatorServer:
    settings.GENESYS_CLOUD_EMAIL_FROM = "news@acme.example"
    settings.SENDER_ALLOW_LIST = [
        "genesys_cloud:offers@acme.example",
        "webex_connect:care@acme.example",
        "genesys_sms:+15557770000",
        "ACMECARE",
    ]
    return providers


def test_an_email_campaign_goes_out_from_its_own_address_and_name(api: APIClient, allowed: SimulatorServer) -> None:
    ann()
    response = create(api, **NEWS, sender="offers@acme.example", sender_name="Acme Offers")
    assert response.status_code == 201, response.content

    start(api, response.json()["id"])
    [send] = Send.objects.all()
    assert (send.content["from"], send.content["from_name"]) == ("offers@acme.example", "Acme Offers")
    assert drain().sent == 1

    [email] = allowed.sim.messages
    assert (email.channel, email.from_, email.extra["fromName"]) == ("email", "offers@acme.example", "Acme Offers")


@pytest.mark.parametrize(
    ("changes", "field", "words"),
    [
        # The SMS number is Genesys Cloud's configured sender, but not on email: Genesys answers 400 to it.
        ({"sender": "+15550001000"}, "sender", "SENDER_ALLOW_LIST"),
        ({"sender": "ACMECARE"}, "sender", "email address"),  # allowed for every provider, but no email address
        ({"sender_name": "x" * 65}, "sender_name", "64"),
        ({"channel": "sms", "subject": "", "sender_name": "Acme"}, "sender_name", "email only"),
        ({"channel": "sms", "subject": "", "sender": "offers@acme.example"}, "sender", "from a number"),
        ({"channel": "sms", "subject": "", "provider": "genesys_sms", "sender": "ACMECARE"}, "sender", "a number"),
        (
            {"channel": "sms", "subject": "", "provider": "webex_connect", "sender": "offers@acme.example"},
            "sender",
            "number or a sender id",
        ),
        (
            {"fallback_channel": "sms", "fallback_provider": "genesys_cloud", "fallback_sender": "+19990000000"},
            "fallback_sender",
            "SENDER_ALLOW_LIST",
        ),
        ({"fallback_sender": "ACMECARE"}, "fallback_sender", "fallback channel"),
    ],
)
def test_a_sender_that_does_not_fit_its_channel_or_the_allow_list_is_refused(
    api: APIClient, allowed: SimulatorServer, changes: dict[str, Any], field: str, words: str
) -> None:
    response = create(api, **{**NEWS, **changes})

    assert response.status_code == 400, response.content
    assert words in str(response.json()["detail"][field]), response.json()
    assert not Campaign.objects.exists()


def test_a_fallback_goes_out_from_the_fallbacks_own_sender(
    api: APIClient, client: Client, allowed: SimulatorServer
) -> None:
    """An SMS campaign's email fallback goes from an email address: the campaign's sender is a number."""
    ann()
    _, message = sent_campaign(
        api, sender="+15557770000", fallback_sender="care@acme.example", fallback_sender_name="Acme Care"
    )
    escalated(client, message)

    assert fallbacks.fall_back() == 1
    planned = Send.objects.get(metadata__fallback_of=message.pk)
    assert (planned.content["from"], planned.content["from_name"]) == ("care@acme.example", "Acme Care")
    assert drain().sent == 1
    [email] = [m for m in allowed.sim.messages if m.channel == "email"]
    assert (email.from_, email.extra["fromName"]) == ("care@acme.example", "Acme Care")
    assert SMS_FIRST["fallback_provider"] == email.provider == "webex_connect"


EMAIL_SEND = {
    "channel": "email",
    "provider": "webex_connect",
    "to": "ann@example.com",
    "content": {"text": "Your appointment is tomorrow.", "subject": "Tomorrow"},
}


def test_a_single_send_takes_its_own_sender_and_name(api: APIClient, allowed: SimulatorServer) -> None:
    response = post(api, {**EMAIL_SEND, "sender": "care@acme.example", "sender_name": "Acme Care"})
    assert response.status_code == 202, response.content

    send = Send.objects.get()
    assert (send.content["from"], send.content["from_name"]) == ("care@acme.example", "Acme Care")
    assert drain().sent == 1
    [email] = allowed.sim.messages
    assert (email.from_, email.extra["fromName"]) == ("care@acme.example", "Acme Care")


@pytest.mark.parametrize(
    ("changes", "field"),
    [
        ({"sender": "someone@elsewhere.example"}, "sender"),  # not allowed
        ({"sender": "ACMECARE"}, "sender"),  # allowed, but no email address
        ({"channel": "sms", "to": "+15550105555", "sender_name": "Acme"}, "sender_name"),
    ],
)
def test_a_single_send_with_a_sender_it_may_not_use_is_refused(
    api: APIClient, allowed: SimulatorServer, changes: dict[str, Any], field: str
) -> None:
    response = post(api, {**EMAIL_SEND, **changes})

    assert response.status_code == 400, response.content
    assert field in response.json()["detail"]
    assert not Send.objects.exists()
