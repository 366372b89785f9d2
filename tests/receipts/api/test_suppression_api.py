"""The suppression list over the REST API: list, add, lift (with a reason), check in bulk, scopes."""

from __future__ import annotations

from typing import Any

import pytest
from rest_framework.test import APIClient

from receipts.actions import suppression
from receipts.addresses import NOT_DIGITS
from receipts.models import ApiClient, Suppression

pytestmark = pytest.mark.django_db

NUMBER = "+15551234567"


def client_with(scopes: list[str]) -> APIClient:
    _, token = ApiClient.issue(f"client-{'-'.join(scopes)}", scopes)
    client = APIClient()
    client.credentials(HTTP_AUTHORIZATION=f"Token {token}")
    return client


def test_post_adds_a_suppression_from_the_api_with_its_history(api: APIClient) -> None:
    response = api.post(
        "/api/v1/suppressions/",
        {"channel": "sms", "address": "(555) 123-4567", "reason": "unsubscribe", "note": "asked on a call"},
        format="json",
    )

    assert response.status_code == 201, response.json()
    body = response.json()
    assert (body["address"], body["reason"], body["source"], body["active"]) == (NUMBER, "unsubscribe", "api", True)
    assert body["created_by"] == "api:test-client"
    assert [(h["action"], h["actor"]) for h in body["history"]] == [("added", "api:test-client")]

    again = api.post("/api/v1/suppressions/", {"channel": "sms", "address": NUMBER, "reason": "unsubscribe"})
    assert (again.status_code, again.json()["id"]) == (200, body["id"])


def test_post_defaults_to_manual_and_refuses_bad_input(api: APIClient) -> None:
    ok = api.post("/api/v1/suppressions/", {"channel": "email", "address": "A@Example.com"}, format="json")
    assert (ok.status_code, ok.json()["reason"], ok.json()["address"]) == (201, "manual", "a@example.com")

    bad = api.post("/api/v1/suppressions/", {"channel": "sms", "address": "call me"}, format="json")
    assert bad.status_code == 400
    assert bad.json()["detail"]["address"] == [NOT_DIGITS]
    past = api.post(
        "/api/v1/suppressions/",
        {"channel": "sms", "address": NUMBER, "expires_at": "2020-01-01T00:00:00Z"},
        format="json",
    )
    assert past.status_code == 400
    assert "expires_at" in past.json()["detail"]


def test_list_filters_by_channel_reason_source_active_and_address(api: APIClient) -> None:
    suppression.suppress("sms", NUMBER, "unsubscribe", source="receipt")
    lifted, _ = suppression.suppress("sms", "+15550000002", "manual", source="operator")
    suppression.lift(lifted.pk, reason="mistake", source="operator")
    suppression.suppress("email", "a@example.com", "hard_bounce", source="import")

    def ids(query: str) -> list[str]:
        response = api.get(f"/api/v1/suppressions/?{query}")
        assert response.status_code == 200
        return sorted(r["address"] for r in response.json()["results"])

    assert ids("") == ["+15550000002", NUMBER, "a@example.com"]
    assert ids("channel=sms") == ["+15550000002", NUMBER]
    assert ids("reason=hard_bounce&reason=unsubscribe") == [NUMBER, "a@example.com"]
    assert ids("source=operator") == ["+15550000002"]
    assert ids("active=true") == [NUMBER, "a@example.com"]
    assert ids("active=false") == ["+15550000002"]
    assert ids("address=(555)%20123-4567&channel=sms") == [NUMBER]


def test_delete_lifts_with_a_reason_and_keeps_the_entry(api: APIClient) -> None:
    row, _ = suppression.suppress("sms", NUMBER, "unsubscribe", source="receipt")

    missing = api.delete(f"/api/v1/suppressions/{row.pk}/")
    assert missing.status_code == 400
    assert "reason" in missing.json()["detail"]

    response = api.delete(f"/api/v1/suppressions/{row.pk}/", {"reason": "resubscribed on the web form"}, format="json")

    assert response.status_code == 200
    body = response.json()
    assert (body["active"], body["lift_source"], body["lifted_by"]) == (False, "api", "api:test-client")
    assert [h["action"] for h in body["history"]] == ["added", "lifted"]
    assert body["history"][1]["note"] == "resubscribed on the web form"
    assert Suppression.objects.filter(pk=row.pk).exists()  # lifted, never deleted

    again = api.delete(f"/api/v1/suppressions/{row.pk}/?reason=again")
    assert again.status_code == 409
    assert "not active" in again.json()["error"]
    assert api.delete("/api/v1/suppressions/999999/?reason=x").status_code == 404


