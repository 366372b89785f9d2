"""Webhook ingest (DESIGN.md, "The flow of one receipt" step 1): authenticate, check the format, store the raw
body in the inbox, answer. Nothing else happens in the request."""

from __future__ import annotations

import base64
import json
import logging
import runpy
import socket
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any
from unittest import mock

import psycopg
import pytest
from kombu.exceptions import OperationalError

from config.celery import app as celery_app
from receipts import webhooks
from receipts.kicks import BROKER_DOWN_PAUSE, kick_now, request_drain
from receipts.models import InboxState, Message, MessageEvent, ReceiptEvent
from tests.conftest import (
    BASIC,
    GENERIC_SECRET,
    GENESYS_CLOUD_SECRET,
    GENESYS_SMS_TOKEN,
    WEBEX_SECRET,
    WEBHOOK_PATHS,
    basic_header,
    hub_signature,
    is_postgres,
    post_webhook,
    register,
    sample,
    standard_webhooks_headers,
)

pytestmark = pytest.mark.django_db

JSON = "application/json"
FORM = "application/x-www-form-urlencoded"
MIB = 1024 * 1024

# --- bodies ---------------------------------------------------------------------------------------------

# Genesys Cloud normalized receipts (open messaging push), from tests/samples/genesys-cloud/README.md.
GC_DELIVERED = (
    b'{"id": "8c1f5e3a2b7d4c9e", "type": "Receipt", "status": "Delivered", "isFinalReceipt": true, '
    b'"direction": "Outbound", "channel": {"platform": "Sms", "type": "Private", "messageId": "8c1f5e3a2b7d4c9e", '
    b'"time": "2026-11-20T10:15:09.480Z"}}'
)
GC_SENT = (
    b'{"id": "8c1f5e3a2b7d4c9e", "type": "Receipt", "status": "Sent", "isFinalReceipt": false, '
    b'"direction": "Outbound", "channel": {"platform": "Sms", "type": "Private", "messageId": "8c1f5e3a2b7d4c9e", '
    b'"time": "2026-11-20T10:15:03.020Z"}}'
)
# The MessageData of the same README (textBody shortened): two normalized receipts, Sent and Delivered.
GC_MESSAGE_DATA = b"""{
  "id": "8c1f5e3a2b7d4c9e",
  "providerMessageId": "SM3f0c9e7b",
  "timestamp": "2026-11-20T10:15:02.114Z",
  "fromAddress": "+15559876543",
  "toAddress": "+15551234567",
  "direction": "outbound",
  "messengerType": "sms",
  "textBody": "Your appointment is tomorrow at 10:00.",
  "status": "delivery-success",
  "normalizedReceipts": [
    {"id": "8c1f5e3a2b7d4c9e", "type": "Receipt", "status": "Sent", "isFinalReceipt": false,
     "channel": {"platform": "Sms", "messageId": "8c1f5e3a2b7d4c9e", "time": "2026-11-20T10:15:03.020Z"}},
    {"id": "8c1f5e3a2b7d4c9e", "type": "Receipt", "status": "Delivered", "isFinalReceipt": true,
     "channel": {"platform": "Sms", "messageId": "8c1f5e3a2b7d4c9e", "time": "2026-11-20T10:15:09.480Z"}}
  ],
  "conversationId": "0f5e6d7c-1b2a-4c3d-9e8f-7a6b5c4d3e2f"
}"""
# Genesys SMS Aggregation receipts, from tests/samples/genesys-sms/README.md (6 accepted, then 2 delivered).
SMS_DELIVERED = (
    b"type=receipt&message_id=4f9c2b1e-7a0d-4c1e-9a51-2d8f3e6b7c10&message_state=2&result_code=0"
    b"&app_id=reminders&conversation_id=c-001"
)
SMS_ACCEPTED = (
    b"type=receipt&message_id=4f9c2b1e-7a0d-4c1e-9a51-2d8f3e6b7c10&message_state=6&result_code=0"
    b"&app_id=reminders&conversation_id=c-001"
)


@dataclass(frozen=True)
class Case:
    """One webhook endpoint: a valid body, another status of the same message, and how its sender signs."""

    provider: str
    body: bytes
    other_status: bytes
    content_type: str
    secret_setting: str
    sign: Callable[[bytes, str], dict[str, str]]
    good_secret: str
    other_secret: str

    def signed(self, body: bytes | None = None, secret: str | None = None) -> dict[str, str]:
        return self.sign(self.body if body is None else body, self.good_secret if secret is None else secret)

    def reserialised(self) -> bytes:
        """The same facts in another envelope: fields in reverse order, other whitespace."""
        if self.content_type == FORM:
            return b"&".join(reversed(self.body.split(b"&")))
        return json.dumps(reverse_keys(json.loads(self.body)), indent=3, ensure_ascii=False).encode()

    def __str__(self) -> str:
        return self.provider


