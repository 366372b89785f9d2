"""The suppression list, retries and escalations in the app as deployed: granian, a Celery worker and beat as
real processes, a provider's send endpoint on 127.0.0.1, everything over HTTP.

It checks the wiring the unit tests cannot: beat schedules the policy tasks, the worker imports them
(CELERY_IMPORTS) and finds its sender through the SENDERS setting.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from dataclasses import dataclass

import httpx
import pytest

from tests.apprunner import AppEnv, wait_until
from tests.e2e.conftest import post_receipt
from tests.senders import LocalProvider

pytestmark = pytest.mark.e2e


@dataclass
class App:
    env: AppEnv
    url: str
    api: httpx.Client
    provider: LocalProvider

    def register(self, **fields: object) -> dict:
        response = self.api.post(f"{self.url}/api/v1/messages/", json=fields)
        assert response.status_code == 201, response.text
        return response.json()


@pytest.fixture(scope="module")
def app(app_env: AppEnv) -> Iterator[App]:
    provider = LocalProvider()
    settings = {
        "SENDERS": "genesys_sms=tests.senders.HttpSender",
        "E2E_SENDER_URL": provider.url,
        "RETRY_DELAY": "1",
        "RETRY_SWEEP_INTERVAL": "1",
        "FALLBACK_AFTER": "2",
        "ESCALATION_SWEEP_INTERVAL": "1",
    }
    url = app_env.start_web(workers=1, threads=4, **settings)
    app_env.start_worker(concurrency=2, **settings)
    app_env.start_beat(**settings)
    token = app_env.api_token()
    try:
        with httpx.Client(headers={"Authorization": f"Token {token}"}, timeout=10) as api:
            yield App(app_env, url, api, provider)
    finally:
        provider.close()


def eventually(app: App, predicate: object, what: str) -> object:
    try:
        return wait_until(predicate, what, interval=0.2)  # type: ignore[arg-type]
    except TimeoutError:
        print(app.env.logs())
        raise


def test_an_expired_sms_is_sent_again_by_the_worker_and_linked_to_the_original(app: App) -> None:
    original = app.register(
        channel="sms",
        provider="genesys_sms",
        provider_message_id="e2e-retry-1",
        to="+15557650001",
        content={"text": "Your code is 4242"},
    )
    with httpx.Client(timeout=10) as http:
        body = b"type=receipt&message_id=e2e-retry-1&message_state=3&result_code=0"
        assert post_receipt(app.env, http, app.url, "genesys_sms", body).status_code == 200

    eventually(app, lambda: app.provider.requests, "the retry reaching the provider")
    assert app.provider.requests == [{"to": "+15557650001", "text": "Your code is 4242", "replaces": original["id"]}]

    def replacement() -> list:
        return app.env.sql("SELECT replaces_id FROM receipts_message WHERE provider_message_id = 'new-1'")

    assert eventually(app, replacement, "the new message recorded") == [(original["id"],)]


def test_a_critical_message_not_delivered_in_time_raises_an_escalation(app: App) -> None:
    message = app.register(
        channel="sms", provider="generic", provider_message_id="e2e-critical-1", to="+15557650002", priority="critical"
    )

    def escalated() -> list:
        return app.env.sql(f"SELECT status FROM receipts_escalation WHERE message_id = {int(message['id'])}")  # noqa: S608

    assert eventually(app, escalated, "the escalation") == [("pending",)]


def test_an_sms_stop_is_on_the_list_when_the_check_endpoint_is_asked(app: App) -> None:
    stop = {"event": "MO", "from": "15557650003", "channel": "sms", "textMessage": "STOP", "tid": "e2e-stop-1"}
    with httpx.Client(timeout=10) as http:
        response = post_receipt(app.env, http, app.url, "webex_connect", json.dumps(stop).encode())
        assert response.status_code == 200

    def suppressed() -> bool:
        answer = app.api.post(
            f"{app.url}/api/v1/suppressions/check/", json={"channel": "sms", "addresses": ["(555) 765-0003"]}
        ).json()
        return answer["results"][0]["suppressed"]

    eventually(app, suppressed, "the opt-out on the list")
