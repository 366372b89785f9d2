"""The provider's limit holds across processes: three worker processes hammer the simulator during a 429 storm, and
the simulator counts what reached it. (Redis in the PostgreSQL + Redis mode, the SQLite file in the embedded one.)"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
import uuid
from pathlib import Path
from subprocess import PIPE

from simulator import SimulatorServer
from tests.apprunner import READY_TIMEOUT
from tests.receipts.conftest import api_requests, preload

ROOT = Path(__file__).resolve().parents[3]
PROVIDER_LIMIT = 60  # requests a minute, as the simulator enforces it (fixed 60 s windows per token)
HEADROOM = 0.2
BUDGET = 48  # PROVIDER_LIMIT * (1 - HEADROOM)
WORKERS = 3
BURST = 30  # more than any one worker could be allowed alone if each had its own bucket: 3 x 30 > 60


def run_workers(sim: SimulatorServer, tmp_path: Path, ids: list[str], seconds: float) -> list[dict]:
    env = {
        **os.environ,
        "SECRET_KEY": "storm-test",
        "VAR_DIR": str(tmp_path / "var"),  # the embedded store: var/limits.sqlite3, shared by the workers
        "GENESYS_CLOUD_BASE_URL": sim.url,
        "GENESYS_CLOUD_LOGIN_URL": sim.url,
        "GENESYS_CLOUD_CLIENT_ID": f"storm-{uuid.uuid4().hex[:8]}",
        "GENESYS_CLOUD_CLIENT_SECRET": "storm-secret",
        "GENESYS_RATE_LIMIT_PER_MINUTE": str(PROVIDER_LIMIT),
        "GENESYS_RATE_HEADROOM": str(HEADROOM),
        "GENESYS_RATE_BURST": str(BURST),
        "GENESYS_MAX_WAIT": "1",
        "CIRCUIT_FAILURE_THRESHOLD": "1000",
        "LOG_LEVEL": "ERROR",
    }
    env.pop("DJANGO_SETTINGS_MODULE", None)
    if "DATABASE_URL" not in os.environ:
        env["DATABASE_URL"] = f"sqlite:///{tmp_path / 'unused.sqlite3'}"
    start_at = f"{time.time() + 3:.3f}"
    argv = [
        sys.executable,
        "-m",
        "tests.receipts.providers.storm_worker",
        "--seconds",
        str(seconds),
        "--ids",
        ",".join(ids),
    ]
    procs = [
        subprocess.Popen([*argv, "--start-at", start_at], cwd=ROOT, env=env, stdout=PIPE, stderr=PIPE, text=True)
        for _ in range(WORKERS)
    ]
    results = []
    for proc in procs:
        out, err = proc.communicate(timeout=READY_TIMEOUT)
        assert proc.returncode == 0, err[-3000:]
        results.append(json.loads(out))
    return results


def test_a_429_storm_never_pushes_three_workers_past_the_shared_budget(sim: SimulatorServer, tmp_path: Path) -> None:
    ids = [m["id"] for m in preload(sim, count=20)]
    sim.configure(rate_limit_per_minute=PROVIDER_LIMIT, rate_429=0.3, retry_after=1)
    since = time.time()

    results = run_workers(sim, tmp_path, ids, seconds=6.0)

    reached = api_requests(sim, since)
    storm = sum(1 for r in reached if r["status"] == 429)
    answered = sum(r["outcomes"].get("ok", 0) for r in results)
    wanted = sum(r["calls"] for r in results)
    print(f"reached {len(reached)} (429 storm {storm}), answered {answered}, wanted {wanted}, budget {BUDGET}")
    # Everything that reached the provider, 429s included, stayed within the budget of one window (the run is
    # shorter than the simulator's 60 s window), and the provider's own limit never refused anything.
    assert len(reached) <= BUDGET
    assert sim.stats()["faults"].get("rate_limited", 0) == 0
    # It was a storm, the workers wanted far more than the budget, and they still got answers.
    assert storm > 0
    assert wanted > BUDGET
    assert answered > 0
    assert sum(r["outcomes"].get("ratelimit.budget", 0) for r in results) > 0
    assert sim.stats()["tokens_issued"] == 1  # one shared token
