"""Malformed bodies: 400 naming the problem, each one kept in the inbox as rejected."""

from __future__ import annotations

from typing import Any
from unittest import mock

import pytest

from receipts.models import InboxState, ReceiptEvent
from tests.conftest import post_webhook
from tests.receipts.webhooks.cases import BY_PROVIDER, FORM, JSON, post

pytestmark = pytest.mark.django_db


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