def reverse_keys(value: Any) -> Any:
    if isinstance(value, dict):
        return {k: reverse_keys(value[k]) for k in reversed(list(value))}
    if isinstance(value, list):
        return [reverse_keys(v) for v in value]
    return value


def whsec(raw_key: bytes) -> str:
    return "whsec_" + base64.b64encode(raw_key).decode()


CASES = [
    Case(
        provider="genesys_cloud",
        body=GC_DELIVERED,
        other_status=GC_SENT,
        content_type=JSON,
        secret_setting="WEBHOOK_SECRET_GENESYS_CLOUD",
        sign=lambda body, secret: {"X-Hub-Signature-256": hub_signature(body, secret)},
        good_secret=GENESYS_CLOUD_SECRET,
        other_secret="gc-secret-next",
    ),
    Case(
        provider="genesys_sms",
        body=SMS_DELIVERED,
        other_status=SMS_ACCEPTED,
        content_type=FORM,
        secret_setting="WEBHOOK_SECRET_GENESYS_SMS",
        sign=lambda body, secret: {"X-Webhook-Token": secret},
        good_secret=GENESYS_SMS_TOKEN,
        other_secret="sms-token-next",
    ),
    Case(
        provider="webex_connect",
        body=sample("webex-connect/email-7500-delivered.json"),
        other_status=sample("webex-connect/email-7501-submitted.json"),
        content_type=JSON,
        secret_setting="WEBHOOK_SECRET_WEBEX_CONNECT",
        sign=lambda body, secret: {"X-Hub-Signature": hub_signature(body, secret)},
        good_secret=WEBEX_SECRET,
        other_secret="webex-secret-next",
    ),
    Case(
        provider="generic",
        body=sample("generic/delivered.json"),
        other_status=sample("generic/failed-carrier-rejected.json"),
        content_type=JSON,
        secret_setting="WEBHOOK_SECRET_GENERIC",
        sign=lambda body, secret: standard_webhooks_headers(body, secret),
        good_secret=GENERIC_SECRET,
        other_secret=whsec(b"generic-secret-key-next-9876543210"),
    ),
]
BY_PROVIDER = {case.provider: case for case in CASES}
each_provider = pytest.mark.parametrize("case", CASES, ids=str)


# --- helpers --------------------------------------------------------------------------------------------


@pytest.fixture(autouse=True)
def kicks(monkeypatch: pytest.MonkeyPatch) -> mock.Mock:
    """The drain kick the view asks for after an accepted receipt, recorded instead of handed to the kicker.

    Keeps these tests off the broker (var/ or Redis) and lets them see when a kick is asked for.
    """
    recorder = mock.Mock(name="request_drain")
    monkeypatch.setattr(webhooks, "request_drain", recorder)
    return recorder


def post(client: Any, provider: str, body: bytes, content_type: str, query: str = "", **headers: str) -> Any:
    """POST with exactly the headers given (no Basic added)."""
    path = WEBHOOK_PATHS[provider] + (f"?{query}" if query else "")
    return client.generic("POST", path, body, content_type=content_type, headers=headers)


def assert_refused(response: Any) -> None:
    assert response.status_code == 401, response.content
    assert response["Content-Type"].startswith("application/json")
    error = response.json()["error"]
    assert isinstance(error, str) and error
    assert ReceiptEvent.objects.count() == 0


def assert_accepted(response: Any, case: Case, body: bytes | None = None, accepted: int = 1) -> ReceiptEvent:
    body = case.body if body is None else body
    assert response.status_code == 200, response.content
    assert response.json() == {"accepted": accepted, "duplicates": 0}
    event = ReceiptEvent.objects.get()
    assert event.provider == case.provider
    assert event.state == InboxState.RECEIVED
    assert event.source == "webhook"
    assert event.body == body.decode()
    assert event.content_type == case.content_type
    assert event.remote_addr == "127.0.0.1"
    assert event.dedupe_key
    assert event.error == ""
    assert event.processed_at is None
    return event


# --- valid credentials ----------------------------------------------------------------------------------


@each_provider
def test_valid_provider_signature_is_accepted_and_the_raw_body_kept(client: Any, case: Case, kicks: mock.Mock) -> None:
    response = post(client, case.provider, case.body, case.content_type, **case.signed())

    assert_accepted(response, case)
    kicks.assert_called_once()


@each_provider
def test_valid_basic_credentials_are_accepted_without_a_signature(client: Any, case: Case) -> None:
    response = post_webhook(client, case.provider, case.body, content_type=case.content_type)

    assert_accepted(response, case)


