"""What each provider is, declared once on its module (``CAPABILITIES``) and read from there by the sender
registry, campaigns (dispatch, throttle, checks) and the webhook URLs. No network."""

from __future__ import annotations

from typing import Any

import pytest
from django.urls import reverse

from campaigns import dispatch, lifecycle, throttle
from receipts.providers.base import REFUSED, TAKEN, THROTTLED, UNKNOWN
from receipts.providers.registry import CAPABILITIES, PROVIDERS, capabilities
from receipts.providers.senders import configured_sender
from receipts.status import Provider


def test_every_provider_declares_its_capabilities_and_its_webhook() -> None:
    assert set(CAPABILITIES) == set(PROVIDERS) == set(Provider.values)
    for name, declared in CAPABILITIES.items():
        assert declared.name == name
        assert reverse(f"webhook-{declared.webhook}") == f"/webhooks/{declared.webhook}/"


@pytest.mark.parametrize("name", sorted(CAPABILITIES))
def test_a_provider_that_sends_names_its_sender_its_credentials_and_a_default_sender_per_channel(name: str) -> None:
    declared = CAPABILITIES[name]
    if not declared.channels:  # receives only
        assert (declared.sender, declared.credentials, dict(declared.sender_settings)) == (None, (), {})
        return
    assert declared.sender is not None and declared.credentials
    assert set(declared.sender_settings) == set(declared.channels)
    assert set(declared.answer_codes.values()) <= {TAKEN, REFUSED, THROTTLED, UNKNOWN}


def test_campaigns_ask_the_capabilities(settings: Any) -> None:
    """What used to be lists of names in three modules of campaigns is each provider's declaration."""
    assert [n for n in sorted(CAPABILITIES) if dispatch.idempotent(n)] == ["genesys_sms"]
    assert [n for n in sorted(CAPABILITIES) if throttle.own_breaker(n)] == ["genesys_sms", "webex_connect"]
    settings.SEND_RATE_WEBEX_CONNECT = 7
    assert throttle.provider_rate("webex_connect") == 7.0
    settings.GENESYS_CLOUD_FROM_ADDRESS, settings.GENESYS_CLOUD_EMAIL_FROM = "+15550001000", "news@acme.example"
    settings.SENDER_ALLOW_LIST = []
    assert lifecycle.allowed_senders("genesys_cloud", "email") == {"news@acme.example"}
    assert lifecycle.allowed_senders("genesys_cloud") == {"+15550001000", "news@acme.example"}
    assert lifecycle.problems({"channel": "email", "provider": "genesys_sms"})["provider"] == [
        "genesys_sms sends SMS only"
    ]


def test_the_built_in_sender_is_the_declared_one_once_its_credentials_are_set(settings: Any) -> None:
    settings.SENDERS = {}
    settings.WEBEX_CONNECT_SERVICE_KEY = ""
    assert configured_sender("webex_connect") is None
    settings.WEBEX_CONNECT_SERVICE_KEY = "key"
    assert isinstance(configured_sender("webex_connect"), capabilities("webex_connect").sender)  # type: ignore[arg-type]
    assert configured_sender("generic") is None
    assert configured_sender("nobody") is None
