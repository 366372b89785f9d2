"""The simulator's Genesys Cloud, read by Genesys Cloud's own Python SDK (PureCloudPlatformClientV2): the token,
an agentless SMS, its details, the message through its ``selfUri`` and the bulk lookup all deserialise into the
SDK's models, with the fields filled in, and every MessageData carries only fields the SDK knows."""

from __future__ import annotations

import json
import re
from typing import Any

import httpx
import pytest
from PureCloudPlatformClientV2 import (
    ApiClient,
    Configuration,
    ConversationNormalizedMessage,
    ConversationsApi,
    MessageData,
    SendAgentlessOutboundMessageRequest,
    SendAgentlessOutboundMessageResponse,
    TextMessageListing,
    models,
)
from PureCloudPlatformClientV2.rest import ApiException

from simulator import SimulatorServer
from tests.apprunner import wait_until
from tests.simulator.conftest import bearer, configure, get_token, send_sms

FROM, TO = "+15559876543", "+15551234567"
GENESYS_ERROR_KEYS = {"message", "code", "status", "contextId", "details", "errors"}
# What an SDK model's setter stores for a value outside the enum it knows.
OUTDATED = "outdated_sdk_version"


@pytest.fixture(scope="module")
def sdk_home(tmp_path_factory: pytest.TempPathFactory) -> None:
    """The SDK's Configuration is a process-wide singleton that reads ``~/.genesyscloudpython/config`` and watches
    that folder (or home itself, recursively, when the folder is missing) from the first use on: it is made here
    once, with HOME in an empty folder, so that no developer's file or home directory comes into the tests."""
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("HOME", str(tmp_path_factory.mktemp("sdk-home")))
        Configuration()


@pytest.fixture
def api_client(sdk_home: None, sim: SimulatorServer) -> ApiClient:
    """An SDK client on the simulator, with a token from its client-credentials flow, got by the SDK itself."""
    client = ApiClient(host=sim.url)
    client.get_client_credentials_token("sdk-client", "sdk-secret")
    assert client.access_token
    return client


@pytest.fixture
def conversations(api_client: ApiClient) -> ConversationsApi:
    return ConversationsApi(api_client)


def send(conversations: ConversationsApi, text: str = "Your code is 1234") -> SendAgentlessOutboundMessageResponse:
    request = SendAgentlessOutboundMessageRequest()
    request.from_address, request.to_address = FROM, TO
    request.to_address_messenger_type, request.text_body = "sms", text
    return conversations.post_conversations_messages_agentless(request)


def force(http: httpx.Client, message_id: str, outcome: str, reason: str = "") -> None:
    response = http.post(f"/_sim/messages/{message_id}/outcome", json={"outcome": outcome, "reason": reason})
    assert response.status_code == 200, response.text


def last_json(api_client: ApiClient) -> Any:
    """The body of the SDK's last answer, as the simulator sent it."""
    return json.loads(api_client.last_response.data)


def unknown_fields(data: Any, swagger_type: str, where: str = "") -> list[str]:
    """Fields of ``data`` that the SDK model ``swagger_type`` does not have (the SDK drops them silently), at any
    depth."""
    if data is None:
        return []
    listed = re.fullmatch(r"list\[(.+)\]", swagger_type)
    if listed:
        return [u for i, item in enumerate(data) for u in unknown_fields(item, listed[1], f"{where}[{i}]")]
    model = getattr(models, swagger_type, None)
    if model is None:  # str, bool, datetime, dict(str, str), ...
        return []
    instance = model()
    by_json_name = {json_name: attribute for attribute, json_name in instance.attribute_map.items()}
    found = [f"{where}.{key}" for key in data if key not in by_json_name]
    for key, value in data.items():
        if key in by_json_name:
            found += unknown_fields(value, instance.swagger_types[by_json_name[key]], f"{where}.{key}")
    return found


def outdated_values(value: Any, where: str = "") -> list[str]:
    """Where an enum value of the simulator's answer is one the SDK does not know."""
    if isinstance(value, dict):
        return [w for key, item in value.items() for w in outdated_values(item, f"{where}.{key}")]
    if isinstance(value, list):
        return [w for i, item in enumerate(value) for w in outdated_values(item, f"{where}[{i}]")]
    return [where] if value == OUTDATED else []