def test_check_answers_every_address_in_order(api: APIClient) -> None:
    suppression.suppress("sms", NUMBER, "unsubscribe", source="receipt")
    response = api.post(
        "/api/v1/suppressions/check/",
        {"channel": "sms", "addresses": ["(555) 123-4567", "+15550000000", "nope"]},
        format="json",
    )
    assert response.status_code == 200
    body = response.json()
    assert (body["checked"], body["suppressed"], body["invalid"]) == (3, 1, 1)
    assert [(r["normalized"], r["suppressed"], r.get("reasons")) for r in body["results"]] == [
        (NUMBER, True, ["unsubscribe"]),
        ("+15550000000", False, None),
        (None, False, None),
    ]
    assert body["results"][2]["error"] == NOT_DIGITS


@pytest.mark.parametrize(
    ("payload", "field"),
    [
        ({"channel": "fax", "addresses": ["x"]}, "channel"),
        ({"channel": "sms", "addresses": []}, "addresses"),
        ({"channel": "sms", "addresses": "+15551234567"}, "addresses"),
        ({"channel": "sms", "addresses": ["+15551234567", 42]}, "addresses"),
    ],
)
def test_check_refuses_malformed_requests(api: APIClient, payload: dict[str, Any], field: str) -> None:
    response = api.post("/api/v1/suppressions/check/", payload, format="json")
    assert response.status_code == 400
    assert field in response.json()["detail"]


def test_check_takes_up_to_ten_thousand_addresses_in_one_call(api: APIClient, django_assert_num_queries: Any) -> None:
    addresses = [f"+1555{i:07d}" for i in range(10_000)]
    suppression.suppress("sms", addresses[1234], "complaint", source="api")
    api.get("/api/v1/suppressions/")  # stamps the client's last use (once a minute), not counted below
    # The token (1), then one indexed IN per 1,000 addresses (10).
    with django_assert_num_queries(11):
        response = api.post("/api/v1/suppressions/check/", {"channel": "sms", "addresses": addresses}, format="json")
    assert response.status_code == 200
    assert response.json()["suppressed"] == 1

    too_many = api.post(
        "/api/v1/suppressions/check/", {"channel": "sms", "addresses": [*addresses, "+15550000000"]}, format="json"
    )
    assert too_many.status_code == 400
    assert "at most 10000" in str(too_many.json()["detail"])


def test_a_read_only_client_can_list_and_check_but_not_add_or_lift() -> None:
    row, _ = suppression.suppress("sms", NUMBER, "unsubscribe", source="receipt")
    reader = client_with(["read"])

    assert reader.get("/api/v1/suppressions/").status_code == 200
    check = reader.post("/api/v1/suppressions/check/", {"channel": "sms", "addresses": [NUMBER]}, format="json")
    assert check.status_code == 200
    assert reader.post("/api/v1/suppressions/", {"channel": "sms", "address": NUMBER}).status_code == 403
    assert reader.delete(f"/api/v1/suppressions/{row.pk}/?reason=x").status_code == 403
    assert APIClient().post("/api/v1/suppressions/check/", {"channel": "sms", "addresses": [NUMBER]}).status_code == 401


def test_retrieve_shows_the_history(api: APIClient) -> None:
    row, _ = suppression.suppress("email", "a@example.com", "complaint", source="receipt", actor="receipt:webex")
    response = api.get(f"/api/v1/suppressions/{row.pk}/")
    assert response.status_code == 200
    assert [h["actor"] for h in response.json()["history"]] == ["receipt:webex"]


def test_registration_keeps_the_content_a_retry_would_send(api: APIClient) -> None:
    registration = {
        "channel": "sms",
        "provider": "genesys_sms",
        "provider_message_id": "c-1",
        "to": NUMBER,
        "content": {"text": "Your appointment is at 10:00", "from": "+15550009999"},
    }
    assert api.post("/api/v1/messages/", registration, format="json").status_code == 201
    from receipts.models import Message

    assert Message.objects.get().content == {"text": "Your appointment is at 10:00", "from": "+15550009999"}

    wrong = api.post(
        "/api/v1/messages/", {**registration, "provider_message_id": "c-2", "content": {"body": "x"}}, format="json"
    )
    assert wrong.status_code == 400
    assert "unknown content field" in str(wrong.json()["detail"])
