"""Genesys Cloud as the simulator serves it: OAuth, agentless sends, details, bulk, errors and the rate limit,
in the shapes the platform SDK documents (see the docstring of simulator/genesys_cloud.py)."""

from __future__ import annotations

import httpx
import pytest

from receipts.providers.genesys_cloud.parser import MESSAGE_STATUS, REASON, RECEIPT_STATUS
from simulator import SimulatorServer
from tests.apprunner import wait_until
from tests.simulator.conftest import bearer, configure, get_token, send_sms, stats

GENESYS_ERROR_KEYS = {"message", "code", "status", "contextId", "details", "errors"}


def force(http: httpx.Client, message_id: str, outcome: str, reason: str = "") -> None:
    response = http.post(f"/_sim/messages/{message_id}/outcome", json={"outcome": outcome, "reason": reason})
    assert response.status_code == 200, response.text


def details(http: httpx.Client, token: str, message_id: str) -> dict:
    response = http.get(f"/api/v2/conversations/messages/{message_id}/details", headers=bearer(token))
    assert response.status_code == 200, response.text
    return response.json()


def test_token_is_issued_for_client_credentials_in_the_oauth_shape(http: httpx.Client) -> None:
    response = http.post("/oauth/token", auth=("my-client", "s3cret"), data={"grant_type": "client_credentials"})

    assert response.status_code == 200
    body = response.json()
    assert set(body) == {"access_token", "token_type", "expires_in"}
    assert (body["token_type"], body["expires_in"]) == ("bearer", 86400)
    # Credentials in the form work as well as Basic.
    form = {"grant_type": "client_credentials", "client_id": "c", "client_secret": "s"}
    assert http.post("/oauth/token", data=form).status_code == 200
    assert stats(http)["tokens_issued"] == 2


def test_token_endpoint_refuses_other_grants_and_unknown_clients(http: httpx.Client) -> None:
    configure(http, clients={"known": "right"})

    wrong_grant = http.post("/oauth/token", auth=("known", "right"), data={"grant_type": "password"})
    wrong_secret = http.post("/oauth/token", auth=("known", "wrong"), data={"grant_type": "client_credentials"})

    assert (wrong_grant.status_code, wrong_grant.json()["error"]) == (400, "unsupported_grant_type")
    assert (wrong_secret.status_code, wrong_secret.json()["error"]) == (401, "invalid_client")
    assert http.post("/oauth/token", auth=("known", "right"), data={"grant_type": "client_credentials"}).is_success


def test_api_answers_401_in_the_genesys_error_shape_without_or_with_a_bad_bearer(http: httpx.Client) -> None:
    missing = http.get("/api/v2/conversations/messages/x/details")
    bad = http.get("/api/v2/conversations/messages/x/details", headers=bearer("not-a-token"))

    assert missing.status_code == bad.status_code == 401
    assert set(missing.json()) == set(bad.json()) == GENESYS_ERROR_KEYS
    assert missing.json()["code"] == "authentication.required"
    assert (bad.json()["code"], bad.json()["status"]) == ("bad.credentials", 401)


def test_agentless_sms_answers_a_send_agentless_outbound_message_response(http: httpx.Client) -> None:
    token = get_token(http)

    response = send_sms(http, token, text="Your code is 1234")

    assert response.status_code == 202
    body = response.json()
    assert {"id", "conversationId", "fromAddress", "toAddress", "messengerType", "textBody", "timestamp"} <= set(body)
    assert (body["toAddress"], body["messengerType"], body["textBody"]) == ("+15551234567", "sms", "Your code is 1234")
    assert body["timestamp"].endswith("Z") and body["id"] != body["conversationId"]
    assert body["message"]["status"] == "queued"


@pytest.mark.parametrize(
    ("change", "complaint"),
    [
        ({"textBody": "x" * 766}, "766 characters"),
        ({"toAddress": "5551234567"}, "E.164"),
        ({"toAddressMessengerType": "email"}, "toAddressMessengerType"),
        ({"fromAddress": ""}, "fromAddress"),
        ({"textBody": None}, "textBody"),
    ],
)
def test_agentless_sms_refuses_what_genesys_refuses(http: httpx.Client, change: dict, complaint: str) -> None:
    body = {"fromAddress": "+15559876543", "toAddress": "+15551234567", "toAddressMessengerType": "sms"}
    body = {**body, "textBody": "hi", **change}

    response = http.post("/api/v2/conversations/messages/agentless", json=body, headers=bearer(get_token(http)))

    assert response.status_code == 400
    assert set(response.json()) == GENESYS_ERROR_KEYS
    assert complaint in response.json()["message"]


