"""The real app as a user runs it: Caddy and granian (as `make run` starts them), a Celery worker and beat.

Used by the end-to-end tests and the benchmarks. Each ``AppEnv`` is an isolated deployment with its own
database (a fresh SQLite file, or a fresh PostgreSQL database when ``DATABASE_URL`` points at PostgreSQL), its
own broker queue (the filesystem broker in its own folder, or a queue of its own on the Redis that
``CELERY_BROKER_URL``/``REDIS_URL`` names), and its own ports.
"""

from __future__ import annotations

import contextlib
import os
import signal
import socket
import subprocess
import sys
import time
import uuid
from collections.abc import Callable
from pathlib import Path
from typing import IO
from urllib.parse import urlsplit, urlunsplit

import httpx

ROOT = Path(__file__).resolve().parent.parent
BIN = Path(sys.executable).parent
BASIC_USER, BASIC_PASSWORD = "e2e", "e2e-password"

# The one ceiling on every wait of the tests and benches for something to become ready (a server answering, a
# log line, a row): they poll often, so a quiet machine goes on at once, and give up only after this long. On a
# starved machine (load 50-70 on 2 cores) granian took 33-155 s to answer its first request.
READY_TIMEOUT = float(os.environ.get("TEST_READY_TIMEOUT") or 300)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def wants_postgres() -> bool:
    return os.environ.get("DATABASE_URL", "").startswith(("postgres://", "postgresql://"))


def broker_from_environment() -> str:
    return os.environ.get("CELERY_BROKER_URL") or os.environ.get("REDIS_URL") or "filesystem://localhost/"