@each_provider
def test_body_is_kept_byte_for_byte_with_non_ascii_text_and_odd_whitespace(client: Any, case: Case) -> None:
    if case.content_type == FORM:
        # Percent-encoded and raw UTF-8 alike.
        body = SMS_DELIVERED.replace(b"app_id=reminders", b"app_id=rappels%20%C3%A9t%C3%A9") + "&note=café ☕".encode()
    else:
        data = json.loads(case.body)
        data["note"] = "café ☕ «ünïcode»"
        body = b"\r\n  " + json.dumps(data, ensure_ascii=False, indent="\t").encode() + b"  \n"

    response = post(client, case.provider, body, case.content_type, **case.signed(body))

    event = assert_accepted(response, case, body)
    assert event.body.encode() == body


def test_genesys_cloud_message_data_counts_each_receipt_it_carries(client: Any) -> None:
    case = BY_PROVIDER["genesys_cloud"]

    response = post(client, case.provider, GC_MESSAGE_DATA, JSON, **case.signed(GC_MESSAGE_DATA))

    assert_accepted(response, case, GC_MESSAGE_DATA, accepted=2)


def test_webex_connect_sha512_signature_is_accepted(client: Any) -> None:
    case = BY_PROVIDER["webex_connect"]

    response = post(
        client, case.provider, case.body, JSON, **{"X-Hub-Signature": hub_signature(case.body, WEBEX_SECRET, "sha512")}
    )

    assert_accepted(response, case)


def test_genesys_sms_token_in_the_query_string_is_accepted(client: Any) -> None:
    case = BY_PROVIDER["genesys_sms"]

    response = post(client, case.provider, case.body, FORM, query=f"token={GENESYS_SMS_TOKEN}")

    assert_accepted(response, case)


def test_standard_webhooks_accepts_any_matching_signature_of_several(client: Any) -> None:
    case = BY_PROVIDER["generic"]
    headers = case.signed()
    wrong = standard_webhooks_headers(case.body, whsec(b"some-other-key"))["webhook-signature"]
    headers["webhook-signature"] = f"{wrong} {headers['webhook-signature']}"

    response = post(client, case.provider, case.body, JSON, **headers)

    assert_accepted(response, case)


# --- rotation -------------------------------------------------------------------------------------------


@each_provider
def test_old_basic_entry_is_accepted_while_still_listed(client: Any, settings: Any, case: Case) -> None:
    settings.WEBHOOK_BASIC_AUTH = ["receipts:next-pass", BASIC]

    old = post_webhook(client, case.provider, case.body, content_type=case.content_type)
    new = post_webhook(
        client,
        case.provider,
        case.other_status,
        content_type=case.content_type,
        Authorization=basic_header("receipts:next-pass"),
    )

    assert old.status_code == 200, old.content
    assert new.status_code == 200, new.content
    assert ReceiptEvent.objects.count() == 2


@each_provider
def test_basic_entry_removed_from_the_list_is_refused(client: Any, settings: Any, case: Case) -> None:
    settings.WEBHOOK_BASIC_AUTH = ["receipts:next-pass"]

    response = post_webhook(client, case.provider, case.body, content_type=case.content_type)

    assert_refused(response)


@each_provider
def test_old_secret_is_accepted_while_still_listed(client: Any, settings: Any, case: Case) -> None:
    settings.WEBHOOK_BASIC_AUTH = []
    setattr(settings, case.secret_setting, [case.other_secret, case.good_secret])

    old = post(client, case.provider, case.body, case.content_type, **case.signed())
    new = post(
        client,
        case.provider,
        case.other_status,
        case.content_type,
        **case.signed(case.other_status, case.other_secret),
    )

    assert old.status_code == 200, old.content
    assert new.status_code == 200, new.content
    assert ReceiptEvent.objects.count() == 2


# --- refused: 401 and nothing stored --------------------------------------------------------------------


@each_provider
def test_missing_credentials_are_refused(client: Any, case: Case, kicks: mock.Mock) -> None:
    response = post(client, case.provider, case.body, case.content_type)

    assert_refused(response)
    assert "credentials" in response.json()["error"]
    assert response["WWW-Authenticate"].startswith("Basic")
    kicks.assert_not_called()


@each_provider
def test_wrong_signature_is_refused(client: Any, case: Case) -> None:
    response = post(client, case.provider, case.body, case.content_type, **case.signed(secret=case.other_secret))

    assert_refused(response)
    assert "signature" in response.json()["error"]


