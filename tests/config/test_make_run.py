"""`make run`'s processes under supervisord, started with the Makefile's own command line: the exported environment
is what the processes run with; a worker that crashes is started again while the web keeps answering; Ctrl-C
stops every process cleanly, with exit status 0 and none left behind."""

from __future__ import annotations

import os
import re
import shlex
import signal
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from tests.apprunner import BIN, READY_TIMEOUT, ROOT, AppEnv, free_port, wait_until
from tests.e2e.conftest import basic_auth

pytestmark = pytest.mark.e2e


def make_run_command() -> list[str]:
    """The last command of the Makefile's `run` recipe, with its variables as make would expand them."""
    recipe = re.search(r"^run: .*?\n((?:\t.*\n)+)", (ROOT / "Makefile").read_text(), re.MULTILINE)
    assert recipe, "the Makefile has a run target"
    lines = recipe.group(1).replace("\\\n", " ").strip().splitlines()
    command = lines[-1].replace("$(BIN)", str(BIN)).replace("$(CURDIR)", str(ROOT)).replace("$$", "$")
    words = shlex.split(command)
    return [word for word in words if "=" not in word.split("/")[0]]


def descendants(pid: int) -> set[int]:
    parents: dict[int, int] = {}
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            fields = stat.read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        parents[int(stat.parent.name)] = int(fields[1])
    found, frontier = set(), {pid}
    while frontier:
        frontier = {child for child, parent in parents.items() if parent in frontier} - found
        found |= frontier
    return found


def program_pid(log: Path, name: str, after: int = 0) -> int:
    pids = [int(pid) for pid in re.findall(rf"spawned: '{name}' with pid (\d+)", log.read_text())]
    return pids[-1] if len(pids) > after else 0


def start_make_run(env: AppEnv, log: Path, **settings: str) -> subprocess.Popen:
    command = make_run_command()
    assert command[-2:] == ["-c", "config/supervisord/run.conf"], command
    process_env = env.env(PATH=f"{BIN}:{os.environ['PATH']}", **settings)
    with log.open("w") as out:
        return subprocess.Popen(
            command, cwd=ROOT, env=process_env, stdout=out, stderr=subprocess.STDOUT, start_new_session=True
        )


def kill_everything(proc: subprocess.Popen) -> None:
    if proc.poll() is None:
        for pid in descendants(proc.pid):
            os.kill(pid, signal.SIGKILL)
        proc.kill()
        proc.wait(timeout=READY_TIMEOUT)


@pytest.fixture
def supervised(tmp_path: Path) -> Iterator[tuple[AppEnv, subprocess.Popen, str, Path]]:
    env = AppEnv(tmp_path).create()
    port = free_port()
    log = tmp_path / "supervisord.log"
    proc = start_make_run(
        env,
        log,
        WEB_PORT=str(port),
        WEB_WORKERS="1",
        LOG_LEVEL="INFO",
        SUPERVISOR_PIDFILE=str(tmp_path / "supervisord.pid"),
    )
    url = f"http://127.0.0.1:{port}"
    try:
        wait_until(lambda: httpx.get(f"{url}/healthz", timeout=1).status_code == 200, "make run's web")
        yield env, proc, url, log
    finally:
        kill_everything(proc)
        env.destroy()


