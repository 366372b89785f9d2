"""Genesys Cloud agentless SMS threading: with ``useExistingActiveConversation`` a send joins the active conversation
between the same two addresses (the last one's, if it is less than ``conversation_idle_seconds`` old); otherwise it
opens a new one. Requests are built with the Genesys Cloud SDK's own model, so the field names are the SDK's. And the
other side of a thread: a contact's reply (Webex Connect MO) played with ``POST /_sim/inbound``, pushed to the app's
webhook and read by the app's own parser."""

from __future__ import annotations

import json
from typing import Any

import httpx
import pytest
from PureCloudPlatformClientV2 import SendAgentlessOutboundMessageRequest

from receipts.providers.base import hmac_signature_ok
from receipts.providers.registry import PROVIDERS
from simulator import SimulatorServer
from tests.apprunner import wait_until
from tests.simulator.conftest import Receiver, bearer, configure, get_token
from tests.simulator.test_send_limits import Clock

FROM, TO = "+15559876543", "+15551234567"


@pytest.fixture
def clock(sim: SimulatorServer) -> Clock:
    clock = Clock()
    sim.sim.clock = clock
    return clock


@pytest.fixture
def token(http: httpx.Client) -> str:
    return get_token(http)


def wire(request: SendAgentlessOutboundMessageRequest) -> dict[str, Any]:
    """The JSON the SDK's ApiClient sends for the model: its attribute_map's names, None left out."""
    return {request.attribute_map[k]: v for k, v in request.to_dict().items() if v is not None}


def sdk_request(
    reuse: bool | None = None, from_: str = FROM, to: str = TO, contact: str | None = None
) -> dict[str, Any]:
    request = SendAgentlessOutboundMessageRequest()
    request.from_address, request.to_address = from_, to
    request.to_address_messenger_type, request.text_body = "sms", "Your appointment is tomorrow"
    if reuse is not None:
        request.use_existing_active_conversation = reuse
    if contact is not None:
        request.external_contact_id = contact
    return wire(request)


def send(http: httpx.Client, token: str, body: dict[str, Any]) -> dict[str, Any]:
    response = http.post("/api/v2/conversations/messages/agentless", json=body, headers=bearer(token))
    assert response.status_code == 202, response.text
    return response.json()


def test_the_sdk_names_the_fields_as_the_simulator_reads_them() -> None:
    assert sdk_request(reuse=True, contact="c-1") == {
        "fromAddress": FROM,
        "toAddress": TO,
        "toAddressMessengerType": "sms",
        "textBody": "Your appointment is tomorrow",
        "useExistingActiveConversation": True,
        "externalContactId": "c-1",
    }


def test_a_send_with_the_flag_joins_the_active_conversation(http: httpx.Client, token: str, clock: Clock) -> None:
    first = send(http, token, sdk_request())
    clock.advance(30)

    second = send(http, token, sdk_request(reuse=True))

    assert second["conversationId"] == first["conversationId"]
    assert second["id"] != first["id"]
    assert second["useExistingActiveConversation"] is True
    assert second["selfUri"] == f"/api/v2/conversations/messages/{first['conversationId']}/messages/{second['id']}"
    details = http.get(f"/api/v2/conversations/messages/{second['id']}/details", headers=bearer(token)).json()
    assert details["conversationId"] == first["conversationId"]


@pytest.mark.parametrize("reuse", [None, False])
def test_a_send_without_the_flag_opens_a_new_conversation(
    http: httpx.Client, token: str, clock: Clock, reuse: bool | None
) -> None:
    first = send(http, token, sdk_request())

    second = send(http, token, sdk_request(reuse=reuse))

    assert second["conversationId"] != first["conversationId"]


def test_null_is_the_default_false(http: httpx.Client, token: str, clock: Clock) -> None:
    first = send(http, token, sdk_request())

    second = send(http, token, {**sdk_request(), "useExistingActiveConversation": None})

    assert second["conversationId"] != first["conversationId"]


@pytest.mark.parametrize(("from_", "to"), [(FROM, "+15551234599"), ("+15559870000", TO)])
def test_only_the_same_two_addresses_share_a_conversation(
    http: httpx.Client, token: str, clock: Clock, from_: str, to: str
) -> None:
    first = send(http, token, sdk_request())

    other = send(http, token, sdk_request(reuse=True, from_=from_, to=to))

    assert other["conversationId"] != first["conversationId"]


@pytest.mark.parametrize(("after", "joined"), [(59.5, True), (60, False), (3600, False)])
def test_an_idle_conversation_is_not_joined(
    http: httpx.Client, token: str, clock: Clock, after: float, joined: bool
) -> None:
    configure(http, conversation_idle_seconds=60)
    first = send(http, token, sdk_request())
    clock.advance(after)

    second = send(http, token, sdk_request(reuse=True))

    assert (second["conversationId"] == first["conversationId"]) is joined