@pytest.mark.parametrize("case", [c for c in CASES if c.provider != "genesys_sms"], ids=str)  # a token signs no body
def test_signature_of_another_body_is_refused(client: Any, case: Case) -> None:
    headers = case.signed(case.other_status)

    response = post(client, case.provider, case.body, case.content_type, **headers)

    assert_refused(response)


@each_provider
def test_wrong_signature_is_refused_even_with_valid_basic(client: Any, case: Case) -> None:
    headers = case.signed(secret=case.other_secret)

    response = post_webhook(client, case.provider, case.body, content_type=case.content_type, **headers)

    assert_refused(response)


@pytest.mark.parametrize(
    "authorization",
    [
        basic_header("receipts:wrong-pass"),
        basic_header("someone-else:s3cret-pass"),
        basic_header("receipts:s3cret-pass "),
        basic_header("receipts"),
        "Basic not-base64!!",
        "Basic",
        "Bearer " + base64.b64encode(BASIC.encode()).decode(),
        basic_header().replace("Basic ", ""),
    ],
    ids=["wrong-password", "wrong-user", "trailing-space", "no-password", "bad-base64", "empty", "bearer", "no-scheme"],
)
@each_provider
def test_wrong_basic_credentials_are_refused(client: Any, case: Case, authorization: str) -> None:
    response = post_webhook(
        client, case.provider, case.body, content_type=case.content_type, Authorization=authorization
    )

    assert_refused(response)


@each_provider
def test_malformed_body_from_an_unauthenticated_caller_is_refused_not_kept(client: Any, case: Case) -> None:
    response = post(client, case.provider, b"this is not a receipt", case.content_type)

    assert_refused(response)


def test_genesys_cloud_refuses_a_sha512_signature_in_its_sha256_header(client: Any) -> None:
    case = BY_PROVIDER["genesys_cloud"]
    headers = {"X-Hub-Signature-256": hub_signature(case.body, GENESYS_CLOUD_SECRET, "sha512")}

    assert_refused(post(client, case.provider, case.body, JSON, **headers))


def test_genesys_cloud_refuses_a_signature_without_its_prefix(client: Any) -> None:
    case = BY_PROVIDER["genesys_cloud"]
    headers = {"X-Hub-Signature-256": hub_signature(case.body, GENESYS_CLOUD_SECRET).removeprefix("sha256=")}

    assert_refused(post(client, case.provider, case.body, JSON, **headers))


def test_webex_connect_refuses_an_unknown_signature_algorithm(client: Any) -> None:
    case = BY_PROVIDER["webex_connect"]
    headers = {"X-Hub-Signature": hub_signature(case.body, WEBEX_SECRET, "sha1")}

    assert_refused(post(client, case.provider, case.body, JSON, **headers))


def test_genesys_sms_wrong_token_in_the_query_is_refused_even_with_valid_basic(client: Any) -> None:
    case = BY_PROVIDER["genesys_sms"]

    response = post(client, case.provider, case.body, FORM, query="token=nope", Authorization=basic_header())

    assert_refused(response)


@pytest.mark.parametrize(
    "change",
    [
        {"webhook-id": "msg_2"},
        {"webhook-timestamp": "not-a-number"},
        {"webhook-signature": "v2,abc"},
    ],
    ids=["other-id", "bad-timestamp", "unknown-version"],
)
def test_standard_webhooks_refuses_tampered_headers(client: Any, change: dict[str, str]) -> None:
    case = BY_PROVIDER["generic"]
    headers = {**case.signed(), **change}

    assert_refused(post(client, case.provider, case.body, JSON, **headers))


@pytest.mark.parametrize("offset", [-301, 301], ids=["too-old", "too-far-ahead"])
def test_standard_webhooks_refuses_a_timestamp_outside_the_tolerance(
    client: Any, time_machine: Any, offset: int
) -> None:
    case = BY_PROVIDER["generic"]
    headers = case.signed()  # signed now, with the current time in webhook-timestamp
    time_machine.move_to(time.time() - offset, tick=False)

    response = post(client, case.provider, case.body, JSON, **headers)

    assert_refused(response)


def test_standard_webhooks_accepts_a_timestamp_inside_the_tolerance(client: Any, time_machine: Any) -> None:
    case = BY_PROVIDER["generic"]
    headers = case.signed()
    time_machine.move_to(time.time() + 290, tick=False)

    assert_accepted(post(client, case.provider, case.body, JSON, **headers), case)


def test_standard_webhooks_tolerance_follows_the_setting(client: Any, settings: Any, time_machine: Any) -> None:
    settings.WEBHOOK_TIMESTAMP_TOLERANCE = 30
    case = BY_PROVIDER["generic"]
    headers = case.signed()
    time_machine.move_to(time.time() + 60, tick=False)

    assert_refused(post(client, case.provider, case.body, JSON, **headers))


