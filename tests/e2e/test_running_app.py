"""The app as deployed (granian, Celery worker, Celery beat), driven over HTTP only.

Runs on the embedded default (SQLite, filesystem broker) and, when DATABASE_URL/CELERY_BROKER_URL point at
PostgreSQL and Redis, on those: CI runs this module both ways.
"""

from __future__ import annotations

import json
import random
import threading
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

import httpx
import pytest

from receipts import machine
from receipts.providers.generic import outcome_for
from tests.apprunner import AppEnv, wait_until
from tests.conftest import sample
from tests.e2e.conftest import post_receipt

pytestmark = pytest.mark.e2e


@dataclass
class App:
    env: AppEnv
    url: str
    api: httpx.Client

    def register(self, **fields: str) -> dict:
        response = self.api.post(f"{self.url}/api/v1/messages/", json=fields)
        assert response.status_code == 201, response.text
        return response.json()

    def message(self, message_id: int) -> dict:
        return self.api.get(f"{self.url}/api/v1/messages/{message_id}/").json()


@pytest.fixture(scope="module")
def app(app_env: AppEnv) -> Iterator[App]:
    url = app_env.start_web(workers=2, threads=8)
    app_env.start_worker(concurrency=2)
    app_env.start_beat()
    token = app_env.api_token()
    with httpx.Client(headers={"Authorization": f"Token {token}"}, timeout=10) as api:
        yield App(app_env, url, api)


def test_an_api_body_over_its_limit_gets_a_413_through_caddy(app: App) -> None:
    body = b'{"contacts": [' + b" " * (16 * 1024 * 1024 + 10) + b"]}"  # over API_MAX_BODY, under WEB_MAX_BODY
    answer = app.api.post(f"{app.url}/api/v1/contacts/", content=body, headers={"Content-Type": "application/json"})
    assert answer.status_code == 413, answer.text[:200]
    assert "over" in answer.json()["error"]
    assert app.api.get(f"{app.url}/api/v1/contacts/").status_code == 200  # the app goes on


def wait_for_status(app: App, message_id: int, status: str) -> dict:
    def reached() -> dict | None:
        body = app.message(message_id)
        return body if body["status"] == status else None

    try:
        return wait_until(reached, f"message {message_id} {status}", interval=0.05)  # type: ignore[return-value]
    except TimeoutError:
        print(app.env.logs())
        raise


def test_health_and_readiness(app: App) -> None:
    assert httpx.get(f"{app.url}/healthz").json() == {"status": "ok"}
    ready = httpx.get(f"{app.url}/readyz")
    assert ready.status_code == 200
    assert ready.json()["checks"] == {"database": "ok", "broker": "ok"}


def test_each_providers_receipt_changes_its_message_within_seconds(app: App) -> None:
    gc_body = {
        "id": "gc-e2e-1",
        "type": "Receipt",
        "status": "Failed",
        "reasons": [{"code": "InvalidDestination", "message": "Number not reachable"}],
        "isFinalReceipt": True,
        "direction": "Outbound",
        "channel": {"platform": "Sms", "type": "Private", "messageId": "gc-e2e-1", "time": "2026-11-20T10:15:09Z"},
    }
    webex = json.loads(sample("webex-connect/email-7520-bounce.json"))
    webex["deliveryInfoNotification"]["transid"] = "wx-e2e-1"
    cases = [
        ("genesys_cloud", "sms", "+15551230001", "gc-e2e-1", json.dumps(gc_body).encode(), "failed"),
        (
            "genesys_sms",
            "sms",
            "+15551230002",
            "sms-e2e-1",
            b"type=receipt&message_id=sms-e2e-1&message_state=2&result_code=0",
            "delivered",
        ),
        ("webex_connect", "email", "destination@domain.tld", "wx-e2e-1", json.dumps(webex).encode(), "bounced"),
        (
            "generic",
            "sms",
            "+15551230004",
            "gen-e2e-1",
            sample("generic/delivered.json").replace(b"msg-7a3b9c2d-1e4f-5a6b-7c8d-9e0f1a2b3c4d", b"gen-e2e-1"),
            "delivered",
        ),
    ]
    registered = {
        provider: app.register(channel=channel, provider=provider, provider_message_id=pmid, to=to)["id"]
        for provider, channel, to, pmid, _, _ in cases
    }
    started = time.monotonic()
    with httpx.Client(timeout=10) as http:
        for provider, _, _, _, body, _ in cases:
            response = post_receipt(app.env, http, app.url, provider, body)
            assert response.status_code == 200, response.text
            assert response.json() == {"accepted": 1, "duplicates": 0}

    for provider, _, _, _, _, expected in cases:
        body = wait_for_status(app, registered[provider], expected)
        assert len(body["events"]) == 1
        assert body["events"][0]["raw"]
    elapsed = time.monotonic() - started
    print(f"four providers' receipts applied {elapsed:.2f}s after the first POST")

    bounced = app.message(registered["webex_connect"])
    assert (bounced["failure_category"], bounced["events"][0]["details"]["bounce_type"]) == (
        "invalid_destination",
        "Permanent_General",
    )
    failed = app.message(registered["genesys_cloud"])
    assert failed["failure_category"] == "invalid_destination"


