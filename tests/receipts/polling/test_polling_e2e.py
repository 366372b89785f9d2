"""Polling in the app as deployed: granian, a Celery worker and Celery beat as real processes, the simulator as
Genesys Cloud. Receipts that are never pushed still reach their messages, by the high-priority tier and by the
bulk reconciliation, and ``/metrics`` shows the polls the worker made."""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from simulator import SimulatorServer
from tests.apprunner import AppEnv, wait_until
from tests.receipts.conftest import preload

pytestmark = pytest.mark.e2e


@pytest.fixture(scope="module")
def simulator() -> Iterator[SimulatorServer]:
    with SimulatorServer(seed=11, push=False, analytics_job_delay=0.2) as server:
        yield server


@pytest.fixture(scope="module")
def app(tmp_path_factory: pytest.TempPathFactory, simulator: SimulatorServer) -> Iterator[tuple[AppEnv, str, str]]:
    env = AppEnv(Path(tmp_path_factory.mktemp("polling")), name="polling").create()
    genesys = {
        "GENESYS_CLOUD_BASE_URL": simulator.url,
        "GENESYS_CLOUD_LOGIN_URL": simulator.url,
        "GENESYS_CLOUD_CLIENT_ID": f"e2e-{uuid.uuid4().hex[:8]}",
        "GENESYS_CLOUD_CLIENT_SECRET": "e2e-secret",
        "POLL_FIRST_DELAY": "1",
        "POLL_TICK_SECONDS": "1",
        "BULK_RECONCILE_INTERVAL": "3",
        "POLL_ANALYTICS_JOB_POLL_INTERVAL": "0.2",
    }
    env.base_env.update(genesys)
    try:
        url = env.start_web(workers=1, threads=4)
        env.start_worker(concurrency=2)
        env.start_beat()
        yield env, url, env.api_token()
    finally:
        env.destroy()


def register(url: str, token: str, sim_message: dict, priority: str) -> int:
    response = httpx.post(
        f"{url}/api/v1/messages/",
        headers={"Authorization": f"Token {token}"},
        json={
            "channel": "sms",
            "provider": "genesys_cloud",
            "provider_message_id": sim_message["id"],
            "conversation_id": sim_message["conversationId"],
            "to": sim_message["to"],
            "priority": priority,
        },
        timeout=10,
    )
    assert response.status_code == 201, response.text
    return response.json()["id"]


def wait_for(env: AppEnv, url: str, token: str, message_id: int, status: str) -> dict:
    def reached() -> dict | None:
        body = httpx.get(f"{url}/api/v1/messages/{message_id}/", headers={"Authorization": f"Token {token}"}).json()
        return body if body["status"] == status else None

    try:
        return wait_until(reached, f"message {message_id} {status}", interval=0.2)  # type: ignore[return-value]
    except TimeoutError:
        print(env.logs())
        raise


def test_a_high_priority_message_with_no_webhook_is_found_by_polling(
    app: tuple[AppEnv, str, str], simulator: SimulatorServer
) -> None:
    env, url, token = app
    sim_message = preload(simulator, count=1, outcome="failed", reason="InvalidDestination")[0]

    message_id = register(url, token, sim_message, "critical")

    body = wait_for(env, url, token, message_id, "failed")
    assert body["failure_category"] == "invalid_destination"
    assert {event["source"] for event in body["events"]} == {"poll"}


def test_a_bulk_message_is_reconciled_by_the_analytics_job(
    app: tuple[AppEnv, str, str], simulator: SimulatorServer
) -> None:
    env, url, token = app
    sim_message = preload(simulator, count=1, outcome="delivered")[0]

    message_id = register(url, token, sim_message, "bulk")

    body = wait_for(env, url, token, message_id, "delivered")
    assert {event["source"] for event in body["events"]} == {"poll"}
    metrics = httpx.get(f"{url}/metrics").text
    assert 'receipts_provider_circuit_state{provider="genesys_cloud",state="closed"} 1.0' in metrics
    assert 'receipts_reconcile_runs_total{provider="genesys_cloud"}' in metrics
