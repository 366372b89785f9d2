"""An MT sent again with its message_id (its first outcome was unknown): the simulator, as the service, answers
``result=7`` and pushes one more receipt, ``message_state=8&result_code=7`` (the copy is a duplicate). The app reads
that receipt as evidence that the first copy was taken: it never undoes a delivery and never marks a message
rejected."""

from __future__ import annotations

from typing import Any
from urllib.parse import parse_qsl

import httpx
import pytest

from simulator import SimulatorServer
from tests.apprunner import wait_until
from tests.conftest import drain, post_webhook, register
from tests.simulator.conftest import Receiver, configure, send_mt

pytestmark = pytest.mark.django_db
FORM = "application/x-www-form-urlencoded"


def receipts_of(receiver: Receiver, message_id: str) -> list[dict[str, str]]:
    fields = [dict(parse_qsl(r["body"].decode())) for r in receiver.ok()]
    return [f for f in fields if f.get("message_id") == message_id]


def states(receiver: Receiver, message_id: str) -> list[tuple[str, str]]:
    return [(f["message_state"], f["result_code"]) for f in receipts_of(receiver, message_id)]


def into_the_app(client: Any, receiver: Receiver, message_id: str) -> None:
    """What the simulator pushed, posted to the app's webhook in the order it came, then processed."""
    for fields in receipts_of(receiver, message_id):
        body = "&".join(f"{k}={v}" for k, v in fields.items())
        assert post_webhook(client, "genesys_sms", body, FORM).status_code == 200
    drain()


def test_a_duplicate_receipt_after_delivered_leaves_the_message_delivered(
    client: Any, pushing: SimulatorServer, receiver: Receiver
) -> None:
    with httpx.Client(base_url=pushing.url, timeout=10) as http:
        configure(http, address_outcomes={"15551234567": "delivered"})
        assert send_mt(http, "m-dup", receipt=True).text == "result=0"
        wait_until(lambda: ("2", "0") in states(receiver, "m-dup"), "the delivered receipt")

        assert send_mt(http, "m-dup", receipt=True).text == "result=7"  # sent again: a duplicate
        wait_until(lambda: ("8", "7") in states(receiver, "m-dup"), "the duplicate's receipt")
    assert sorted(states(receiver, "m-dup")) == [("2", "0"), ("6", "0"), ("8", "7")]
    message = register(provider="genesys_sms", provider_message_id="m-dup", to="+15551234567")

    into_the_app(client, receiver, "m-dup")

    message.refresh_from_db()
    assert (message.status, message.failure_category) == ("delivered", "")
    assert (message.needs_review, message.review_reason) == (False, "")
    assert [e.provider_code for e in message.events.order_by("id")][-1] == "state=8;result=7"  # on the timeline


def test_a_duplicate_receipt_first_says_sent_never_rejected(
    client: Any, pushing: SimulatorServer, receiver: Receiver
) -> None:
    """The duplicate's receipt can come before the first copy's own (receipts come concurrently)."""
    with httpx.Client(base_url=pushing.url, timeout=10) as http:
        configure(http, address_outcomes={"15551234567": "silent"})  # the first copy reports nothing final
        send_mt(http, "m-first", receipt=True)
        assert send_mt(http, "m-first", receipt=True).text == "result=7"
        wait_until(lambda: ("8", "7") in states(receiver, "m-first"), "the duplicate's receipt")
    message = register(provider="genesys_sms", provider_message_id="m-first", to="+15551234567")

    into_the_app(client, receiver, "m-first")

    message.refresh_from_db()
    assert message.status == "sent"
    assert message.needs_review is False