# --- what is configured ---------------------------------------------------------------------------------


def configure_nothing(settings: Any) -> None:
    settings.WEBHOOK_BASIC_AUTH = []
    for case in CASES:
        setattr(settings, case.secret_setting, [])


@each_provider
def test_nothing_configured_refuses_when_debug_is_off(client: Any, settings: Any, case: Case) -> None:
    configure_nothing(settings)
    settings.DEBUG = False

    response = post_webhook(client, case.provider, case.body, content_type=case.content_type, **case.signed())

    assert_refused(response)
    assert "no webhook secret" in response.json()["error"]


@each_provider
def test_nothing_configured_accepts_when_debug_is_on(client: Any, settings: Any, case: Case) -> None:
    configure_nothing(settings)
    settings.DEBUG = True

    response = post(client, case.provider, case.body, case.content_type)

    assert_accepted(response, case)


@each_provider
def test_basic_only_configured_needs_basic(client: Any, settings: Any, case: Case) -> None:
    setattr(settings, case.secret_setting, [])

    signed_only = post(client, case.provider, case.body, case.content_type, **case.signed())
    assert_refused(signed_only)

    assert_accepted(post_webhook(client, case.provider, case.body, content_type=case.content_type), case)


@each_provider
def test_secret_only_configured_refuses_basic(client: Any, settings: Any, case: Case) -> None:
    settings.WEBHOOK_BASIC_AUTH = []

    assert_refused(post_webhook(client, case.provider, case.body, content_type=case.content_type))

    assert_accepted(post(client, case.provider, case.body, case.content_type, **case.signed()), case)


# --- body size ------------------------------------------------------------------------------------------


def padded(case: Case, size: int) -> bytes:
    """A valid body of exactly ``size`` bytes (JSON: trailing whitespace; form: a filler field)."""
    if case.content_type == FORM:
        filler = b"&pad="
        return case.body + filler + b"x" * (size - len(case.body) - len(filler))
    return case.body + b" " * (size - len(case.body))


@each_provider
def test_body_over_one_mib_is_refused_with_413(client: Any, case: Case, kicks: mock.Mock) -> None:
    body = padded(case, MIB + 1)

    response = post(client, case.provider, body, case.content_type, **case.signed(body))

    assert response.status_code == 413
    assert "body over" in response.json()["error"]
    assert ReceiptEvent.objects.count() == 0
    kicks.assert_not_called()


@each_provider
def test_body_of_exactly_one_mib_is_accepted(client: Any, case: Case) -> None:
    body = padded(case, MIB)

    response = post(client, case.provider, body, case.content_type, **case.signed(body))

    assert_accepted(response, case, body)


@each_provider
def test_body_limit_follows_the_setting(client: Any, settings: Any, case: Case) -> None:
    settings.WEBHOOK_MAX_BODY = 100
    assert len(case.body) > 100

    response = post_webhook(client, case.provider, case.body, content_type=case.content_type)

    assert response.status_code == 413
    assert "100" in response.json()["error"]
    assert ReceiptEvent.objects.count() == 0


# --- malformed bodies: 400, kept as rejected ------------------------------------------------------------

