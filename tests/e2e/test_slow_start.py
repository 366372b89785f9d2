"""The tests wait for a server by readiness, up to TEST_READY_TIMEOUT (300 s), not a fixed 30 s: on a starved
machine granian took 33-155 s to answer, and the e2e tests and benches failed before reaching their subject."""

from __future__ import annotations

import time
from pathlib import Path

import httpx

from tests.apprunner import READY_TIMEOUT, AppEnv

SLOW_START = 32  # past the old ceiling of 30 s, and the test stays under 40 s


def test_a_web_server_slower_to_start_than_30_s_is_waited_for(tmp_path: Path) -> None:
    assert READY_TIMEOUT > SLOW_START
    env = AppEnv(tmp_path)
    try:
        started = time.monotonic()
        url = env.start_web(workers=1, app="tests.e2e.slow_to_start:application", SLOW_START_SECONDS=str(SLOW_START))
        waited = time.monotonic() - started

        assert httpx.get(f"{url}/healthz", timeout=READY_TIMEOUT).status_code == 200
        assert waited >= SLOW_START  # it was not ready before, and was waited for
    finally:
        env.destroy()