def test_each_message_keeps_the_conversation_active(http: httpx.Client, token: str, clock: Clock) -> None:
    configure(http, conversation_idle_seconds=60)
    first = send(http, token, sdk_request())
    clock.advance(50)
    send(http, token, sdk_request(reuse=True))
    clock.advance(50)  # 100 s after the first, 50 after the last

    third = send(http, token, sdk_request(reuse=True))

    assert third["conversationId"] == first["conversationId"]


def test_the_default_idle_time_is_an_hour(http: httpx.Client, token: str, clock: Clock) -> None:
    first = send(http, token, sdk_request())
    clock.advance(3599)
    assert send(http, token, sdk_request(reuse=True))["conversationId"] == first["conversationId"]
    clock.advance(3600)
    assert send(http, token, sdk_request(reuse=True))["conversationId"] != first["conversationId"]


def test_the_external_contact_id_is_kept_on_the_message(http: httpx.Client, token: str) -> None:
    sent = send(http, token, sdk_request(contact="4f1c9a2e-contact"))

    view = http.get(f"/_sim/messages/{sent['id']}").json()["messages"][0]

    assert view["extra"] == {"externalContactId": "4f1c9a2e-contact"}
    assert (view["from"], view["to"], view["conversationId"]) == (FROM, TO, sent["conversationId"])


@pytest.mark.parametrize(
    ("change", "complaint"),
    [
        ({"useExistingActiveConversation": "true"}, "useExistingActiveConversation must be a boolean"),
        ({"useExistingActiveConversation": 1}, "useExistingActiveConversation must be a boolean"),
        ({"externalContactId": 42}, "externalContactId must be a string"),
    ],
)
def test_wrong_types_are_refused(http: httpx.Client, token: str, change: dict[str, Any], complaint: str) -> None:
    response = http.post(
        "/api/v2/conversations/messages/agentless", json={**sdk_request(), **change}, headers=bearer(token)
    )

    assert response.status_code == 400
    assert (response.json()["code"], response.json()["message"]) == ("bad.request", complaint + ".")
    assert http.get("/_sim/stats").json()["messages"]["total"] == 0


# --- the other side of the thread: a contact's reply, played with POST /_sim/inbound -------------------------


@pytest.mark.parametrize(("text", "engagement"), [("YES", "replied"), ("STOP", "unsubscribed")])
def test_an_inbound_reply_is_pushed_as_a_webex_mo_the_app_parses(
    pushing: SimulatorServer, receiver: Receiver, text: str, engagement: str
) -> None:
    reply = {"provider": "webex_connect", "from": "+15551234567", "to": "ACME", "text": text}

    answer = httpx.post(f"{pushing.url}/_sim/inbound", json=reply, timeout=10)

    assert answer.status_code == 202, answer.text
    queued = answer.json()["queued"]
    assert (queued["provider"], queued["event"], queued["url"]) == (
        "webex_connect",
        "MO",
        f"{receiver.url}/webhooks/webex-connect/",
    )
    wait_until(receiver.ok, "the pushed MO")
    [pushed] = receiver.ok()
    assert pushed["path"] == "/webhooks/webex-connect/"
    assert json.loads(pushed["body"]) == queued["body"]
    assert hmac_signature_ok(pushed["headers"]["X-Hub-Signature"], pushed["body"], ["wx"], bare=True)

    [receipt] = PROVIDERS["webex_connect"].parse(pushed["body"], "application/json")

    assert (receipt.provider, receipt.provider_code, receipt.channel) == ("webex_connect", "MO", "sms")
    assert receipt.outcome.engagement == engagement
    assert receipt.details == {"event_id": queued["id"], "text": text}
    assert receipt.address == "+15551234567"
    assert receipt.occurred_at is not None
    log = httpx.get(f"{pushing.url}/_sim/pushes", timeout=10).json()["pushes"]
    assert [(p["provider"], p["event"], p["status"]) for p in log] == [("webex_connect", "mo", 200)]


@pytest.mark.parametrize(
    ("change", "complaint"),
    [
        ({"provider": "genesys_sms"}, "provider must be webex_connect"),
        ({"from": "someone"}, "from must be"),
        ({"from": None}, "from must be"),
        ({"to": " "}, "to must be"),
        ({"text": ""}, "text must be"),
        ({"text": ["YES"]}, "text must be"),
    ],
)
def test_an_inbound_reply_with_bad_input_is_refused(
    pushing: SimulatorServer, change: dict[str, Any], complaint: str
) -> None:
    reply = {"provider": "webex_connect", "from": "+15551234567", "to": "ACME", "text": "YES", **change}

    answer = httpx.post(f"{pushing.url}/_sim/inbound", json=reply, timeout=10)

    assert answer.status_code == 400
    assert complaint in answer.json()["error"]


def test_an_inbound_reply_is_refused_while_pushing_is_off(http: httpx.Client) -> None:
    reply = {"provider": "webex_connect", "from": "+15551234567", "to": "ACME", "text": "YES"}

    answer = http.post("/_sim/inbound", json=reply)

    assert answer.status_code == 409
    assert "pushing is off" in answer.json()["error"]