MALFORMED = [
    # (provider, content type, body, a word the error must contain)
    ("genesys_cloud", JSON, b"<xml>not json</xml>", "not valid JSON"),
    ("genesys_cloud", JSON, b'{"id": "caf\xe9", "status": "sent"}', "not UTF-8"),
    ("genesys_cloud", JSON, b"42", "expected a JSON object"),
    ("genesys_cloud", JSON, b'{"hello": "world"}', "'id' and 'status'"),
    ("genesys_cloud", JSON, b"[]", "no receipt"),
    ("genesys_cloud", JSON, b'{"type": "Receipt", "channel": {"messageId": "m-1"}}', "'status'"),
    ("genesys_cloud", JSON, b'{"type": "Receipt", "status": "Delivered"}', "'channel.messageId'"),
    ("genesys_cloud", JSON, b'{"id": "m-1", "status": "failed", "reasons": "RateLimited"}', "'reasons'"),
    ("genesys_cloud", JSON, b'{"id": "m-1", "status": "sent", "timestamp": "yesterday"}', "ISO 8601"),
    ("genesys_sms", FORM, b"this is not a form", "form-encoded"),
    ("genesys_sms", FORM, b"message_id=m-1&message_state=2&result_code=0", "'type'"),
    ("genesys_sms", FORM, b"type=mo&message_id=m-1&message_state=2", "'receipt'"),
    ("genesys_sms", FORM, b"type=receipt&message_state=2&result_code=0", "'message_id'"),
    ("genesys_sms", FORM, b"type=receipt&message_id=m-1&result_code=0", "'message_state'"),
    ("genesys_sms", FORM, b"type=receipt&message_id=m-1&message_state=two", "'message_state' must be an integer"),
    ("genesys_sms", FORM, b"type=receipt&message_id=m-1&message_state=2.0", "'message_state' must be an integer"),
    ("genesys_sms", FORM, b"type=receipt&message_id=m-1&message_state=5&result_code=x", "'result_code'"),
    ("webex_connect", JSON, b"{not json", "not valid JSON"),
    ("webex_connect", JSON, b'{"hello": "world"}', "not a Webex Connect"),
    ("webex_connect", JSON, b'["deliveryInfoNotification"]', "expected a JSON object"),
    ("webex_connect", JSON, b"[]", "no receipt"),
    ("webex_connect", JSON, b'{"deliveryInfoNotification": {"transid": "t-1"}}', "'deliveryInfo'"),
    (
        "webex_connect",
        JSON,
        b'{"deliveryInfoNotification": {"deliveryInfo": {"code": "7500"}}}',
        "'transid'",
    ),
    (
        "webex_connect",
        JSON,
        b'{"deliveryInfoNotification": {"transid": "t-1", "deliveryInfo": {"deliveryStatus": "Delivered"}}}',
        "'code'",
    ),
    ("webex_connect", JSON, b'{"event": "MO", "textMessage": "STOP"}', "'from'"),
    ("generic", JSON, b"id=m-1&status=delivered", "not valid JSON"),
    ("generic", JSON, b'"delivered"', "expected a JSON object"),
    ("generic", JSON, b"[]", "no receipt"),
    ("generic", JSON, b'{"status": "delivered"}', "'id'"),
    ("generic", JSON, b'{"id": "m-1", "errorCode": "blocked"}', "'status' nor 'deliveryStatus'"),
    ("generic", JSON, b'{"id": "m-1", "status": "sent", "metadata": ["a"]}', "'metadata'"),
    ("generic", JSON, b'{"id": "m-1", "status": "sent", "timestamp": "27/10/2023"}', "ISO 8601"),
]


@pytest.mark.parametrize(
    ("provider", "content_type", "body", "word"),
    MALFORMED,
    ids=[f"{p}-{w}" for p, _, _, w in MALFORMED],
)
def test_malformed_body_answers_400_naming_the_problem_and_is_kept_as_rejected(
    client: Any, kicks: mock.Mock, provider: str, content_type: str, body: bytes, word: str
) -> None:
    response = post(client, provider, body, content_type, **BY_PROVIDER[provider].signed(body))

    assert response.status_code == 400, response.content
    error = response.json()["error"]
    assert word in error
    event = ReceiptEvent.objects.get()
    assert event.provider == provider
    assert event.state == InboxState.REJECTED
    assert event.error == error
    assert event.dedupe_key is None
    assert event.body == body.decode("utf-8", errors="replace")
    assert event.content_type == content_type
    kicks.assert_not_called()


def test_every_malformed_body_is_kept_even_when_repeated(client: Any) -> None:
    for _ in range(2):
        response = post_webhook(client, "generic", b'{"status": "delivered"}')
        assert response.status_code == 400

    assert ReceiptEvent.objects.filter(state=InboxState.REJECTED, dedupe_key=None).count() == 2


# --- duplicates -----------------------------------------------------------------------------------------


@each_provider
def test_same_receipt_twice_is_stored_once(client: Any, case: Case, kicks: mock.Mock) -> None:
    first = post(client, case.provider, case.body, case.content_type, **case.signed())
    second = post(client, case.provider, case.body, case.content_type, **case.signed())

    assert first.json() == {"accepted": 1, "duplicates": 0}
    assert second.status_code == 200
    assert second.json() == {"accepted": 0, "duplicates": 1}
    assert ReceiptEvent.objects.count() == 1
    kicks.assert_called_once()


@each_provider
def test_same_facts_in_a_reserialised_envelope_are_a_duplicate(client: Any, case: Case) -> None:
    again = case.reserialised()
    assert again != case.body

    post_webhook(client, case.provider, case.body, content_type=case.content_type)
    response = post_webhook(client, case.provider, again, content_type=case.content_type)

    assert response.status_code == 200
    assert response.json() == {"accepted": 0, "duplicates": 1}
    assert ReceiptEvent.objects.get().body == case.body.decode()


@each_provider
def test_another_status_of_the_same_message_is_not_a_duplicate(client: Any, case: Case) -> None:
    post_webhook(client, case.provider, case.body, content_type=case.content_type)
    response = post_webhook(client, case.provider, case.other_status, content_type=case.content_type)

    assert response.status_code == 200
    assert response.json() == {"accepted": 1, "duplicates": 0}
    assert ReceiptEvent.objects.count() == 2