def conflicting_receipts(message_id: str) -> list[dict]:
    """Receipts for one message with distinct provider times, including two conflicting finals."""
    base = datetime(2026, 11, 20, 10, 0, tzinfo=UTC)
    steps = [
        ("queued", 1, ""),
        ("sent", 2, ""),
        ("delivered", 5, ""),
        ("read", 6, ""),
        ("failed", 4, "carrier_rejected"),
        ("expired", 9, ""),
        ("clicked", 7, ""),
    ]
    return [
        {
            "id": message_id,
            "status": status,
            "errorCode": code or None,
            "timestamp": (base + timedelta(seconds=s)).isoformat(),
        }
        for status, s, code in steps
    ]


def expected_state(receipts: list[dict]) -> tuple[machine.State, set[str]]:
    state, flags = machine.State(), set()
    for r in receipts:
        transition = machine.advance(
            state, outcome_for(r["status"], r["errorCode"] or ""), datetime.fromisoformat(r["timestamp"])
        )
        state = transition.state
        flags.add(transition.flag) if transition.flag else None
    return state, flags


@pytest.mark.parametrize("seed", [1, 2, 3])
def test_twenty_concurrent_requests_for_one_message_leave_exactly_the_prescribed_state(app: App, seed: int) -> None:
    message_id = f"conc-{seed}-{time.time_ns()}"
    registered = app.register(channel="sms", provider="generic", provider_message_id=message_id, to="+15551239999")
    receipts = conflicting_receipts(message_id)
    rng = random.Random(seed)
    # 20 requests: every receipt at least once, the rest duplicates, in a shuffled order.
    requests = receipts + [rng.choice(receipts) for _ in range(20 - len(receipts))]
    rng.shuffle(requests)
    bodies = [json.dumps(r).encode() for r in requests]
    gate = threading.Barrier(len(bodies))

    def send(body: bytes) -> httpx.Response:
        with httpx.Client(timeout=20) as http:
            gate.wait()
            return post_receipt(app.env, http, app.url, "generic", body)

    with ThreadPoolExecutor(len(bodies)) as pool:
        responses = list(pool.map(send, bodies))

    assert [r.status_code for r in responses] == [200] * 20
    assert sum(r.json()["accepted"] for r in responses) == len(receipts)
    assert sum(r.json()["duplicates"] for r in responses) == 20 - len(receipts)

    prescribed, flags = expected_state(receipts)
    # Any other order of the same receipts prescribes the same state (the machine is order-independent).
    assert expected_state(list(reversed(receipts))) == (prescribed, flags)

    def settled() -> dict | None:
        body = app.message(registered["id"])
        return body if len(body["events"]) == len(receipts) else None

    body = wait_until(settled, "all receipts on the timeline", interval=0.05)
    assert body["status"] == prescribed.status == "expired"
    assert datetime.fromisoformat(body["status_at"].replace("Z", "+00:00")) == prescribed.status_at
    assert (body["failure_category"], body["retryable"]) == (prescribed.failure_category, prescribed.retryable)
    assert body["needs_review"] is True
    assert {body["review_reason"]} == flags == {"conflicting_receipts"}
    assert (body["read_count"], body["click_count"]) == (1, 1)
    assert sorted(e["provider_code"] for e in body["events"]) == sorted(
        f"{r['status']}/{r['errorCode']}" if r["errorCode"] else r["status"] for r in receipts
    )