def assert_message_data(data: MessageData, raw: dict[str, Any], message_id: str, conversation_id: str) -> None:
    """One MessageData as the SDK reads it: every field the simulator sends is known to the SDK and filled."""
    assert isinstance(data, MessageData)
    assert unknown_fields(raw, "MessageData") == []
    assert outdated_values(data.to_dict()) == []
    assert (data.id, data.conversation_id) == (message_id, conversation_id)
    assert data.self_uri == f"/api/v2/conversations/messages/{conversation_id}/messages/{message_id}"
    assert (data.from_address, data.to_address, data.direction, data.messenger_type) == (FROM, TO, "outbound", "sms")
    assert data.provider_message_id and data.timestamp is not None
    assert data.timestamp.tzinfo is not None
    message = data.normalized_message
    assert isinstance(message, ConversationNormalizedMessage)
    assert (message.id, message.type, message.direction) == (message_id, "Text", "Outbound")
    assert message.text == "Your code is 1234"
    assert (message.channel.platform, message.channel.type) == ("Sms", "Private")
    assert (message.channel.to.id, message.channel.pcFrom.id) == (TO, FROM)
    assert message.status is None  # a receipt's field, not the message's
    assert all(isinstance(r, ConversationNormalizedMessage) for r in data.normalized_receipts)


def test_the_sdks_token_from_the_simulators_client_credentials_flow_opens_the_api(
    sdk_home: None, sim: SimulatorServer, http: httpx.Client
) -> None:
    configure(http, clients={"known": "right"})
    client = ApiClient(host=sim.url)

    client.get_client_credentials_token("known", "right")

    with pytest.raises(ApiException) as not_found:  # past the token check: the message is what is missing
        ConversationsApi(client).get_conversations_message_details("no-such-message")
    assert not_found.value.status == 404
    with pytest.raises(ApiException) as refused:
        ApiClient(host=sim.url).get_client_credentials_token("known", "wrong")
    assert (refused.value.status, json.loads(refused.value.body)["error"]) == (401, "invalid_client")
    with pytest.raises(ApiException) as no_token:
        ConversationsApi(ApiClient(host=sim.url)).get_conversations_message_details("no-such-message")
    assert (no_token.value.status, json.loads(no_token.value.body)["code"]) == (401, "authentication.required")


def test_an_agentless_sms_answers_the_sdks_send_response_with_a_queued_message_data(
    api_client: ApiClient, conversations: ConversationsApi
) -> None:
    sent = send(conversations)

    assert isinstance(sent, SendAgentlessOutboundMessageResponse)
    assert sent.id and sent.conversation_id and sent.id != sent.conversation_id
    assert (sent.from_address, sent.to_address, sent.messenger_type) == (FROM, TO, "sms")
    assert sent.timestamp is not None
    assert sent.self_uri == f"/api/v2/conversations/messages/{sent.conversation_id}/messages/{sent.id}"
    assert outdated_values(sent.to_dict()) == []
    assert_message_data(sent.message, last_json(api_client)["message"], sent.id, sent.conversation_id)
    assert (sent.message.status, sent.message.normalized_receipts) == ("queued", [])


def test_details_and_the_self_uri_read_a_delivered_message_alike(
    api_client: ApiClient, conversations: ConversationsApi, http: httpx.Client
) -> None:
    configure(http, mix={"delivered": 1})
    sent = send(conversations)
    wait_until(
        lambda: conversations.get_conversations_message_details(sent.id).status == "delivery-success", "delivered"
    )

    details = conversations.get_conversations_message_details(sent.id)
    details_raw = last_json(api_client)
    by_route = conversations.get_conversations_message_message(sent.conversation_id, sent.id)
    by_route_raw = last_json(api_client)
    by_self_uri = api_client.call_api(
        details.self_uri, "GET", response_type="MessageData", auth_settings=["PureCloud OAuth"]
    )

    assert_message_data(details, details_raw, sent.id, sent.conversation_id)
    assert_message_data(by_route, by_route_raw, sent.id, sent.conversation_id)
    assert by_route.to_dict() == details.to_dict() == by_self_uri.to_dict()
    receipts = details.normalized_receipts
    assert [(r.type, r.status, r.direction) for r in receipts] == [
        ("Receipt", "Sent", "Outbound"),
        ("Receipt", "Delivered", "Outbound"),
    ]
    assert [r.is_final_receipt for r in receipts] == [False, True]
    assert all(r.id == sent.id and r.channel.message_id == sent.id for r in receipts)
    assert all(r.channel.time is not None and r.reasons is None for r in receipts)


