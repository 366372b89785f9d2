"""The REST API: API clients and their tokens, registering messages, reading them with their timelines."""

from __future__ import annotations

import json
import threading
from io import StringIO
from typing import Any

import pytest
from django.core.management import CommandError, call_command
from django.db import connection, transaction
from django.test.utils import CaptureQueriesContext
from rest_framework.test import APIClient

from receipts.db import snapshot
from receipts.models import ApiClient, Message, MessageEvent
from receipts.status import Status
from tests.conftest import drain, post_webhook, register

pytestmark = pytest.mark.django_db

REGISTRATION = {
    "channel": "sms",
    "provider": "genesys_sms",
    "provider_message_id": "4f9c2b1e-7a0d-4c1e-9a51-2d8f3e6b7c10",
    "to": "+1 (555) 123-4567",
    "crm_record_id": "003XX000004TmiQ",
    "campaign": "appt-reminder-q3",
    "priority": "high",
}


def client_with(token: str) -> APIClient:
    client = APIClient()
    client.credentials(HTTP_AUTHORIZATION=f"Token {token}")
    return client


def test_create_api_client_prints_a_working_token_as_its_last_line() -> None:
    out = StringIO()
    call_command("create_api_client", "crm", stdout=out, stderr=StringIO())
    token = out.getvalue().strip().splitlines()[-1]

    response = client_with(token).get("/api/v1/messages/")

    assert response.status_code == 200
    client = ApiClient.objects.get(name="crm")
    assert client.token_hash != token  # only the hash is kept
    assert client.scopes == ["read", "write"]


def test_create_api_client_refuses_unknown_scopes_and_duplicate_names() -> None:
    with pytest.raises(CommandError, match="unknown scope"):
        call_command("create_api_client", "x", "--scopes", "admin", stdout=StringIO(), stderr=StringIO())
    call_command("create_api_client", "x", stdout=StringIO(), stderr=StringIO())
    with pytest.raises(CommandError, match="exists already"):
        call_command("create_api_client", "x", stdout=StringIO(), stderr=StringIO())


def test_missing_wrong_and_revoked_tokens_answer_401() -> None:
    _, token = ApiClient.issue("gone", ["read"])
    assert APIClient().get("/api/v1/messages/").status_code == 401
    assert client_with("not-a-token").get("/api/v1/messages/").status_code == 401

    call_command("revoke_api_client", "gone", stdout=StringIO())

    response = client_with(token).get("/api/v1/messages/")
    assert response.status_code == 401
    assert "revoked" in response.json()["error"]


def test_read_scope_cannot_register() -> None:
    _, token = ApiClient.issue("reader", ["read"])
    response = client_with(token).post("/api/v1/messages/", REGISTRATION, format="json")
    assert response.status_code == 403


def test_register_normalises_the_address_and_is_idempotent(api: APIClient) -> None:
    first = api.post("/api/v1/messages/", REGISTRATION, format="json")
    again = api.post("/api/v1/messages/", REGISTRATION, format="json")

    assert first.status_code == 201
    assert again.status_code == 200
    assert again.json()["id"] == first.json()["id"]
    body = first.json()
    assert body["to"] == "+15551234567"
    assert (body["status"], body["campaign"], body["priority"]) == ("pending", "appt-reminder-q3", "high")


@pytest.mark.parametrize(
    ("change", "field"),
    [
        ({"to": "not a number"}, "to"),
        ({"channel": "fax"}, "channel"),
        ({"provider": "twilio"}, "provider"),
        ({"provider_message_id": ""}, "provider_message_id"),
        ({"channel": "email", "to": "nobody"}, "to"),
    ],
)
def test_register_rejects_bad_input_naming_the_field(api: APIClient, change: dict, field: str) -> None:
    response = api.post("/api/v1/messages/", {**REGISTRATION, **change}, format="json")
    assert response.status_code == 400
    assert field in response.json()["detail"]


def test_detail_shows_status_flags_and_every_receipt_raw_and_normalised(api: APIClient, client: Any) -> None:
    message = register(provider="genesys_sms", provider_message_id="d-1")
    for state, result in ((6, 0), (5, 3)):
        body = f"type=receipt&message_id=d-1&message_state={state}&result_code={result}&app_id=reminders"
        post_webhook(client, "genesys_sms", body, "application/x-www-form-urlencoded")
    drain()

    body = api.get(f"/api/v1/messages/{message.pk}/").json()

    assert (body["status"], body["failure_category"], body["retryable"]) == ("failed", "invalid_destination", False)
    assert (body["needs_review"], body["review_reason"], body["assumed"]) == (False, "", False)
    events = body["events"]
    assert [e["provider_code"] for e in events] == ["state=6;result=0", "state=5;result=3"]
    assert events[1]["raw"] == {
        "type": "receipt",
        "message_id": "d-1",
        "message_state": "5",
        "result_code": "3",
        "app_id": "reminders",
    }
    assert {e["source"] for e in events} == {"webhook"}
    assert events[1]["status"] == "failed"
    assert all(e["occurred_at"] and e["received_at"] for e in events)