def test_a_765_character_sms_is_accepted(http: httpx.Client) -> None:
    assert send_sms(http, get_token(http), text="x" * 765).status_code == 202


def test_agentless_email_answers_an_agentless_email_send_response(http: httpx.Client) -> None:
    request = {
        "senderType": "Outbound",
        "fromAddress": {"email": "noreply@example.com", "name": "Acme"},
        "toAddresses": [{"email": "alice@example.com", "name": "Alice"}],
        "subject": "Your appointment",
        "textBody": "See you tomorrow.",
    }
    token = get_token(http)

    response = http.post("/api/v2/conversations/emails/agentless", json=request, headers=bearer(token))
    two = {**request, "toAddresses": [{"email": "a@example.com"}, {"email": "b@example.com"}]}
    refused = http.post("/api/v2/conversations/emails/agentless", json=two, headers=bearer(token))

    assert response.status_code == 202
    body = response.json()
    assert {"id", "conversationId", "senderType", "fromAddress", "toAddresses", "subject", "dateCreated"} <= set(body)
    assert body["toAddresses"] == [{"email": "alice@example.com", "name": "Alice"}]
    assert refused.status_code == 400


def test_an_emails_status_is_its_conversations_analytics_details_and_the_messaging_endpoints_do_not_know_it(
    http: httpx.Client,
) -> None:
    configure(http, mix={"delivered": 1})
    token = get_token(http)
    request = {
        "senderType": "Outbound",
        "fromAddress": {"email": "noreply@example.com"},
        "toAddresses": [{"email": "alice@example.com"}],
        "subject": "Hi",
        "textBody": "Hello",
    }
    sent = http.post("/api/v2/conversations/emails/agentless", json=request, headers=bearer(token)).json()

    def analytics() -> dict:
        path = f"/api/v2/analytics/conversations/{sent['conversationId']}/details"
        return http.get(path, headers=bearer(token)).json()

    wait_until(lambda: "conversationEnd" in analytics(), "the email's conversation ends")
    [customer] = [p for p in analytics()["participants"] if p["purpose"] == "customer"]
    assert [(s["mediaType"], s["deliveryStatus"]) for s in customer["sessions"]] == [("email", "DeliverySuccess")]
    assert http.get(f"/api/v2/conversations/messages/{sent['id']}/details", headers=bearer(token)).status_code == 404
    unknown = http.get("/api/v2/analytics/conversations/nope/details", headers=bearer(token))
    assert (unknown.status_code, unknown.json()["code"]) == (404, "not.found")


def test_details_move_from_queued_to_sent_to_final_with_normalized_receipts(
    sim: SimulatorServer, http: httpx.Client
) -> None:
    configure(http, sent_delay=1.5, delay_min=2.5, delay_max=2.5, mix={"delivered": 1})
    token = get_token(http)
    message_id = send_sms(http, token).json()["id"]

    first = details(http, token, message_id)
    wait_until(lambda: details(http, token, message_id)["status"] == "sent", "sent")
    sent = details(http, token, message_id)
    wait_until(lambda: details(http, token, message_id)["status"] == "delivery-success", "delivered")
    final = details(http, token, message_id)

    assert (first["status"], first["normalizedReceipts"]) == ("queued", [])
    assert [r["status"] for r in sent["normalizedReceipts"]] == ["Sent"]
    assert [r["status"] for r in final["normalizedReceipts"]] == ["Sent", "Delivered"]
    assert final["normalizedReceipts"][-1]["isFinalReceipt"] is True
    assert final["normalizedReceipts"][-1]["channel"]["messageId"] == message_id
    for body in (first, sent, final):
        assert body["status"] in MESSAGE_STATUS
        assert all(r["status"] in RECEIPT_STATUS and r["type"] == "Receipt" for r in body["normalizedReceipts"])


