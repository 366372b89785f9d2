"""Shared pieces for the polling tests: a simulator per test, a limits store per test, a client wired to both."""

from __future__ import annotations

import os
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from receipts.providers.genesys_cloud.client import Config, GenesysCloudClient
from receipts.providers.limits import CircuitPolicy, Limits, RateLimit, RedisStore, SqliteStore, Store
from simulator import SimulatorServer

REDIS_URL = os.environ.get("REDIS_URL", "")


class FakeClock:
    """A clock the tests move by hand (the stores take it instead of Redis TIME or time.time)."""

    def __init__(self, start: float = 1_800_000_000.0) -> None:
        self.now = start

    def __call__(self) -> float:
        return self.now

    def advance(self, seconds: float) -> None:
        self.now += seconds


def make_store(kind: str, tmp_path: Path, clock: FakeClock | None = None) -> Store:
    if kind == "redis":
        if not REDIS_URL:
            pytest.skip("REDIS_URL is not set: the Redis store runs in the PostgreSQL + Redis mode")
        return RedisStore(REDIS_URL, clock=clock)
    return SqliteStore(tmp_path / f"limits-{uuid.uuid4().hex[:6]}.sqlite3", clock=clock)


@pytest.fixture(params=["sqlite", "redis"])
def store_kind(request: pytest.FixtureRequest) -> str:
    return request.param


@pytest.fixture
def store(tmp_path: Path) -> Store:
    """The store the deployment would use: Redis when REDIS_URL is set, else the embedded SQLite file."""
    return make_store("redis" if REDIS_URL else "sqlite", tmp_path)


@pytest.fixture
def sim() -> Iterator[SimulatorServer]:
    with SimulatorServer(seed=7, push=False, analytics_job_delay=0.05) as server:
        yield server


def unique_name() -> str:
    return f"test-{uuid.uuid4().hex[:10]}"


def make_limits(
    store: Store,
    *,
    limit: int = 300,
    headroom: float = 0.2,
    burst: int = 10,
    threshold: int = 5,
    cooldown: float = 30.0,
    name: str = "",
) -> Limits:
    return Limits(
        name or unique_name(),
        RateLimit(limit=limit, window=60.0, headroom=headroom, burst=burst),
        CircuitPolicy(threshold=threshold, cooldown=cooldown, probe_timeout=10.0),
        store,
    )


def make_client(
    sim: SimulatorServer, limits: Limits, *, client_id: str = "", max_wait: float = 30.0
) -> GenesysCloudClient:
    config = Config(
        api_url=sim.url,
        login_url=sim.url,
        client_id=client_id or unique_name(),
        client_secret="s3cret",
        timeout=5.0,
        max_wait=max_wait,
    )
    return GenesysCloudClient(config, limits)


@pytest.fixture
def genesys(sim: SimulatorServer, store: Store) -> Iterator[GenesysCloudClient]:
    client = make_client(sim, make_limits(store, burst=200))
    yield client
    client.close()


def preload(sim: SimulatorServer, **body: Any) -> list[dict[str, Any]]:
    """Messages the simulator knows about, settled ``age_seconds`` ago (default 60 s)."""
    body = {"provider": "genesys_cloud", "channel": "sms", "age_seconds": 60, **body}
    answer = httpx.post(f"{sim.url}/_sim/messages", json=body, timeout=120)
    answer.raise_for_status()
    return answer.json()["messages"]


def api_requests(sim: SimulatorServer, since: float = 0.0) -> list[dict[str, Any]]:
    """Every Genesys Cloud API request the simulator saw (OAuth and control endpoints left out)."""
    log = httpx.get(f"{sim.url}/_sim/requests", params={"since": since}, timeout=30).json()
    rows = log["requests"] if isinstance(log, dict) else log
    return [r for r in rows if r["endpoint"].startswith("/api/v2/")]
