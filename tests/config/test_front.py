"""The front (config/front.py) as `make run` starts it, a process of its own, in front of a real HTTP server that
records what reaches it: whole requests are handed on, anything that does not arrive whole and in time is not."""

from __future__ import annotations

import json
import select
import socket
import subprocess
import sys
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import httpx
import pytest

from tests.apprunner import ROOT, free_port, wait_until

READ_TIMEOUT = 1.5
MAX_BODY = 4096


class Recorder(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    seen: list[dict] = []

    def handle_one(self) -> None:
        body = self.rfile.read(int(self.headers.get("Content-Length") or 0))
        self.seen.append(
            {
                "method": self.command,
                "path": self.path,
                "headers": {k.lower(): v for k, v in self.headers.items()},
                "body": body,
            }
        )
        if self.path.startswith("/stream"):
            self.send_response(200)
            self.send_header("Content-Type", "text/csv")
            self.send_header("Transfer-Encoding", "chunked")
            self.end_headers()
            for line in (b"a,b\r\n", b"1,2\r\n"):
                self.wfile.write(b"%x\r\n%s\r\n" % (len(line), line))
            self.wfile.write(b"0\r\n\r\n")
            return
        answer = json.dumps({"got": len(body)}).encode()
        self.send_response(201 if self.command == "POST" else 200)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(answer)))
        self.send_header("Set-Cookie", "a=1")
        self.send_header("Set-Cookie", "b=2")
        self.end_headers()
        if self.command != "HEAD":
            self.wfile.write(answer)

    do_GET = do_POST = do_HEAD = do_PUT = handle_one

    def log_message(self, *args: object) -> None:
        pass


@pytest.fixture
def upstream() -> Iterator[tuple[str, list[dict]]]:
    Recorder.seen = []
    server = ThreadingHTTPServer(("127.0.0.1", 0), Recorder)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}", Recorder.seen
    finally:
        server.shutdown()


def start_front(upstream_url: str, tmp_path: Path) -> tuple[str, subprocess.Popen]:
    port = free_port()
    env = {"FRONT_READ_TIMEOUT": str(READ_TIMEOUT), "FRONT_MAX_BODY": str(MAX_BODY), "FRONT_IDLE_TIMEOUT": "5"}
    log = open(tmp_path / "front.log", "w")  # noqa: SIM115 - lives as long as the process
    proc = subprocess.Popen(
        [sys.executable, "-m", "config.front", "--listen", f"127.0.0.1:{port}", "--upstream", upstream_url],
        cwd=ROOT,
        env={"PATH": "/usr/bin:/bin", **env},
        stdout=log,
        stderr=subprocess.STDOUT,
    )
    url = f"http://127.0.0.1:{port}"
    wait_until(lambda: socket.create_connection(("127.0.0.1", port), timeout=1).close() or True, 20, "the front")
    return url, proc


@pytest.fixture
def front(upstream: tuple[str, list[dict]], tmp_path: Path) -> Iterator[tuple[str, list[dict]]]:
    url, proc = start_front(upstream[0], tmp_path)
    try:
        yield url, upstream[1]
    finally:
        proc.terminate()
        proc.wait(timeout=15)


def raw(url: str, data: bytes, wait: float = 5) -> tuple[bytes, socket.socket]:
    host, port = url.removeprefix("http://").split(":")
    sock = socket.create_connection((host, int(port)), timeout=wait)
    sock.sendall(data)
    answer = b""
    while chunk := sock.recv(65536):  # refusals close the connection
        answer += chunk
    return answer, sock


def test_a_whole_request_is_handed_on_and_the_answer_comes_back_intact(front: tuple[str, list[dict]]) -> None:
    url, seen = front
    with httpx.Client(base_url=url) as client:
        first = client.post("/webhooks/generic/?x=1&y=%2B", content=b'{"id": "m-1"}', headers={"X-Hub": "sig"})
        second = client.get("/healthz")  # the same kept-alive connection

    assert first.status_code == 201 and first.json() == {"got": 13}
    assert first.headers.get_list("set-cookie") == ["a=1", "b=2"]
    assert second.status_code == 200
    assert seen[0]["method"] == "POST" and seen[0]["path"] == "/webhooks/generic/?x=1&y=%2B"
    assert seen[0]["body"] == b'{"id": "m-1"}' and seen[0]["headers"]["x-hub"] == "sig"
    assert seen[0]["headers"]["x-forwarded-for"] == "127.0.0.1"


def test_a_streamed_answer_and_a_head_request_pass_through(front: tuple[str, list[dict]]) -> None:
    url, _ = front
    assert httpx.get(f"{url}/stream").text == "a,b\r\n1,2\r\n"
    head = httpx.head(f"{url}/healthz")
    assert head.status_code == 200 and head.content == b""


def test_a_chunked_body_is_read_and_handed_on_with_its_length(front: tuple[str, list[dict]]) -> None:
    url, seen = front
    response = httpx.post(f"{url}/webhooks/generic/", content=iter([b'{"id": ', b'"m-2"}']))
    assert response.json() == {"got": 13}
    assert seen[0]["body"] == b'{"id": "m-2"}'
    assert seen[0]["headers"]["content-length"] == "13" and "transfer-encoding" not in seen[0]["headers"]


def test_the_clients_own_forwarded_for_is_kept_and_the_peer_appended(front: tuple[str, list[dict]]) -> None:
    url, seen = front
    httpx.get(f"{url}/healthz", headers={"X-Forwarded-For": "198.51.100.1"})
    assert seen[0]["headers"]["x-forwarded-for"] == "198.51.100.1, 127.0.0.1"


