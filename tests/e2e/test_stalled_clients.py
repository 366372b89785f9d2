"""Clients that announce a body and never send it cannot starve the web server. As `make run` deploys it, Caddy
reads each request whole before granian sees it (request_buffers), so a stalled body waits in Caddy, credentials
or not, and holds no app thread. granian on its own still answers a caller without credentials 401 before reading
its body, and refuses a chunked body with 411 (behind Caddy too: Caddy hands a chunked body on chunked)."""

from __future__ import annotations

import base64
import select
import socket
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from tests.apprunner import AppEnv
from tests.e2e.conftest import basic_auth

pytestmark = pytest.mark.e2e

STALLED = 24  # twice the web server's blocking threads (2 workers x 4 here, 3 x 4 under make run)


@pytest.fixture
def app_env(tmp_path: Path) -> Iterator[AppEnv]:
    env = AppEnv(tmp_path).create()
    try:
        yield env
    finally:
        env.stop_all()
        env.destroy()


@pytest.fixture
def web(app_env: AppEnv) -> str:
    """granian alone on the port."""
    return app_env.start_web(workers=2, threads=4, front=False)


@pytest.fixture
def deployed(app_env: AppEnv) -> str:
    """Caddy on the port, granian behind it, as `make run` starts them."""
    return app_env.start_web(workers=2, threads=4)


def stalled_request(url: str, path: str, extra_headers: str = "") -> socket.socket:
    host, port = url.removeprefix("http://").split(":")
    sock = socket.create_connection((host, int(port)), timeout=10)
    sock.sendall(
        (
            f"POST {path} HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: application/json\r\n"
            f"Content-Length: 1000\r\n{extra_headers}\r\n"
        ).encode()
        + b'{"id": "sta'
    )
    return sock


def health_and_a_webhook(url: str, message_id: str) -> tuple[httpx.Response, httpx.Response]:
    """What an operator and a provider ask while the stalled clients hold their connections."""
    health = httpx.get(f"{url}/healthz", timeout=10)
    webhook = httpx.post(
        f"{url}/webhooks/generic/",
        content=b'{"id": "%s", "status": "delivered", "timestamp": "2026-11-20T10:00:00Z"}' % message_id.encode(),
        headers={"Content-Type": "application/json"},
        auth=basic_auth(),
        timeout=10,
    )
    return health, webhook


def test_stalled_unauthenticated_bodies_do_not_starve_the_server(web: str) -> None:
    sockets = [stalled_request(web, "/webhooks/generic/") for _ in range(STALLED)]
    try:
        time.sleep(1)
        health, webhook = health_and_a_webhook(web, "m-1")

        assert health.status_code == 200
        assert webhook.status_code == 200, webhook.text
        # Each stalled client was answered at once, without its body.
        answers = []
        for sock in sockets:
            sock.settimeout(5)
            answers.append(sock.recv(200).split(b"\r\n", 1)[0])
        assert set(answers) == {b"HTTP/1.1 401 Unauthorized"}
    finally:
        for sock in sockets:
            sock.close()


def post_chunked(url: str, message_id: str) -> httpx.Response:
    """A signed-in webhook whose body is sent chunked (no Content-Length)."""

    def chunks() -> Iterator[bytes]:
        yield b'{"id": "%s", "status": "delivered", ' % message_id.encode()
        yield b'"timestamp": "2026-11-20T10:00:00Z"}'

    return httpx.post(
        f"{url}/webhooks/generic/",
        content=chunks(),
        headers={"Content-Type": "application/json"},
        auth=basic_auth(),
        timeout=10,
    )


def test_a_chunked_webhook_body_is_refused_with_411_not_read_as_empty(web: str) -> None:
    response = post_chunked(web, "m-2")

    assert response.status_code == 411, response.text
    assert "Content-Length" in response.json()["error"]


def test_stalled_bodies_with_credentials_do_not_starve_the_deployed_server(deployed: str, app_env: AppEnv) -> None:
    token = base64.b64encode(":".join(basic_auth()).encode()).decode()
    credentials = f"Authorization: Basic {token}\r\n"
    sockets = [stalled_request(deployed, "/webhooks/generic/", credentials) for _ in range(STALLED)]
    try:
        time.sleep(1)
        health, webhook = health_and_a_webhook(deployed, "m-3")
        still_waiting = not select.select(sockets, [], [], 0)[0]

        assert health.status_code == 200
        assert webhook.status_code == 200, webhook.text
        assert still_waiting, "answered only once the stalled clients had been let go"
    finally:
        for sock in sockets:
            sock.close()
    # None of the stalled requests reached the app: the inbox holds the one whole webhook only.
    assert sum(app_env.inbox_states().values()) == 1


def test_a_chunked_webhook_body_is_refused_with_411_through_caddy_too(deployed: str) -> None:
    response = post_chunked(deployed, "m-4")

    assert response.status_code == 411, response.text
    assert response.headers["connection"] == "close"  # and nothing behind it on that connection is read