def test_list_filters(api: APIClient, client: Any) -> None:
    for i, (provider, channel, to) in enumerate(
        [
            ("generic", "sms", "+15550000001"),
            ("webex_connect", "email", "x@example.com"),
            ("generic", "sms", "+15550000002"),
        ]
    ):
        api.post(
            "/api/v1/messages/",
            {
                "channel": channel,
                "provider": provider,
                "provider_message_id": f"f-{i}",
                "to": to,
                "crm_record_id": f"crm-{i}",
                "campaign": "spring" if i < 2 else "autumn",
            },
            format="json",
        )
    post_webhook(
        client, "generic", json.dumps({"id": "f-0", "status": "delivered", "timestamp": "2026-11-20T10:00:00Z"})
    )
    drain()

    def ids(**query: str) -> list[str]:
        response = api.get("/api/v1/messages/", query)
        assert response.status_code == 200, response.content
        return sorted(m["provider_message_id"] for m in response.json()["results"])

    assert ids(status="delivered") == ["f-0"]
    assert ids(status="pending") == ["f-1", "f-2"]
    assert ids(channel="email") == ["f-1"]
    assert ids(provider="generic") == ["f-0", "f-2"]
    assert ids(campaign="spring") == ["f-0", "f-1"]
    assert ids(campaign="no-such-campaign") == []
    assert ids(crm_record_id="crm-2") == ["f-2"]
    assert ids(to="+1 555 000 0002") == ["f-2"]
    assert ids(to="X@Example.com") == ["f-1"]
    assert ids(needs_review="false") == ["f-0", "f-1", "f-2"]
    assert ids(needs_review="true") == []
    # Several statuses at once, without a DISTINCT over every match (no join can repeat a row).
    with CaptureQueriesContext(connection) as queries:
        response = api.get("/api/v1/messages/?status=delivered&status=pending")
    assert sorted(m["provider_message_id"] for m in response.json()["results"]) == ["f-0", "f-1", "f-2"]
    assert not any("DISTINCT" in q["sql"].upper() for q in queries.captured_queries)
    assert ids(provider_message_id="f-1") == ["f-1"]
    updated = {m["provider_message_id"]: m["updated_at"] for m in api.get("/api/v1/messages/").json()["results"]}
    assert ids(updated_after=updated["f-2"]) == ["f-0"]  # only the receipt touched f-0 after f-2 was registered
    assert ids(updated_after=updated["f-0"]) == []


def test_list_is_cursor_paginated(api: APIClient) -> None:
    for i in range(5):
        register(provider_message_id=f"page-{i}")
    page = api.get("/api/v1/messages/", {"page_size": 2}).json()
    seen = [m["provider_message_id"] for m in page["results"]]
    while page["next"]:
        page = api.get(page["next"]).json()
        seen += [m["provider_message_id"] for m in page["results"]]
    assert sorted(seen) == [f"page-{i}" for i in range(5)]


def test_openapi_schema_documents_the_api_and_webhooks(client: Any) -> None:
    response = client.get("/api/schema/", HTTP_ACCEPT="application/json")
    assert response.status_code == 200
    paths = json.loads(response.content)["paths"]
    assert "/api/v1/messages/" in paths
    assert "/api/v1/messages/{id}/" in paths
    assert "/webhooks/generic/" in paths


@pytest.mark.django_db(transaction=True)
def test_a_message_and_its_timeline_are_read_from_one_snapshot() -> None:
    """A batch that commits between the two reads of a message's detail is seen whole or not at all."""
    message = register(to="+15551230000", provider_message_id="snap-1")
    seen: list[str] = []

    def commit_a_batch() -> None:
        try:
            with transaction.atomic():
                Message.objects.filter(pk=message.pk).update(status=Status.DELIVERED)
                MessageEvent.objects.create(
                    message_id=message.pk, receipt_key="k1", provider_code="delivered", status=Status.DELIVERED
                )
        finally:
            connection.close()

    with snapshot():
        seen.append(Message.objects.get(pk=message.pk).status)
        writer = threading.Thread(target=commit_a_batch)
        writer.start()
        writer.join(30)
        assert not writer.is_alive()
        seen.append(str(MessageEvent.objects.filter(message_id=message.pk).count()))
    seen.append(Message.objects.get(pk=message.pk).status)

    assert seen == [Status.PENDING, "0", Status.DELIVERED]
