"""No request makes the API answer 5xx: what a database cannot take (offsets past 14:00, NUL, lone surrogates,
integers past 64 bits, forged cursors, NaN) answers 4xx in the API's error shape, on both databases."""

from __future__ import annotations

import json
from typing import Any

import pytest

from receipts.models import ApiClient, Message

pytestmark = pytest.mark.django_db


@pytest.fixture
def api(client: Any) -> Any:
    _, token = ApiClient.issue("hostile", ["read", "write"])
    client.defaults["HTTP_AUTHORIZATION"] = f"Token {token}"
    client.raise_request_exception = False
    return client


def assert_error(response: Any, status: int, words: str) -> None:
    assert response.status_code == status, response.content[:300]
    assert response["Content-Type"] == "application/json"
    assert words in json.dumps(response.json(), ensure_ascii=False)
    assert response.json()["error"]


@pytest.mark.parametrize(
    ("url", "status", "words"),
    [
        ("/api/v1/messages/?updated_after=2024-01-01T00:00:00%2B16:00", 400, "UTC offset is out of range"),
        ("/api/v1/suppressions/?created_after=2024-01-01T00:00:00-15:00", 400, "UTC offset is out of range"),
        ("/api/v1/messages/?updated_after=yesterday", 400, "ISO 8601"),
        ("/api/v1/messages/?updated_after=0000-00-00T00:00:00Z", 400, "a date and time that exists"),
        ("/api/v1/suppressions/?created_after=2026-02-31T00:00:00Z", 400, "a date and time that exists"),
        ("/api/v1/messages/?updated_after=9999-12-31T23:59:59-14:00", 400, "outside the years 1 to 9999"),
        ("/api/v1/changes/?kind=%00", 400, "NUL"),
        ("/api/v1/changes/?crm_record_id=a%00b", 400, "NUL"),
        ("/api/v1/changes/?after=" + "9" * 5000 + ".1", 400, "not a cursor from this feed"),
        ("/api/v1/changes/?after=9223372036854775808.1", 400, "not a cursor from this feed"),
        ("/api/v1/messages/?cursor=cD1hYmM=", 404, "Invalid cursor"),
        ("/api/v1/suppressions/?cursor=cD1hYmM=", 404, "Invalid cursor"),
        ("/api/v1/messages/?cursor=cD05OTk5OTk5OTk5OTk5OTk5OTk5OTk5", 404, "Invalid cursor"),
        ("/api/v1/messages/?to=%00", 400, "Null characters"),
        ("/api/v1/messages/?status=%00", 400, "valid choice"),
    ],
)
def test_a_hostile_query_answers_4xx_in_the_error_shape(api: Any, url: str, status: int, words: str) -> None:
    assert_error(api.get(url), status, words)


MESSAGE = {"channel": "sms", "provider": "generic", "provider_message_id": "x-1", "to": "+15551234567"}


@pytest.mark.parametrize(
    ("path", "body", "words"),
    [
        ("/api/v1/messages/", json.dumps({**MESSAGE, "metadata": {"a": "\u0000"}}), "NUL"),
        ("/api/v1/messages/", json.dumps({**MESSAGE, "metadata": {"a": "\ud800"}}), "lone surrogate"),
        ("/api/v1/messages/", json.dumps({**MESSAGE, "provider_message_id": "x\ud800"}), "lone surrogate"),
        ("/api/v1/messages/", json.dumps({**MESSAGE, "metadata": {"a": float("nan")}}), "NaN is not a JSON number"),
        ("/api/v1/messages/", '{"metadata": ' + "9" * 5000 + "}", "JSON parse error"),
        ("/api/v1/messages/", "[" * 5000 + "]" * 5000, "nested deeper than 32 levels"),
        ("/api/v1/suppressions/check/", json.dumps({"channel": "sms", "addresses": ["\u0000"]}), "NUL"),
        ("/api/v1/suppressions/check/", json.dumps({"channel": "sms", "addresses": ["\ud800"]}), "lone surrogate"),
        ("/api/v1/suppressions/", json.dumps({"channel": "email", "address": "a@b.c", "note": "\ud800"}), "surrogate"),
    ],
)
def test_a_hostile_body_answers_400_and_stores_nothing(api: Any, path: str, body: str, words: str) -> None:
    assert_error(api.post(path, data=body, content_type="application/json"), 400, words)
    assert Message.objects.count() == 0


def test_a_body_over_the_limit_answers_413_in_the_error_shape(api: Any, settings: Any) -> None:
    body = b'{"metadata": "' + b"x" * (settings.DATA_UPLOAD_MAX_MEMORY_SIZE + 10) + b'"}'

    assert_error(api.post("/api/v1/messages/", data=body, content_type="application/json"), 413, "request body over")
