from __future__ import annotations

import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import httpx
import pytest

from simulator import SimulatorServer

# Fast schedules: a message is sent after ~20 ms and final after 50-150 ms.
FAST = {"sent_delay": 0.02, "delay_min": 0.05, "delay_max": 0.15, "analytics_job_delay": 0.05}


@pytest.fixture
def sim() -> Iterator[SimulatorServer]:
    """A simulator that pushes nothing (no app listens), seeded, on a free port."""
    server = SimulatorServer(seed=7, push=False, **FAST).start()
    try:
        yield server
    finally:
        server.stop()


@pytest.fixture
def http(sim: SimulatorServer) -> Iterator[httpx.Client]:
    with httpx.Client(base_url=sim.url, timeout=30) as client:
        yield client


def get_token(http: httpx.Client, client_id: str = "client") -> str:
    response = http.post("/oauth/token", auth=(client_id, "pw"), data={"grant_type": "client_credentials"})
    assert response.status_code == 200, response.text
    return response.json()["access_token"]


def bearer(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}


def send_sms(http: httpx.Client, token: str, to: str = "+15551234567", text: str = "Hello") -> httpx.Response:
    body = {"fromAddress": "+15559876543", "toAddress": to, "toAddressMessengerType": "sms", "textBody": text}
    return http.post("/api/v2/conversations/messages/agentless", json=body, headers=bearer(token))


def send_mt(http: httpx.Client, message_id: str, receipt: bool = False, **fields: str) -> httpx.Response:
    data = {
        "login": "acme",
        "password": "pw",
        "phone_number": "15551234567",
        "sender": "55555",
        "message": "Hello",
        "message_id": message_id,
        "receipt": "TRUE" if receipt else "FALSE",
        **fields,
    }
    return http.post("/httpapi/receiver", data=data)


def stats(http: httpx.Client) -> dict[str, Any]:
    return http.get("/_sim/stats").json()


def configure(http: httpx.Client, **changes: Any) -> dict[str, Any]:
    response = http.post("/_sim/config", json=changes)
    assert response.status_code == 200, response.text
    return response.json()


class Receiver:
    """A stand-in for the app's webhooks: records every POST, and answers ``failures`` first (e.g. [503, 503])."""

    def __init__(self) -> None:
        self.received: list[dict[str, Any]] = []
        self.failures: list[int] = []
        self.lock = threading.Lock()
        receiver = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                body = self.rfile.read(int(self.headers.get("Content-Length") or 0))
                with receiver.lock:
                    status = receiver.failures.pop(0) if receiver.failures else 200
                    receiver.received.append(
                        {"path": self.path, "headers": dict(self.headers), "body": body, "status": status}
                    )
                self.send_response(status)
                self.send_header("Content-Length", "0")
                self.end_headers()

            def log_message(self, *args: Any) -> None:
                pass

        self.httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.httpd.server_address[1]}"
        self.thread = threading.Thread(target=self.httpd.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True)
        self.thread.start()

    def ok(self) -> list[dict[str, Any]]:
        with self.lock:
            return [r for r in self.received if r["status"] == 200]

    def stop(self) -> None:
        self.httpd.shutdown()
        self.httpd.server_close()


@pytest.fixture
def receiver() -> Iterator[Receiver]:
    r = Receiver()
    try:
        yield r
    finally:
        r.stop()


@pytest.fixture
def pushing(receiver: Receiver) -> Iterator[SimulatorServer]:
    """A simulator pushing receipts to ``receiver``, retrying fast."""
    secrets = {"genesys_cloud": "gc", "genesys_sms": "sms", "webex_connect": "wx"}
    server = SimulatorServer(
        seed=11, app_url=receiver.url, secrets=secrets, push_retry_spacing=0.05, push_retry_backoff=1.0, **FAST
    ).start()
    try:
        yield server
    finally:
        server.stop()
