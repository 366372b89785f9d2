"""One granian worker killed under load costs only the requests it had in flight: granian starts it again
(--respawn-failed-workers, as `make run` runs it) while the other worker and Caddy keep answering. Without it
granian exited with the worker and the web answered 503 until supervisord had started it all again."""

from __future__ import annotations

import os
import signal
import threading
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from tests.apprunner import AppEnv, wait_until
from tests.config.test_make_run import descendants

pytestmark = pytest.mark.e2e

CLIENTS = 4


@pytest.fixture
def app_env(tmp_path: Path) -> Iterator[AppEnv]:
    env = AppEnv(tmp_path).create()
    try:
        yield env
    finally:
        env.stop_all()
        env.destroy()


def granian_workers(env: AppEnv) -> set[int]:
    main = next(proc for proc, _ in env.processes if "granian" in " ".join(map(str, proc.args)))
    return descendants(main.pid)


def test_a_killed_worker_is_started_again_and_only_its_requests_fail(app_env: AppEnv) -> None:
    url = app_env.start_web(workers=2, threads=2)
    before = granian_workers(app_env)
    assert len(before) == 2, before
    statuses: list[int] = []
    stop = threading.Event()

    def client() -> None:
        with httpx.Client(timeout=10) as http:
            while not stop.is_set():
                try:
                    statuses.append(http.get(f"{url}/healthz").status_code)
                except httpx.HTTPError:
                    statuses.append(0)

    threads = [threading.Thread(target=client) for _ in range(CLIENTS)]
    for thread in threads:
        thread.start()
    try:
        wait_until(lambda: len(statuses) > 50, "the load")
        os.kill(sorted(before)[0], signal.SIGKILL)
        killed_at = len(statuses)
        wait_until(lambda: len(granian_workers(app_env) - before) == 1, "the worker, started again")
        wait_until(lambda: len(statuses) > killed_at + 200, "more load after the respawn")
    finally:
        stop.set()
        for thread in threads:
            thread.join(timeout=15)

    failed = [status for status in statuses if status != 200]
    # at most the requests the killed worker had in flight: one per client
    assert len(failed) <= CLIENTS, (len(failed), failed[:20])
    assert statuses[-50:] == [200] * 50