@pytest.mark.parametrize(("outcome", "reason"), [("failed", "InvalidDestination"), ("expired", "MessageExpired")])
def test_a_failed_message_carries_a_real_reason_code(http: httpx.Client, outcome: str, reason: str) -> None:
    token = get_token(http)
    message_id = send_sms(http, token).json()["id"]

    force(http, message_id, outcome, reason)
    wait_until(lambda: details(http, token, message_id)["status"] == "delivery-failed", "failed")

    last = details(http, token, message_id)["normalizedReceipts"][-1]
    assert last["status"] == "Failed"
    assert [r["code"] for r in last["reasons"]] == [reason]
    assert reason in REASON


def test_a_silent_message_stays_sent(http: httpx.Client) -> None:
    token = get_token(http)
    message_id = send_sms(http, token).json()["id"]
    force(http, message_id, "silent")

    wait_until(lambda: details(http, token, message_id)["status"] == "sent", "sent")

    view = http.get(f"/_sim/messages/{message_id}").json()["messages"][0]
    assert (view["outcome"], view["finalAt"], view["status"]) == ("silent", None, "sent")


def test_unknown_message_is_a_genesys_404(http: httpx.Client) -> None:
    response = http.get("/api/v2/conversations/messages/nope/details", headers=bearer(get_token(http)))

    assert (response.status_code, response.json()["code"]) == (404, "not.found")


def test_bulk_answers_entities_for_known_ids_and_refuses_more_than_1000(http: httpx.Client) -> None:
    token = get_token(http)
    sent = [send_sms(http, token).json() for _ in range(3)]
    path = f"/api/v2/conversations/messages/{sent[0]['conversationId']}/messages/bulk"

    response = http.post(path, json=[m["id"] for m in sent] + ["unknown"], headers=bearer(token))
    too_many = http.post(path, json=[f"id-{i}" for i in range(1001)], headers=bearer(token))
    not_a_list = http.post(path, json={"ids": []}, headers=bearer(token))

    assert response.status_code == 200
    assert [e["id"] for e in response.json()["entities"]] == [m["id"] for m in sent]
    assert all(e["status"] in MESSAGE_STATUS for e in response.json()["entities"])
    assert too_many.status_code == not_a_list.status_code == 400


def test_bulk_can_be_restricted_to_the_paths_conversation(http: httpx.Client) -> None:
    configure(http, bulk_same_conversation_only=True)
    token = get_token(http)
    a, b = send_sms(http, token).json(), send_sms(http, token).json()

    path = f"/api/v2/conversations/messages/{a['conversationId']}/messages/bulk"
    response = http.post(path, json=[a["id"], b["id"]], headers=bearer(token))

    assert [e["id"] for e in response.json()["entities"]] == [a["id"]]


def test_responses_carry_rate_limit_headers_and_the_budget_answers_429_with_retry_after(http: httpx.Client) -> None:
    configure(http, rate_limit_per_minute=5)
    token = get_token(http)

    answers = [http.get("/api/v2/conversations/messages/x/details", headers=bearer(token)) for _ in range(7)]

    assert [a.status_code for a in answers] == [404] * 5 + [429] * 2
    assert [a.headers["inin-ratelimit-count"] for a in answers[:5]] == ["1", "2", "3", "4", "5"]
    assert answers[0].headers["inin-ratelimit-allowed"] == "5"
    assert 0 < int(answers[0].headers["inin-ratelimit-reset"]) <= 60
    limited = answers[-1]
    assert 1 <= int(limited.headers["Retry-After"]) <= 60
    assert limited.json()["code"] == "too.many.requests.retry.after"
    assert limited.json()["message"].startswith("Rate limit exceeded the maximum. Retry the request in [")
    assert set(limited.json()) == GENESYS_ERROR_KEYS
    # A 429 is not counted against the window; another token has a budget of its own.
    assert answers[-1].headers["inin-ratelimit-count"] == "5"
    other = http.get("/api/v2/conversations/messages/x/details", headers=bearer(get_token(http)))
    assert other.status_code == 404
    assert stats(http)["faults"]["rate_limited"] == 2


def test_rate_limit_can_count_per_client_instead_of_per_token(http: httpx.Client) -> None:
    configure(http, rate_limit_per_minute=2, rate_limit_scope="client")
    tokens = [get_token(http, "shared-client") for _ in range(3)]

    codes = [http.get("/api/v2/conversations/messages/x/details", headers=bearer(t)).status_code for t in tokens]

    assert codes == [404, 404, 429]
