"""Contract tests: every provider's outbound request, as a capture server records it, against the provider's
documented shape; for Genesys Cloud, also read field by field into the platform SDK's own request model
(PureCloudPlatformClientV2), as the inbound tests read its answers. The capture server answers each request the way
the provider documents a success, so each sender goes through its whole path."""

from __future__ import annotations

import json
import re
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import parse_qs

import pytest
from PureCloudPlatformClientV2 import models as sdk_models

from receipts.models import Message
from receipts.providers.senders import sender_for

OUTDATED = "outdated_sdk_version"  # what an SDK model's setter stores for a value outside the enum it knows


class Capture:
    """An HTTP server on 127.0.0.1 that records every request (method, path, headers, body) and answers 2xx."""

    def __init__(self) -> None:
        self.requests: list[dict[str, Any]] = []
        outer = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                raw = self.rfile.read(int(self.headers.get("Content-Length") or 0))
                outer.requests.append({"method": "POST", "path": self.path, "headers": dict(self.headers), "body": raw})
                status, answer, kind = outer.answer(self.path)
                self.send_response(status)
                self.send_header("Content-Type", kind)
                self.send_header("Content-Length", str(len(answer)))
                self.end_headers()
                self.wfile.write(answer)

            def log_message(self, *args: Any) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}"
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def answer(self, path: str) -> tuple[int, bytes, str]:
        if path == "/oauth/token":
            return 200, json.dumps({"access_token": "t", "token_type": "bearer", "expires_in": 86400}).encode(), JSON
        if path == "/api/v2/conversations/messages/agentless":
            return 202, json.dumps({"id": "a" * 32, "conversationId": "c-1", "messengerType": "sms"}).encode(), JSON
        if path == "/api/v2/conversations/emails/agentless":
            return 202, json.dumps({"id": "b" * 32, "conversationId": "c-2", "senderType": "Outbound"}).encode(), JSON
        if path == "/resources/v1/messaging":
            body = {"response": [{"code": "1001", "transid": "t-1", "description": "Queued"}]}
            return 200, json.dumps(body).encode(), JSON
        if path == "/v2/messages":
            body = {"requestTimestamp": "2026-12-07T10:00:00.000Z", "messageId": "m-1", "status": "queued"}
            return 201, json.dumps(body).encode(), JSON
        if path == "/httpapi/receiver":
            return 200, b"result=0", "text/plain"
        return 404, b"{}", JSON

    def sent(self, path: str) -> list[dict[str, Any]]:
        return [r for r in self.requests if r["path"] == path]

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()


JSON = "application/json"


@pytest.fixture
def capture(settings: Any) -> Iterator[Capture]:
    server = Capture()
    settings.SENDERS = {}
    settings.GENESYS_CLOUD_BASE_URL = settings.GENESYS_CLOUD_LOGIN_URL = server.url
    settings.GENESYS_CLOUD_CLIENT_ID, settings.GENESYS_CLOUD_CLIENT_SECRET = "contract-client", "secret"
    settings.GENESYS_CLOUD_FROM_ADDRESS = "+15559876543"
    settings.GENESYS_CLOUD_EMAIL_FROM, settings.GENESYS_CLOUD_EMAIL_FROM_NAME = "news@acme.example", "Acme News"
    settings.GENESYS_SMS_MT_URL = f"{server.url}/httpapi/receiver"
    settings.GENESYS_SMS_LOGIN, settings.GENESYS_SMS_PASSWORD = "login", "password"
    settings.GENESYS_SMS_SENDER = "+15559876543"
    settings.WEBEX_CONNECT_URL, settings.WEBEX_CONNECT_SERVICE_KEY = server.url, "service-key"
    settings.WEBEX_CONNECT_SENDER_ID, settings.WEBEX_CONNECT_EMAIL_FROM = "ACME", "care@acme.example"
    settings.WEBEX_CONNECT_EMAIL_FROM_NAME = "Acme Care"
    try:
        yield server
    finally:
        server.close()


def send(provider: str, channel: str, to: str, **content: str) -> str:
    message = Message(
        provider=provider, channel=channel, to=to, content={"text": "Hello", **content}, correlation_id="corr-1"
    )
    return sender_for(provider).send(message)  # type: ignore[union-attr]


# --- Genesys Cloud: the SDK's request models ----------------------------------------------------------------


def read_as(model_name: str, data: Any, where: str = "") -> Any:
    """``data`` read into the SDK model ``model_name`` strictly: every key must be one of the model's JSON names,
    every nested object its declared model, every enum value one the SDK knows. Returns the model."""
    model = getattr(sdk_models, model_name)()
    assert isinstance(data, dict), f"{where or model_name}: not an object"
    by_json = {json_name: attr for attr, json_name in model.attribute_map.items()}
    unknown = set(data) - set(by_json)
    assert not unknown, f"{where or model_name}: {sorted(unknown)} are not fields of the SDK's {model_name}"
    for json_name, value in data.items():
        attr = by_json[json_name]
        kind = model.swagger_types[attr]
        listed = re.fullmatch(r"list\[(\w+)\]", kind)
        if listed and hasattr(sdk_models, listed.group(1)):
            assert isinstance(value, list), f"{where}{json_name}: not a list"
            value = [read_as(listed.group(1), v, f"{where}{json_name}[{i}].") for i, v in enumerate(value)]
        elif hasattr(sdk_models, kind):
            value = read_as(kind, value, f"{where}{json_name}.")
        elif kind == "str":
            assert isinstance(value, str), f"{where}{json_name}: not a string"
        elif kind == "bool":
            assert isinstance(value, bool), f"{where}{json_name}: not a boolean"
        setattr(model, attr, value)
        known = getattr(model, attr)
        assert not (isinstance(known, str) and known == OUTDATED), f"{where}{json_name}: {value!r} unknown to the SDK"
    return model


