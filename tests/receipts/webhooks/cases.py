"""Shared data and helpers for the webhook ingest tests (DESIGN.md, "The flow of one receipt" step 1):
authenticate, check the format, store the raw body in the inbox, answer. Nothing else happens in the request.

A valid body per provider (``Case``, ``CASES``, ``BY_PROVIDER``), ``post`` and the accepted/refused checks."""

from __future__ import annotations

import base64
import json
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import pytest

from receipts.models import InboxState, ReceiptEvent
from tests.conftest import (
    GENERIC_SECRET,
    GENESYS_CLOUD_SECRET,
    GENESYS_SMS_TOKEN,
    WEBEX_SECRET,
    WEBHOOK_PATHS,
    hub_signature,
    sample,
    standard_webhooks_headers,
)

JSON = "application/json"
FORM = "application/x-www-form-urlencoded"

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