def test_a_body_that_stalls_is_answered_408_and_never_handed_on(front: tuple[str, list[dict]]) -> None:
    url, seen = front
    head = (
        b"POST /webhooks/generic/ HTTP/1.1\r\nHost: x\r\nAuthorization: Basic ZTJlOng=\r\nContent-Length: 100\r\n\r\n"
    )
    answer, sock = raw(url, head + b'{"id": "sta')
    sock.close()

    assert answer.startswith(b"HTTP/1.1 408 ")
    assert b"did not arrive within 1.5 s" in answer
    assert seen == []


def test_headers_that_trickle_in_are_answered_408(front: tuple[str, list[dict]]) -> None:
    url, seen = front
    answer, sock = raw(url, b"GET /healthz HTTP/1.1\r\nHost: x\r\nX-Slow: ")
    sock.close()
    assert answer.startswith(b"HTTP/1.1 408 ") and seen == []


def test_stalled_clients_do_not_hold_up_anyone_else(front: tuple[str, list[dict]]) -> None:
    url, _ = front
    host, port = url.removeprefix("http://").split(":")
    stalled = []
    for _ in range(200):
        sock = socket.create_connection((host, int(port)), timeout=5)
        sock.sendall(b"POST /webhooks/generic/ HTTP/1.1\r\nHost: x\r\nContent-Length: 1000\r\n\r\n{")
        stalled.append(sock)
    try:
        response = httpx.get(f"{url}/healthz", timeout=5)
        assert response.status_code == 200
        # Answered while every stalled client still waits, unanswered: none of them held it up.
        assert not select.select(stalled, [], [], 0)[0], "answered only once the stalled clients had been let go"
    finally:
        for sock in stalled:
            sock.close()


@pytest.mark.parametrize("declared", [True, False])
def test_a_body_over_the_limit_is_refused_413_without_reading_on(front: tuple[str, list[dict]], declared: bool) -> None:
    url, seen = front
    body = b"x" * (MAX_BODY + 1)
    if declared:
        response = httpx.post(f"{url}/webhooks/generic/", content=body)
    else:
        response = httpx.post(f"{url}/webhooks/generic/", content=iter([body[:100], body[100:]]))
    assert response.status_code == 413
    assert response.json() == {"error": f"the body is larger than {MAX_BODY} bytes"}
    assert seen == []


@pytest.mark.parametrize(
    "request_bytes",
    [
        b"NOT HTTP AT ALL\r\n\r\n",
        b"GET / HTTP/1.1\r\nHost: x\r\nContent-Length: ten\r\n\r\n",
        b"GET / HTTP/1.1\r\nHost: x\r\nContent-Length: 1\r\nContent-Length: 2\r\n\r\n",
        b"GET / HTTP/1.1\r\nHost: x\r\nBad Header: 1\r\n\r\n",
        b"GET / HTTP/1.1\r\n" + b"X-Big: " + b"y" * 70_000 + b"\r\n\r\n",
    ],
    ids=["not-http", "bad-length", "two-lengths", "bad-header-name", "huge-head"],
)
def test_what_does_not_parse_is_answered_4xx_and_never_handed_on(
    front: tuple[str, list[dict]], request_bytes: bytes
) -> None:
    url, seen = front
    answer, sock = raw(url, request_bytes)
    sock.close()
    status = int(answer.split(b" ", 2)[1])
    assert status in (400, 431), answer[:200]
    assert seen == []


def test_an_app_that_is_not_answering_gives_503_with_retry_after(tmp_path: Path) -> None:
    url, proc = start_front(f"http://127.0.0.1:{free_port()}", tmp_path)
    try:
        response = httpx.post(f"{url}/webhooks/generic/", content=b"{}")
        assert response.status_code == 503
        assert response.headers["retry-after"] == "2"
        assert "starting or restarting" in response.json()["error"]
    finally:
        proc.terminate()
        proc.wait(timeout=15)


def test_sigterm_stops_the_front_cleanly(upstream: tuple[str, list[dict]], tmp_path: Path) -> None:
    _, proc = start_front(upstream[0], tmp_path)
    proc.terminate()
    assert proc.wait(timeout=15) == 0


def test_whatever_bytes_arrive_the_front_answers_or_closes_and_keeps_serving(
    front: tuple[str, list[dict]],
) -> None:
    """Hostile input, generated: any bytes, a half-valid head, a bad length, a request cut short. Each connection
    gets an HTTP answer or is closed, and the front keeps answering everyone else."""
    from hypothesis import HealthCheck, given, settings
    from hypothesis import strategies as st

    url, _ = front
    host, port = url.removeprefix("http://").split(":")
    heads = st.sampled_from(
        [
            b"",
            b"GET / HTTP/1.1\r\nHost: x\r\n\r\n",
            b"POST /webhooks/generic/ HTTP/1.1\r\nHost: x\r\nContent-Length: 5\r\n\r\n",
            b"POST / HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n",
            b"GET / HTTP/1.0\r\n\r\n",
        ]
    )

    @settings(max_examples=60, deadline=None, suppress_health_check=list(HealthCheck))
    @given(head=heads, tail=st.binary(max_size=300))
    def one_connection(head: bytes, tail: bytes) -> None:
        with socket.create_connection((host, int(port)), timeout=10) as sock:
            sock.sendall(head + tail)
            sock.shutdown(socket.SHUT_WR)  # nothing more is coming: the front must not wait for it
            answer = b""
            while chunk := sock.recv(65536):
                answer += chunk
        assert answer == b"" or answer.startswith(b"HTTP/1.1 "), answer[:100]

    one_connection()
    assert httpx.get(f"{url}/healthz", timeout=5).status_code == 200