def test_genesys_cloud_agentless_sms_is_a_send_agentless_outbound_message_request(capture: Capture) -> None:
    send("genesys_cloud", "sms", "+15551234567")

    [request] = capture.sent("/api/v2/conversations/messages/agentless")
    body = json.loads(request["body"])
    model = read_as("SendAgentlessOutboundMessageRequest", body)
    # Required in the SDK's documentation: fromAddress, toAddress, toAddressMessengerType.
    assert (model.from_address, model.to_address, model.to_address_messenger_type) == (
        "+15559876543",
        "+15551234567",
        "sms",
    )
    assert model.text_body == "Hello"
    assert request["headers"]["Authorization"] == "Bearer t"


def test_genesys_cloud_agentless_email_is_an_agentless_email_send_request_dto(capture: Capture) -> None:
    send("genesys_cloud", "email", "ann@example.com", subject="Tomorrow")

    [request] = capture.sent("/api/v2/conversations/emails/agentless")
    model = read_as("AgentlessEmailSendRequestDto", json.loads(request["body"]))
    # Required: senderType, fromAddress, toAddresses (one recipient only).
    assert model.sender_type == "Outbound"
    assert (model.from_address.email, model.from_address.name) == ("news@acme.example", "Acme News")
    assert [a.email for a in model.to_addresses] == ["ann@example.com"]
    assert (model.subject, model.text_body) == ("Tomorrow", "Hello")


# --- Webex Connect and SMS Aggregation: the documented shapes -----------------------------------------------

# Send Message API v2, "Email API" (developers.webexconnect.io): the request body's fields.
WEBEX_V2_EMAIL_FIELDS = {
    "channel",
    "from",
    "to",
    "substitutions",
    "cc",
    "bcc",
    "multipleToRecipients",
    "options",
    "content",
    "template",
    "requestedReceipts",
    "callbackData",
    "notifyUrl",
    "notifyUrlAuthId",
    "contactPolicy",
}
# Send Message v1 (docs.imiconnect.com, Messaging API): the request body's fields, and channels.sms's.
WEBEX_V1_FIELDS = {
    "appid",
    "correlationid",
    "notifyurl",
    "callbackData",
    "expiry",
    "priority",
    "deliverychannel",
    "message",
    "channels",
    "destination",
    "route",
}
WEBEX_V1_SMS_FIELDS = {"type", "text", "body", "media-path", "senderid"}


def test_webex_connect_email_is_send_message_v2_as_the_email_api_documents_it(capture: Capture) -> None:
    assert send("webex_connect", "email", "ann@example.com", subject="Tomorrow") == "m-1"

    [request] = capture.sent("/v2/messages")
    body = json.loads(request["body"])
    assert set(body) <= WEBEX_V2_EMAIL_FIELDS
    assert {"channel", "from", "to", "content"} <= set(body)  # mandatory
    assert (body["channel"], body["from"]) == ("email", "care@acme.example")
    assert body["to"] == [{"email": ["ann@example.com"], "correlationId": "corr-1"}]
    assert body["content"] == {"type": "text", "subject": "Tomorrow", "text": "Hello"}
    assert body["options"] == {"fromName": "Acme Care"}
    assert request["headers"]["key"] == "service-key"
    assert capture.sent("/resources/v1/messaging") == []  # v1 has no email channel


@pytest.mark.parametrize(("text", "kind"), [("Hello", "1"), ("Zażółć", "4")])
def test_webex_connect_sms_is_send_message_v1_as_documented(capture: Capture, text: str, kind: str) -> None:
    message = Message(provider="webex_connect", channel="sms", to="+15551234567", content={"text": text})
    assert sender_for("webex_connect").send(message) == "t-1"  # type: ignore[union-attr]

    [request] = capture.sent("/resources/v1/messaging")
    body = json.loads(request["body"])
    assert set(body) <= WEBEX_V1_FIELDS
    assert body["deliverychannel"] == "sms"
    assert set(body["channels"]) == {"sms"} and set(body["channels"]["sms"]) <= WEBEX_V1_SMS_FIELDS
    assert body["channels"]["sms"] == {"type": kind, "text": text, "senderid": "ACME"}
    assert body["destination"] == [{"msisdn": ["15551234567"]}]  # digits, no +


def test_sms_aggregation_mt_is_the_http_apis_send_mt_form(capture: Capture) -> None:
    """ "Sending a Mobile Terminated (MT) Message" (Genesys SMS Aggregation Service HTTP API User's Guide):
    form-encoded, phone_number and sender "numeric and in international format, e.g. 12025550100"."""
    send("genesys_sms", "sms", "+15551234567")

    [request] = capture.sent("/httpapi/receiver")
    assert request["headers"]["Content-Type"].startswith("application/x-www-form-urlencoded")
    form = {k: v[0] for k, v in parse_qs(request["body"].decode(), keep_blank_values=True).items()}
    assert set(form) == {"login", "password", "phone_number", "sender", "message", "message_id", "receipt", "app_id"}
    assert (form["phone_number"], form["sender"], form["receipt"]) == ("15551234567", "15559876543", "TRUE")
    assert form["message"] == "Hello" and form["message_id"]