def test_duplicate_message_data_counts_each_receipt_as_a_duplicate(client: Any) -> None:
    post_webhook(client, "genesys_cloud", GC_MESSAGE_DATA)
    response = post_webhook(client, "genesys_cloud", GC_MESSAGE_DATA)

    assert response.json() == {"accepted": 0, "duplicates": 2}
    assert ReceiptEvent.objects.count() == 1


def test_same_body_for_another_provider_is_not_a_duplicate(client: Any) -> None:
    # The dedupe key is unique per provider: two providers may well carry the same facts.
    body = b'{"id": "m-1", "status": "sent", "type": "Receipt", "channel": {"messageId": "m-1"}}'
    for provider in ("generic", "genesys_cloud"):
        assert post_webhook(client, provider, body).json() == {"accepted": 1, "duplicates": 0}

    assert ReceiptEvent.objects.count() == 2


# --- nothing else happens in the request ----------------------------------------------------------------


def test_ingest_runs_only_the_inbox_insert(client: Any, django_assert_max_num_queries: Any) -> None:
    case = BY_PROVIDER["generic"]
    register(provider="generic", provider_message_id="msg-7a3b9c2d-1e4f-5a6b-7c8d-9e0f1a2b3c4d")

    # One statement, in autocommit: INSERT INTO receipts_receiptevent ... ON CONFLICT DO NOTHING RETURNING id
    # (SQLite spells it INSERT OR IGNORE).
    # Authentication, parsing and the dedupe key are pure Python; no session, user or message lookup happens,
    # no transaction is opened, and the duplicate check is the unique constraint, not a SELECT.
    with django_assert_max_num_queries(1) as captured:
        response = post(client, case.provider, case.body, JSON, **case.signed())

    assert response.status_code == 200
    [insert] = [q["sql"] for q in captured.captured_queries]
    assert '"receipts_receiptevent"' in insert.split("(")[0]
    assert "ON CONFLICT DO NOTHING" in insert or insert.startswith("INSERT OR IGNORE")
    assert insert.endswith('RETURNING "receipts_receiptevent"."id"')


def test_a_duplicate_costs_one_insert_that_does_nothing(client: Any, django_assert_max_num_queries: Any) -> None:
    case = BY_PROVIDER["generic"]
    post_webhook(client, case.provider, case.body)

    # The same single INSERT, which the unique constraint turns into nothing: no error, no rollback.
    with django_assert_max_num_queries(1) as captured:
        response = post_webhook(client, case.provider, case.body)

    assert response.json() == {"accepted": 0, "duplicates": 1}
    statements = [q["sql"].split()[0].upper() for q in captured.captured_queries]
    assert statements == ["INSERT"]
    assert ReceiptEvent.objects.filter(provider=case.provider).count() == 1


def test_a_rejected_body_costs_one_insert(client: Any, django_assert_max_num_queries: Any) -> None:
    with django_assert_max_num_queries(1) as captured:
        response = post_webhook(client, "generic", b"{}")

    assert response.status_code == 400
    assert captured.captured_queries[0]["sql"].split()[0].upper() == "INSERT"


def test_refused_request_touches_no_table(client: Any, django_assert_num_queries: Any) -> None:
    case = BY_PROVIDER["generic"]
    with django_assert_num_queries(0):
        post(client, case.provider, case.body, JSON, **case.signed(secret=case.other_secret))


@each_provider
def test_the_post_itself_creates_no_message_and_no_timeline_entry(client: Any, case: Case) -> None:
    # A message the receipt would match, so processing in the request would show on it.
    refs = {
        "genesys_cloud": {"provider_message_id": "8c1f5e3a2b7d4c9e"},
        "genesys_sms": {"provider_message_id": "4f9c2b1e-7a0d-4c1e-9a51-2d8f3e6b7c10"},
        "webex_connect": {
            "provider_message_id": "4b72d8a2-290d-49e2-993e-3bd8edf31c81",
            "channel": "email",
            "to": "destination@domain.tld",
        },
        "generic": {"provider_message_id": "msg-7a3b9c2d-1e4f-5a6b-7c8d-9e0f1a2b3c4d"},
    }
    message = register(provider=case.provider, **refs[case.provider])

    response = post(client, case.provider, case.body, case.content_type, **case.signed())

    assert response.status_code == 200
    assert Message.objects.count() == 1
    assert MessageEvent.objects.count() == 0
    message.refresh_from_db()
    assert message.status == "pending"
    assert ReceiptEvent.objects.get().state == InboxState.RECEIVED


# --- the broker is not the webhook's problem ------------------------------------------------------------