class AppEnv:
    def __init__(self, workdir: Path, name: str = "e2e") -> None:
        self.workdir = workdir
        self.name = f"{name}_{uuid.uuid4().hex[:8]}"
        self.processes: list[tuple[subprocess.Popen, IO]] = []
        self.base_env = {
            **os.environ,
            "VAR_DIR": str(workdir / "var"),
            "SECRET_KEY": "e2e-not-secret",
            "DEBUG": "false",
            "WEBHOOK_BASIC_AUTH": f"{BASIC_USER}:{BASIC_PASSWORD}",
            "WEBHOOK_SECRET_GENESYS_CLOUD": "e2e-gc",
            "WEBHOOK_SECRET_GENESYS_SMS": "e2e-sms",
            "WEBHOOK_SECRET_WEBEX_CONNECT": "e2e-webex",
            "WEBHOOK_SECRET_GENERIC": "whsec_ZTJlLWdlbmVyaWMta2V5",
            "CELERY_QUEUE": self.name,
            "SWEEP_INTERVAL": "1",
            "LOG_LEVEL": os.environ.get("E2E_LOG_LEVEL", "WARNING"),
            "PYTHONUNBUFFERED": "1",
        }
        self.base_env.pop("DJANGO_SETTINGS_MODULE", None)
        if wants_postgres():
            parts = urlsplit(os.environ["DATABASE_URL"])
            # Create and drop through the maintenance database; the named one need not exist.
            self.admin_url = urlunsplit(parts._replace(path="/postgres"))
            self.database_url = urlunsplit(parts._replace(path=f"/{self.name}"))
        else:
            self.admin_url = ""
            self.database_url = f"sqlite:///{workdir / 'var' / 'app.sqlite3'}"
        self.base_env["DATABASE_URL"] = self.database_url
        self.base_env["CELERY_BROKER_URL"] = broker_from_environment()

    # --- lifecycle -------------------------------------------------------------------------------------

    def create(self) -> AppEnv:
        (self.workdir / "var").mkdir(parents=True, exist_ok=True)
        if self.admin_url:
            self._postgres(f'CREATE DATABASE "{self.name}"')
        self.manage("migrate", "--noinput")
        return self

    def destroy(self) -> None:
        self.stop_all()
        if self.admin_url:
            self._postgres(f'DROP DATABASE IF EXISTS "{self.name}" WITH (FORCE)')

    def _postgres(self, sql: str) -> None:
        import psycopg

        with psycopg.connect(self.admin_url, autocommit=True) as conn:
            conn.execute(sql)

    def env(self, **overrides: str) -> dict[str, str]:
        return {**self.base_env, **overrides}

    def manage(self, *args: str, **env: str) -> subprocess.CompletedProcess:
        return subprocess.run(
            [sys.executable, "manage.py", *args],
            cwd=ROOT,
            env=self.env(**env),
            capture_output=True,
            text=True,
            check=True,
            timeout=READY_TIMEOUT,
        )

    def _spawn(self, label: str, argv: list[str], **env: str) -> subprocess.Popen:
        log = open(self.workdir / f"{label}.log", "a")  # noqa: SIM115 - closed in stop()
        proc = subprocess.Popen(
            argv, cwd=ROOT, env=self.env(**env), stdout=log, stderr=subprocess.STDOUT, start_new_session=True
        )
        self.processes.append((proc, log))
        return proc

    def start_web(
        self,
        workers: int = 2,
        threads: int = 4,
        port: int | None = None,
        server: str = "granian",
        front: bool = True,
        app: str = "config.wsgi:application",
        **env: str,
    ) -> str:
        """The web server; by default as `make run` deploys it: Caddy (config/Caddyfile) on ``port`` and granian
        behind it on a Unix socket. ``front=False`` puts granian (or gunicorn) on the port itself. ``env`` reaches
        both (WEB_READ_TIMEOUT, WEB_MAX_BODY and the other settings of the Caddyfile)."""
        port = port or free_port()
        bind = ["--host", "127.0.0.1", "--port", str(port)]
        if front and server == "granian":
            socket_path = self.workdir / f"web-{port}.sock"
            bind = ["--uds", str(socket_path)]
            caddy_argv = [str(BIN / "caddy"), "run", "--config", "config/Caddyfile", "--adapter", "caddyfile"]
            caddy_env = {"SITE_ADDRESS": f"http://:{port}", "WEB_HOST": "127.0.0.1", "WEB_SOCKET": str(socket_path)}
            self._spawn(f"caddy-{port}", caddy_argv, **{**caddy_env, **env})
        if server == "granian":
            argv = [str(BIN / "granian"), "--interface", "wsgi", *bind]
            argv += ["--workers", str(workers), "--blocking-threads", str(threads), "--backlog", "2048"]
            argv += ["--no-ws", "--http", "1", "--respawn-failed-workers", "--respawn-interval", "1"]
            argv += [app]
        else:
            argv = [str(BIN / "gunicorn"), "config.wsgi", "--bind", f"127.0.0.1:{port}", "--worker-class", "gthread"]
            argv += ["--workers", str(workers), "--threads", str(threads), "--backlog", "2048"]
        self._spawn(f"web-{port}", argv, **env)
        url = f"http://127.0.0.1:{port}"
        wait_until(lambda: httpx.get(f"{url}/healthz", timeout=1).status_code == 200, f"web on {port}")
        return url

    def start_worker(self, concurrency: int = 2, **env: str) -> subprocess.Popen:
        argv = [str(BIN / "celery"), "-A", "config", "worker", "--concurrency", str(concurrency)]
        argv += ["--without-gossip", "--without-mingle", "--without-heartbeat", "--loglevel", "WARNING"]
        return self._spawn("worker", argv, **env)

    def start_beat(self, loglevel: str = "WARNING", **env: str) -> subprocess.Popen:
        schedule = self.workdir / f"beat-{uuid.uuid4().hex[:6]}"
        argv = [str(BIN / "celery"), "-A", "config", "beat", "--schedule", str(schedule), "--loglevel", loglevel]
        return self._spawn("beat", argv, **env)

    def stop(self, proc: subprocess.Popen, sig: int = signal.SIGTERM) -> None:
        if proc.poll() is None:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(proc.pid, sig)
            try:
                proc.wait(timeout=READY_TIMEOUT)
            except subprocess.TimeoutExpired:
                os.killpg(proc.pid, signal.SIGKILL)
                proc.wait(timeout=READY_TIMEOUT)
        for p, log in self.processes:
            if p is proc:
                log.close()
        self.processes = [(p, log) for p, log in self.processes if p is not proc]

    def kill(self, proc: subprocess.Popen) -> None:
        """SIGKILL the process and all its children: a worker dying mid-batch."""
        self.stop(proc, signal.SIGKILL)

    def stop_all(self) -> None:
        for proc, _ in list(self.processes):
            self.stop(proc)

    def logs(self) -> str:
        return "\n".join(f"== {p.name}\n{p.read_text()[-4000:]}" for p in sorted(self.workdir.glob("*.log")))

    def sql(self, query: str) -> list[tuple]:
        """Read the deployment's database directly (for checks the API does not expose, such as the inbox)."""
        if self.admin_url:
            import psycopg

            with psycopg.connect(self.database_url) as conn:
                return conn.execute(query).fetchall()
        import sqlite3

        with contextlib.closing(
            sqlite3.connect(self.database_url.removeprefix("sqlite:///"), timeout=READY_TIMEOUT)
        ) as conn:
            return conn.execute(query).fetchall()

    def inbox_states(self) -> dict[str, int]:
        return dict(self.sql("SELECT state, count(*) FROM receipts_receiptevent GROUP BY state"))

    def api_token(self, name: str = "e2e") -> str:
        return self.manage("create_api_client", name).stdout.strip().splitlines()[-1]


def wait_until(
    predicate: Callable[[], object], what: str, interval: float = 0.1, timeout: float | None = None
) -> object:
    """Poll ``predicate`` every ``interval`` until it returns something true, and return that; give up after
    ``timeout`` (READY_TIMEOUT, TEST_READY_TIMEOUT in the environment, unless a test sets its own)."""
    timeout = READY_TIMEOUT if timeout is None else timeout
    deadline = time.monotonic() + timeout
    last_error: Exception | None = None
    while time.monotonic() < deadline:
        try:
            result = predicate()
            if result:
                return result
        except Exception as exc:  # a server still starting answers with connection errors
            last_error = exc
        time.sleep(interval)
    raise TimeoutError(f"{what} not ready after {timeout}s (last error: {last_error!r})")