def test_the_bulk_lookup_answers_message_data_with_the_failure_reasons(
    api_client: ApiClient, conversations: ConversationsApi, http: httpx.Client
) -> None:
    delivered, failed, expired = send(conversations), send(conversations), send(conversations)
    force(http, delivered.id, "delivered")
    force(http, failed.id, "failed", "InvalidDestination")
    force(http, expired.id, "expired", "MessageExpired")
    ids = [delivered.id, failed.id, expired.id]

    def lookup() -> TextMessageListing:
        return conversations.post_conversations_message_messages_bulk(delivered.conversation_id, body=ids)

    wait_until(lambda: all(e.status != "sent" and e.status != "queued" for e in lookup().entities), "final")
    listing = lookup()
    raw = last_json(api_client)

    assert isinstance(listing, TextMessageListing)
    assert [e.id for e in listing.entities] == ids
    for entity, entity_raw, sent in zip(listing.entities, raw["entities"], (delivered, failed, expired), strict=True):
        assert_message_data(entity, entity_raw, sent.id, sent.conversation_id)
    assert [e.status for e in listing.entities] == ["delivery-success", "delivery-failed", "delivery-failed"]
    last = [e.normalized_receipts[-1] for e in listing.entities]
    assert [r.status for r in last] == ["Delivered", "Failed", "Failed"]
    assert last[0].reasons is None
    assert [[reason.code for reason in r.reasons] for r in last[1:]] == [["InvalidDestination"], ["MessageExpired"]]
    assert all(reason.message for r in last[1:] for reason in r.reasons)


def test_the_self_uri_route_answers_a_genesys_404_for_a_pair_that_does_not_match(
    conversations: ConversationsApi,
) -> None:
    one, other = send(conversations), send(conversations)

    misses = []
    for conversation_id, message_id in [(other.conversation_id, one.id), (one.conversation_id, "no-such-message")]:
        with pytest.raises(ApiException) as missing:
            conversations.get_conversations_message_message(conversation_id, message_id)
        misses.append(missing.value)

    for miss in misses:
        assert miss.status == 404
        body = json.loads(miss.body)
        assert set(body) == GENESYS_ERROR_KEYS
        assert (body["code"], body["status"]) == ("not.found", 404)
    assert conversations.get_conversations_message_message(one.conversation_id, one.id).id == one.id


def test_the_self_uri_route_needs_a_token_and_counts_against_the_rate_limit(http: httpx.Client) -> None:
    configure(http, rate_limit_per_minute=2)
    token = get_token(http)
    sent = send_sms(http, token).json()
    path = sent["selfUri"]

    missing = http.get(path)
    bad = http.get(path, headers=bearer("not-a-token"))
    answers = [http.get(path, headers=bearer(token)) for _ in range(2)]

    assert (missing.status_code, missing.json()["code"]) == (401, "authentication.required")
    assert (bad.status_code, bad.json()["code"]) == (401, "bad.credentials")
    # The send took the first of the two; the rest of the window is one lookup.
    assert [a.status_code for a in answers] == [200, 429]
    assert answers[0].json()["id"] == sent["id"]
    assert [a.headers["inin-ratelimit-count"] for a in answers] == ["2", "2"]
    assert answers[1].json()["code"] == "too.many.requests.retry.after"
    assert 1 <= int(answers[1].headers["Retry-After"]) <= 60
