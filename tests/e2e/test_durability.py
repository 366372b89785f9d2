"""Nothing is lost: not with the broker down, not with a worker killed in the middle of a batch."""

from __future__ import annotations

import json
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import httpx
import pytest

from tests.apprunner import AppEnv, free_port, wait_until
from tests.e2e.conftest import post_receipt

pytestmark = pytest.mark.e2e


@pytest.fixture
def env(tmp_path: Path) -> Iterator[AppEnv]:
    env = AppEnv(tmp_path).create()
    try:
        yield env
    finally:
        env.destroy()


def register_many(env: AppEnv, url: str, ids: list[str]) -> None:
    token = env.api_token()

    def register(message_id: str) -> int:
        with httpx.Client(headers={"Authorization": f"Token {token}"}, timeout=20) as api:
            body = {"channel": "sms", "provider": "generic", "provider_message_id": message_id, "to": "+15557654321"}
            return api.post(f"{url}/api/v1/messages/", json=body).status_code

    with ThreadPoolExecutor(8) as pool:
        assert set(pool.map(register, ids)) == {201}


def post_all(env: AppEnv, url: str, bodies: list[bytes]) -> list[httpx.Response]:
    def send(chunk: list[bytes]) -> list[httpx.Response]:
        with httpx.Client(timeout=20) as http:
            return [post_receipt(env, http, url, "generic", body) for body in chunk]

    chunks = [bodies[i::8] for i in range(8)]
    with ThreadPoolExecutor(8) as pool:
        return [r for rs in pool.map(send, chunks) for r in rs]


def lifecycle(message_id: str) -> list[bytes]:
    steps = [("sent", "10:00:01"), ("delivered", "10:00:05"), ("read", "10:00:09")]
    return [json.dumps({"id": message_id, "status": s, "timestamp": f"2026-11-20T{t}Z"}).encode() for s, t in steps]


def assert_everything_applied_once(env: AppEnv, ids: list[str], per_message: int) -> None:
    assert env.inbox_states() == {"processed": len(ids) * per_message}
    duplicates = env.sql(
        "SELECT message_id, receipt_key FROM receipts_messageevent GROUP BY message_id, receipt_key HAVING count(*) > 1"
    )
    assert duplicates == []
    counts = env.sql("SELECT status, read_count, count(*) FROM receipts_message GROUP BY status, read_count")
    assert counts == [("delivered", 1, len(ids))]
    assert env.sql("SELECT count(*) FROM receipts_messageevent") == [(len(ids) * per_message,)]


def test_with_the_broker_down_webhooks_answer_200_and_receipts_are_processed_once_it_is_back(env: AppEnv) -> None:
    dead_broker = f"redis://127.0.0.1:{free_port()}/0"  # nothing listens there
    url = env.start_web(CELERY_BROKER_URL=dead_broker)
    ids = [f"outage-{i}" for i in range(20)]
    register_many(env, url, ids)

    responses = post_all(env, url, [b for i in ids for b in lifecycle(i)])

    assert [r.status_code for r in responses] == [200] * 60
    assert env.inbox_states() == {"received": 60}
    ready = httpx.get(f"{url}/readyz")
    assert ready.status_code == 503
    assert ready.json()["checks"]["broker"].startswith("error")

    # The broker is back: a worker and beat on a reachable broker. No kick from the web ever reached it, so
    # only the periodic sweeper can find these rows.
    env.start_worker()
    env.start_beat()
    wait_until(lambda: env.inbox_states() == {"processed": 60}, "inbox drained by the sweeper", interval=0.2)
    assert_everything_applied_once(env, ids, per_message=3)


def test_a_worker_killed_mid_batch_loses_nothing_and_duplicates_nothing(env: AppEnv) -> None:
    url = env.start_web()
    ids = [f"kill-{i}" for i in range(300)]
    register_many(env, url, ids)
    responses = post_all(env, url, [b for i in ids for b in lifecycle(i)])
    assert {r.status_code for r in responses} == {200}
    # Each receipt is new: every answer must say it was stored, not only that the request went well.
    assert [r.json() for r in responses] == [{"accepted": 1, "duplicates": 0}] * len(responses)
    assert env.inbox_states() == {"received": len(ids) * 3}
    total = len(ids) * 3
    # Small batches, so the worker is surely between commits when it dies.
    small = {"INBOX_BATCH_SIZE": "20"}

    # Beat's sweeper drains what no kick reaches: a drain task lost with the worker that held it (the filesystem
    # broker forgets a task once taken; Redis gives it back only after its visibility timeout). The kicks ask for
    # one drain at a time, so without the sweeper nothing would wake the next worker.
    env.start_beat()
    kills = 0
    for _ in range(3):
        before = env.inbox_states().get("processed", 0)
        worker = env.start_worker(concurrency=1, **small)
        # Kill as soon as a batch has committed: the worker is then in the middle of the next one.
        wait_until(lambda b=before: env.inbox_states().get("processed", 0) > b, "worker making progress", 0.02)
        if env.inbox_states().get("processed", 0) >= total:
            break
        env.kill(worker)  # SIGKILL to the worker and its pool: no cleanup, no ack
        kills += 1
        time.sleep(0.2)
    assert kills >= 1, "the worker finished before it could be killed; raise the load"
    assert env.inbox_states().get("processed", 0) < total

    env.start_worker(**small)
    wait_until(lambda: env.inbox_states() == {"processed": total}, "inbox drained after the kills", interval=0.2)
    assert_everything_applied_once(env, ids, per_message=3)
