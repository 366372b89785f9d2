"""POST /api/v1/sends/: one message sent now through its provider (the simulator, over HTTP), once per
Idempotency-Key, refused at send when suppressed, registered for tracking; never sent twice when the outcome is
unknown."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import timedelta
from typing import Any

import httpx
import pytest
from django.utils import timezone
from rest_framework.test import APIClient

from campaigns import dispatch
from campaigns.models import Send
from receipts.actions import suppression
from receipts.models import ApiClient, Message
from simulator import SimulatorServer

pytestmark = pytest.mark.django_db

REMINDER = {
    "channel": "sms",
    "provider": "genesys_sms",
    "to": "(555) 000-2222",
    "content": {"text": "Your appointment is tomorrow at 10:00. Reply YES to confirm."},
    "crm_record_id": "003XX0000001",
    "priority": "high",
}


@pytest.fixture
def sim(settings: Any) -> Iterator[SimulatorServer]:
    server = SimulatorServer(seed=3, push=False).start()
    settings.GENESYS_SMS_MT_URL = f"{server.url}/httpapi/receiver"
    settings.GENESYS_SMS_LOGIN, settings.GENESYS_SMS_PASSWORD = "login", "password"
    settings.GENESYS_SMS_SENDER = "+15559876543"
    settings.SENDERS = {}
    settings.DEFAULT_PHONE_REGION = "US"
    try:
        yield server
    finally:
        server.stop()


def post(api: APIClient, body: dict[str, Any], key: str | None = "reminder-1") -> Any:
    headers = {"HTTP_IDEMPOTENCY_KEY": key} if key is not None else {}
    return api.post("/api/v1/sends/", body, format="json", **headers)


def sent_by_the_simulator(sim: SimulatorServer, provider_message_id: str) -> int:
    known = httpx.get(f"{sim.url}/_sim/messages/{provider_message_id}")
    return len(known.json()["messages"]) if known.status_code == 200 else 0


def test_a_send_goes_out_once_and_is_tracked(api: APIClient, sim: SimulatorServer) -> None:
    first = post(api, REMINDER)
    assert first.status_code == 202, first.content
    assert first.json()["state"] == "planned"
    again = post(api, REMINDER)  # the client retried: same key, same message
    assert again.status_code == 200
    assert again.json()["id"] == first.json()["id"]

    assert dispatch.dispatch().sent == 1
    assert dispatch.dispatch().sent == 0  # nothing left to claim

    send = Send.objects.get()
    assert (send.state, send.to) == ("sent", "+15550002222")
    assert sent_by_the_simulator(sim, send.provider_message_id) == 1
    message = Message.objects.get(pk=send.message_id)  # registered: its receipts will find it
    assert (message.provider, message.provider_message_id, message.crm_record_id) == (
        "genesys_sms",
        send.provider_message_id,
        "003XX0000001",
    )
    shown = api.get(f"/api/v1/sends/{send.pk}/").json()
    assert (shown["state"], shown["message_id"]) == ("sent", message.pk)


def test_the_same_key_for_another_message_is_a_conflict(api: APIClient, sim: SimulatorServer) -> None:
    assert post(api, REMINDER).status_code == 202
    other = post(api, {**REMINDER, "to": "+15550003333"})
    assert other.status_code == 409
    assert "Idempotency-Key" in other.json()["error"]
    assert Send.objects.count() == 1


def test_a_key_belongs_to_its_api_client(api: APIClient, sim: SimulatorServer) -> None:
    """Client A's key is not client B's: B's different message under the same key is its own send, and nothing
    of A's (its key, its message) is named to B. Before, B got a 409 naming A's key."""
    assert post(api, REMINDER, key="shared-key-of-a").status_code == 202
    _, token = ApiClient.issue("another-client", ["read", "write"])
    other = APIClient()
    other.credentials(HTTP_AUTHORIZATION=f"Token {token}")

    theirs = post(other, {**REMINDER, "to": "+15550003333"}, key="shared-key-of-a")
    assert theirs.status_code == 202, theirs.content
    assert "+15550002222" not in theirs.content.decode()
    assert Send.objects.count() == 2
    # Each client's repeat finds its own send.
    assert post(api, REMINDER, key="shared-key-of-a").json()["to"] == "+15550002222"
    assert post(other, {**REMINDER, "to": "+15550003333"}, key="shared-key-of-a").status_code == 200


@pytest.mark.parametrize(
    ("body", "key"),
    [
        (REMINDER, None),
        (REMINDER, "x" * 201),
        ({**REMINDER, "to": "not a number"}, "k"),
        ({**REMINDER, "content": {}}, "k"),
        ({**REMINDER, "provider": "generic"}, "k"),
        ({**REMINDER, "metadata": {"note": "\u0000"}}, "k"),
    ],
)
def test_bad_requests_get_a_400_and_send_nothing(api: APIClient, body: dict[str, Any], key: str | None) -> None:
    response = post(api, body, key)
    assert response.status_code == 400
    assert "error" in response.json()
    assert not Send.objects.exists()


def test_a_suppressed_address_is_refused_at_send_and_counted(api: APIClient, sim: SimulatorServer) -> None:
    suppression.suppress("sms", "+15550002222", "unsubscribe", source="receipt")
    assert post(api, REMINDER).status_code == 202
    assert dispatch.dispatch().suppressed == 1
    send = Send.objects.get()
    assert (send.state, send.provider_message_id) == ("suppressed", "")
    assert send.error == "suppressed: unsubscribe"
    assert not Message.objects.exists()


def test_a_provider_that_cannot_be_reached_gets_the_send_again_later_then_gives_up(
    api: APIClient, settings: Any
) -> None:
    settings.GENESYS_SMS_MT_URL = "http://127.0.0.1:9/httpapi/receiver"  # nothing listens: nothing left
    settings.GENESYS_SMS_LOGIN, settings.GENESYS_SMS_PASSWORD, settings.SENDERS = "login", "password", {}
    settings.SEND_MAX_ATTEMPTS = 2
    assert post(api, REMINDER).status_code == 202
    assert dispatch.dispatch().retried == 1
    send = Send.objects.get()
    assert (send.state, send.attempts) == ("planned", 1)
    assert send.not_before is not None and send.not_before > timezone.now()
    assert dispatch.dispatch().claimed == 0  # not before its wait
    assert dispatch.dispatch(now=send.not_before + timedelta(seconds=1)).failed == 1
    send.refresh_from_db()
    assert send.state == "failed" and send.error.startswith("gave up after 2 attempts")


def test_a_send_whose_worker_died_is_settled_not_sent_again(api: APIClient, sim: SimulatorServer) -> None:
    post(api, REMINDER)
    post(api, {**REMINDER, "to": "+15550004444"}, key="reminder-2")
    post(api, {**REMINDER, "to": "+15550005555"}, key="reminder-3")
    long_ago = timezone.now() - timedelta(hours=1)
    first, second, third = Send.objects.order_by("id")
    # The first died after the provider took it (its answer recorded), the second before anything was known (a
    # provider that does not dedupe), the third while only claimed (nothing left).
    Send.objects.filter(pk=first.pk).update(
        state="sending", claimed_at=long_ago, provider_message_id="sim-123", provider="webex_connect"
    )
    Send.objects.filter(pk=second.pk).update(state="sending", claimed_at=long_ago, provider="webex_connect")
    Send.objects.filter(pk=third.pk).update(state="claimed", claimed_at=long_ago)

    assert dispatch.reconcile_stuck() == {"requeued": 1, "registered": 1, "unknown": 1}

    first.refresh_from_db()
    second.refresh_from_db()
    third.refresh_from_db()
    assert (first.state, Message.objects.get(pk=first.message_id).provider_message_id) == ("sent", "sim-123")
    assert second.state == "unknown"
    assert third.state == "planned"
    assert dispatch.dispatch().sent == 1  # the third only; the second is never sent again on its own
    third.refresh_from_db()
    assert third.state == "sent"


def test_sms_aggregation_sends_again_with_the_same_id_and_the_provider_takes_it_once(
    api: APIClient, sim: SimulatorServer
) -> None:
    """Our message_id is kept before the request: a worker that died mid-request is sent again, harmlessly."""
    post(api, REMINDER)
    assert dispatch.dispatch().sent == 1
    send = Send.objects.get()
    # As if the worker had died after the request and before the answer was kept.
    Send.objects.filter(pk=send.pk).update(
        state="sending", claimed_at=timezone.now() - timedelta(hours=1), message_id=None
    )
    assert dispatch.reconcile_stuck()["requeued"] == 1
    assert dispatch.dispatch().sent == 1
    send.refresh_from_db()
    assert send.state == "sent"
    assert sent_by_the_simulator(sim, send.provider_message_id) == 1  # one message at the provider