def test_a_crashed_worker_is_started_again_and_ctrl_c_stops_everything_cleanly(
    supervised: tuple[AppEnv, subprocess.Popen, str, Path],
) -> None:
    env, supervisor, url, log = supervised
    wait_until(lambda: program_pid(log, "worker"), "the worker")
    worker = program_pid(log, "worker")

    os.killpg(worker, signal.SIGKILL)  # the worker and its pool, as an OOM kill would
    answers = []
    for _ in range(10):
        answers.append(httpx.get(f"{url}/healthz", timeout=READY_TIMEOUT).status_code)
        time.sleep(0.2)
    wait_until(lambda: program_pid(log, "worker", after=1), "the worker, started again")

    # The exported credentials are the ones the web checks, and the new worker processes what it accepts.
    body = b'{"id": "m-1", "status": "delivered", "timestamp": "2026-11-20T10:00:00Z"}'
    webhook = httpx.post(
        f"{url}/webhooks/generic/", content=body, headers={"Content-Type": "application/json"}, auth=basic_auth()
    )
    assert webhook.status_code == 200, webhook.text
    wait_until(lambda: env.inbox_states().get("orphan") or env.inbox_states().get("processed"), "processing")
    assert answers == [200] * 10, "the web stopped answering while the worker was down"

    processes = descendants(supervisor.pid)
    supervisor.send_signal(signal.SIGINT)  # what Ctrl-C delivers: the programs have process groups of their own
    # Idle, everything stops within the 10 s: the programs are stopped together (one supervisord group),
    # beat between two ticks, each worker as soon as it is asked (config/broker.py, config/celery.py). It took 41 s
    # when supervisord stopped them one after another and each idle worker took ~8 s.
    assert supervisor.wait(timeout=READY_TIMEOUT) == 0
    output = log.read_text()
    first_wait = re.search(r"waiting for (.*) to die", output.split("received SIGINT")[1])
    assert first_wait and set(first_wait.group(1).split(", ")) == {
        "web",
        "caddy",
        "worker",
        "worker-sync",
        "worker-send",
        "beat",
    }, "the programs were not all asked to stop at once"
    left = {pid for pid in processes if Path(f"/proc/{pid}").exists()}
    assert not left, f"processes left running after the stop: {left}"
    for name in ("web", "caddy", "worker", "worker-sync", "beat"):
        assert re.search(rf"stopped: {name} \(exit status 0\)", output), f"{name} did not stop cleanly:\n{output}"
    assert "SIGKILL" not in output.split("received SIGINT")[1], output


def test_access_lines_mask_addresses_in_paths(supervised: tuple[AppEnv, subprocess.Popen, str, Path]) -> None:
    """granian's access log printed raw paths (GET /api/v1/nope+15558675309/): its lines go through the same
    filter as Django's (config/granian-logging.json), so a number or an email in a path is masked there too."""
    _, _, url, log = supervised
    for path in ("/api/v1/nope+15558675309/", "/api/v1/contacts/ann.private%40example.com/"):
        assert httpx.get(f"{url}{path}", timeout=10).status_code in (401, 404)
    wait_until(lambda: "***09" in log.read_text(), "the access line")
    text = log.read_text()
    assert "5558675309" not in text and "ann.private" not in text
    assert re.search(r'"GET /api/v1/nope\+\*\*\*09/ HTTP/1\.1" 40[14]', text), text[-2000:]


def test_dot_env_settings_reach_every_process_and_the_environment_wins(tmp_path: Path) -> None:
    """WEB_PORT and the other process settings written in .env were ignored by `make run`'s processes (their command
    lines read the environment only): Caddy listened on 8000 while bootstrap_admin printed .env's port."""
    env = AppEnv(tmp_path).create()
    port = free_port()
    dot_env = tmp_path / ".env"
    dot_env.write_text(f"WEB_PORT={port}\nWEB_WORKERS=3\nWORKER_CONCURRENCY=1\nSYNC_WORKER_CONCURRENCY=1\n")
    for name in ("WEB_PORT", "WEB_WORKERS", "WORKER_CONCURRENCY", "SYNC_WORKER_CONCURRENCY", "SUPERVISOR_PIDFILE"):
        env.base_env.pop(name, None)
    log = tmp_path / "supervisord.log"
    # WEB_WORKERS is exported as well as written in .env: the exported one wins
    proc = start_make_run(env, log, ENV_FILE=str(dot_env), WEB_WORKERS="1")
    try:
        url = f"http://127.0.0.1:{port}"
        wait_until(lambda: httpx.get(f"{url}/healthz", timeout=1).status_code == 200, "caddy on .env's WEB_PORT")
        wait_until(lambda: program_pid(log, "worker") and program_pid(log, "worker-sync"), "the workers")
        web, worker, sync = (program_pid(log, name) for name in ("web", "worker", "worker-sync"))
        wait_until(lambda: len(descendants(worker)) == 1 and len(descendants(sync)) == 1, "the worker pools")
        assert len(descendants(web)) == 1, "granian started .env's 3 workers, not the exported 1"
        assert (tmp_path / "var" / "supervisord.pid").exists()  # VAR_DIR's default pid file
        proc.send_signal(signal.SIGINT)
        assert proc.wait(timeout=READY_TIMEOUT) == 0
    finally:
        kill_everything(proc)
        env.destroy()