def test_a_kick_with_the_broker_down_logs_and_pauses_instead_of_raising(
    monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    failing = mock.Mock(side_effect=OperationalError("Error 111 connecting to 127.0.0.1:1. Connection refused."))
    monkeypatch.setattr(celery_app, "send_task", failing)

    with caplog.at_level(logging.WARNING, logger="receipts.kicks"):
        pause = kick_now()

    assert pause == BROKER_DOWN_PAUSE
    failing.assert_called_once()
    warnings = [r for r in caplog.records if r.name == "receipts.kicks" and r.levelno == logging.WARNING]
    assert len(warnings) == 1
    assert "broker unreachable" in warnings[0].getMessage()


def closed_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture
def redis_broker_on_a_closed_port(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    """The project's Celery app pointed at a Redis URL nobody listens on, with the settings module's own
    transport options for Redis (the settings are evaluated again with that CELERY_BROKER_URL)."""
    import config.settings as settings_module
    from config.celery import app

    url = f"redis://127.0.0.1:{closed_port()}/0"
    monkeypatch.setenv("CELERY_BROKER_URL", url)
    production = runpy.run_path(settings_module.__file__)
    saved = (app.conf.broker_url, app.conf.broker_transport_options)
    monkeypatch.setattr(webhooks, "request_drain", request_drain)  # the real kicker, not the recorder

    def reset_pools() -> None:
        if app._pool is not None:
            app._pool.force_close_all()
        app._pool = None
        app.amqp._producer_pool = None

    app.conf.broker_url = production["CELERY_BROKER_URL"]
    app.conf.broker_transport_options = production["CELERY_BROKER_TRANSPORT_OPTIONS"]
    reset_pools()
    try:
        yield
    finally:
        app.conf.broker_url, app.conf.broker_transport_options = saved
        reset_pools()


@pytest.mark.usefixtures("redis_broker_on_a_closed_port")
def test_broker_on_a_closed_port_still_answers_200_quickly(client: Any, caplog: pytest.LogCaptureFixture) -> None:
    case = BY_PROVIDER["generic"]

    started = time.monotonic()
    with caplog.at_level(logging.WARNING, logger="receipts.kicks"):
        response = post_webhook(client, case.provider, case.body)
        took = time.monotonic() - started

        assert response.status_code == 200
        assert ReceiptEvent.objects.get().state == InboxState.RECEIVED
        # The kicker thread finds the broker down after the answer has gone, and says so.
        deadline = time.monotonic() + 30
        while not any("broker unreachable" in r.getMessage() for r in caplog.records) and time.monotonic() < deadline:
            time.sleep(0.05)
    assert any("broker unreachable" in r.getMessage() for r in caplog.records)
    # Providers time their webhooks out after a few seconds and then retry; the kick must not eat that budget
    # (a publish to a dead Redis takes about 6 s of connect retries). A bound on blocking, not a benchmark.
    assert took < 2.0, f"webhook took {took:.1f} s with the broker down"


@pytest.mark.parametrize("method", ["get", "put", "delete"])
def test_only_post_is_allowed_and_nothing_is_stored(client: Any, method: str) -> None:
    response = getattr(client, method)("/webhooks/generic/")

    assert response.status_code == 405
    assert response["Allow"] == "POST"
    assert "POST" in response.json()["error"]
    assert ReceiptEvent.objects.count() == 0


@pytest.mark.django_db(transaction=True)
def test_a_connection_the_server_closed_while_idle_costs_the_provider_nothing(
    client: Any, caplog: pytest.LogCaptureFixture
) -> None:
    """With CONN_HEALTH_CHECKS off (the default) a reused connection is not checked before use: the server
    ending it between two webhooks must not turn the second into a 500."""
    if not is_postgres():
        pytest.skip("needs a database server that can end a client's connection")
    from django.db import connection

    case = BY_PROVIDER["generic"]
    first = post(client, case.provider, case.body, JSON, **case.signed())
    assert first.status_code == 200
    db = connection.settings_dict
    where = {"dbname": db["NAME"], "user": db["USER"], "host": db["HOST"], "port": db["PORT"] or 5432}
    with psycopg.connect(**where, autocommit=True) as admin:
        ended = admin.execute("SELECT pg_terminate_backend(%s)", [connection.connection.info.backend_pid]).fetchone()
    assert ended == (True,)

    with caplog.at_level(logging.WARNING, logger="receipts.webhooks"):
        second = post(client, case.provider, case.other_status, JSON, **case.signed(case.other_status))

    assert (second.status_code, second.json()) == (200, {"accepted": 1, "duplicates": 0})
    assert ReceiptEvent.objects.count() == 2
    assert any("database connection lost" in r.getMessage() for r in caplog.records)
