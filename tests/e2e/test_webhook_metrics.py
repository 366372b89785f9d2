"""Webhook answers by provider and status on /metrics, summed over every web worker (prometheus-client's
multiprocess mode, as `make run` sets it up)."""

from __future__ import annotations

import json
import re
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import httpx
import pytest

from tests.apprunner import AppEnv
from tests.e2e.conftest import post_receipt

pytestmark = pytest.mark.e2e


@pytest.fixture
def env(tmp_path: Path) -> Iterator[AppEnv]:
    env = AppEnv(tmp_path).create()
    try:
        yield env
    finally:
        env.destroy()


def answers(url: str, provider: str, code: str) -> float:
    text = httpx.get(f"{url}/metrics", timeout=10).text
    found = re.search(rf'^receipts_webhook_answers_total{{code="{code}",provider="{provider}"}} (\S+)$', text, re.M)
    return float(found.group(1)) if found else 0.0


def test_every_worker_counts_and_metrics_sum_them(env: AppEnv, tmp_path: Path) -> None:
    counts = tmp_path / "prometheus"
    counts.mkdir()
    url = env.start_web(workers=3, PROMETHEUS_MULTIPROC_DIR=str(counts), METRICS_TOKEN="")

    def send(chunk: range) -> list[int]:
        # Clients at once: the front opens several connections to granian, which its workers share.
        with httpx.Client(timeout=10) as http:
            return [
                post_receipt(
                    env, http, url, "generic", json.dumps({"id": f"m-{i}", "status": "sent"}).encode()
                ).status_code
                for i in chunk
            ]

    with ThreadPoolExecutor(6) as pool:
        codes = [code for codes in pool.map(send, [range(k, 60, 6) for k in range(6)]) for code in codes]
    assert codes == [200] * 60
    with httpx.Client(timeout=10) as http:
        for _ in range(4):
            assert http.post(f"{url}/webhooks/generic/", content=b"{}").status_code == 401

    assert answers(url, "generic", "200") == 60
    assert answers(url, "generic", "401") == 4
    # Counted in the multiprocess files, one per worker that answered (which worker takes a connection is the
    # kernel's choice), and summed by /metrics.
    assert list(counts.glob("counter_*.db"))
