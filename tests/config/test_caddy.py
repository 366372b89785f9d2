"""Caddy from config/Caddyfile, as `make run` starts it, in front of a real HTTP server on a Unix socket that records
what reaches it: whole requests are handed on; what is too large, framed ambiguously, or does not arrive is not;
a client's forwarded headers are replaced; a request the app dropped is never sent again."""

from __future__ import annotations

import json
import select
import signal
import socket
import socketserver
import subprocess
import threading
import time
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler
from pathlib import Path

import httpx
import pytest

from tests.apprunner import BIN, READY_TIMEOUT, ROOT, free_port, wait_until

MAX_BODY = 4096
READ_HEADER_TIMEOUT = 1.5


class Recorder(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    seen: list[dict] = []
    drop: bool = False  # read the request, then close without answering (a worker killed mid-request)

    def read_body(self) -> bytes:
        if self.headers.get("Transfer-Encoding") != "chunked":
            return self.rfile.read(int(self.headers.get("Content-Length") or 0))
        body = b""
        while size := int(self.rfile.readline().split(b";")[0], 16):
            body += self.rfile.read(size)
            self.rfile.readline()
        self.rfile.readline()
        return body

    def handle_one(self) -> None:
        body = self.read_body()
        self.seen.append(
            {
                "method": self.command,
                "path": self.path,
                "headers": {k.lower(): v for k, v in self.headers.items()},
                "raw_headers": [k.lower() for k in self.headers],
                "body": body,
            }
        )
        if self.drop:
            self.close_connection = True
            return
        if self.path.startswith("/big"):
            answer = b"x" * (24 * 1024 * 1024)
            self.send_response(200)
            self.send_header("Content-Length", str(len(answer)))
            self.end_headers()
            self.wfile.write(answer)
            self.wfile.flush()
            self.seen[-1]["answered"] = True  # the app's thread is free again
            return
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

    do_GET = do_POST = do_HEAD = do_PUT = do_PATCH = do_DELETE = handle_one

    def address_string(self) -> str:
        return "unix"

    def log_message(self, *args: object) -> None:
        pass


class UnixServer(socketserver.ThreadingMixIn, socketserver.UnixStreamServer):
    daemon_threads = True


@pytest.fixture
def upstream(tmp_path: Path) -> Iterator[tuple[Path, list[dict]]]:
    Recorder.seen, Recorder.drop = [], False
    path = tmp_path / "web.sock"
    server = UnixServer(str(path), Recorder)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        yield path, Recorder.seen
    finally:
        server.shutdown()
        server.server_close()


def start_caddy(socket_path: Path, tmp_path: Path, **settings: str) -> tuple[str, subprocess.Popen]:
    """The Caddyfile as supervisord's caddy program runs it, with a small body limit and a short head timeout."""
    port = free_port()
    env = {
        "PATH": "/usr/bin:/bin",
        "HOME": str(tmp_path),
        "VAR_DIR": str(tmp_path),
        "SITE_ADDRESS": f"http://:{port}",
        "WEB_HOST": "127.0.0.1",
        "WEB_SOCKET": str(socket_path),
        "WEB_MAX_BODY": str(MAX_BODY),
        "WEB_READ_HEADER_TIMEOUT": f"{READ_HEADER_TIMEOUT}s",
        **settings,
    }
    log = open(tmp_path / "caddy.log", "w")  # noqa: SIM115 - lives as long as the process
    proc = subprocess.Popen(
        [str(BIN / "caddy"), "run", "--config", "config/Caddyfile", "--adapter", "caddyfile"],
        cwd=ROOT,
        env=env,
        stdout=log,
        stderr=subprocess.STDOUT,
    )
    wait_until(lambda: socket.create_connection(("127.0.0.1", port), timeout=1).close() or True, "caddy")
    return f"http://127.0.0.1:{port}", proc


@pytest.fixture
def front(upstream: tuple[Path, list[dict]], tmp_path: Path) -> Iterator[tuple[str, list[dict]]]:
    url, proc = start_caddy(upstream[0], tmp_path)
    try:
        yield url, upstream[1]
    finally:
        proc.terminate()
        proc.wait(timeout=READY_TIMEOUT)


def raw(url: str, data: bytes, wait: float = 5) -> bytes:
    """Sends the bytes on one connection and reads until the server closes it (or ``wait`` passes: then the
    answer ends with ``<still open>``)."""
    host, port = url.removeprefix("http://").split(":")
    with socket.create_connection((host, int(port)), timeout=wait) as sock:
        sock.sendall(data)
        answer = b""
        try:
            while chunk := sock.recv(65536):
                answer += chunk
        except TimeoutError:
            return answer + b"<still open>"
    return answer


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


def test_a_chunked_body_is_handed_on_as_read_and_the_connection_closed_after_it(
    front: tuple[str, list[dict]],
) -> None:
    url, seen = front
    behind = b"GET /behind HTTP/1.1\r\nHost: x\r\n\r\n"
    answer = raw(
        url,
        b"POST /webhooks/generic/ HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n"
        b'7\r\n{"id": \r\n6\r\n"m-2"}\r\n0\r\n\r\n' + behind,
    )
    assert answer.startswith(b"HTTP/1.1 201 ") and answer.endswith(b'{"got": 13}'), answer
    assert [s["path"] for s in seen] == ["/webhooks/generic/"]
    assert seen[0]["body"] == b'{"id": "m-2"}'
    # Caddy hands a chunked body on chunked (granian then answers 411: docs/operating.md), with no length beside it
    assert seen[0]["headers"]["transfer-encoding"] == "chunked" and "content-length" not in seen[0]["headers"]


def test_the_clients_forwarded_headers_are_replaced_not_passed_on(front: tuple[str, list[dict]]) -> None:
    url, seen = front
    forged = {
        "X-Forwarded-For": "198.51.100.1",
        "X-Forwarded-Proto": "https",
        "X-Forwarded-Host": "evil.example",
        "Forwarded": "for=198.51.100.1;proto=https;host=evil.example",
    }
    httpx.get(f"{url}/healthz", headers=forged)
    headers = seen[0]["headers"]
    assert headers["x-forwarded-for"] == "127.0.0.1"
    assert headers["x-forwarded-proto"] == "http"
    assert headers["x-forwarded-host"] == url.removeprefix("http://")
    assert "forwarded" not in headers


def test_behind_a_trusted_proxy_its_forwarded_for_is_kept_and_the_peer_appended(
    upstream: tuple[Path, list[dict]], tmp_path: Path
) -> None:
    """A load balancer of one's own listed in TRUSTED_PROXIES: the client it saw stays first, so that PROXY_HOPS=1
    finds it (config/client_address.py)."""
    url, proc = start_caddy(upstream[0], tmp_path, TRUSTED_PROXIES="127.0.0.1/32")
    try:
        httpx.get(f"{url}/healthz", headers={"X-Forwarded-For": "198.51.100.1"})
    finally:
        proc.terminate()
        proc.wait(timeout=READY_TIMEOUT)
    assert upstream[1][0]["headers"]["x-forwarded-for"] == "198.51.100.1, 127.0.0.1"


def test_a_slow_reader_of_a_large_answer_holds_no_app_thread(upstream: tuple[Path, list[dict]], tmp_path: Path) -> None:
    """The client asks for a 24 MiB answer (more than the kernel's socket buffers hold) and reads none of it:
    Caddy takes the whole answer from the app (response_buffers, here 32 MiB), so the app's thread is done while
    the client still has not read."""
    url, proc = start_caddy(upstream[0], tmp_path, WEB_RESPONSE_BUFFER="32MiB")
    seen = upstream[1]
    host, port = url.removeprefix("http://").split(":")
    try:
        with socket.create_connection((host, int(port)), timeout=10) as sock:
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
            sock.sendall(b"GET /big HTTP/1.1\r\nHost: x\r\n\r\n")
            wait_until(lambda: seen and seen[0].get("answered"), "the app's answer, taken whole by Caddy")
    finally:
        proc.terminate()
        proc.wait(timeout=READY_TIMEOUT)


def test_a_head_that_trickles_in_is_cut_off_at_the_read_header_timeout(front: tuple[str, list[dict]]) -> None:
    url, seen = front
    started = time.monotonic()
    answer = raw(url, b"GET /healthz HTTP/1.1\r\nHost: x\r\nX-Slow: ", wait=READ_HEADER_TIMEOUT + 10)
    assert b"<still open>" not in answer and not answer.startswith(b"HTTP/1.1 2"), answer
    assert time.monotonic() - started < READ_HEADER_TIMEOUT + 10
    assert seen == []


def test_stalled_bodies_are_held_by_caddy_never_handed_on_and_hold_up_no_one(front: tuple[str, list[dict]]) -> None:
    """A body announced and not sent stays with Caddy (request_buffers): the app never sees the request, so it
    holds no app thread, and everyone else is answered meanwhile."""
    url, seen = front
    host, port = url.removeprefix("http://").split(":")
    stalled = []
    for _ in range(200):
        sock = socket.create_connection((host, int(port)), timeout=5)
        sock.sendall(b"POST /webhooks/generic/ HTTP/1.1\r\nHost: x\r\nContent-Length: 1000\r\n\r\n{")
        stalled.append(sock)
    try:
        response = httpx.post(f"{url}/webhooks/generic/", content=b"{}", timeout=5)
        assert response.status_code == 201
        assert not select.select(stalled, [], [], 0)[0], "answered only once the stalled clients had been let go"
        assert [s["body"] for s in seen] == [b"{}"], "a stalled request reached the app"
    finally:
        for sock in stalled:
            sock.close()


def test_two_thousand_idle_connections_leave_everyone_else_answered(front: tuple[str, list[dict]]) -> None:
    url, seen = front
    host, port = url.removeprefix("http://").split(":")
    idle = [socket.create_connection((host, int(port)), timeout=10) for _ in range(2000)]
    try:
        assert httpx.get(f"{url}/healthz", timeout=10).status_code == 200
        assert [s["path"] for s in seen] == ["/healthz"]
    finally:
        for sock in idle:
            sock.close()


@pytest.mark.parametrize("declared", [True, False])
def test_a_body_over_the_limit_is_refused_413_and_never_handed_on(
    front: tuple[str, list[dict]], declared: bool
) -> None:
    url, seen = front
    if declared:
        # refused on its Content-Length alone, before any of the body is sent, and the connection closed
        answer = raw(url, b"POST /webhooks/generic/ HTTP/1.1\r\nHost: x\r\nContent-Length: 31000000\r\n\r\n")
        assert answer.startswith(b"HTTP/1.1 413 "), answer
        assert b"<still open>" not in answer
    else:
        body = b"x" * (MAX_BODY + 1)
        response = httpx.post(f"{url}/webhooks/generic/", content=iter([body[:100], body[100:]]))
        assert response.status_code == 413
    assert seen == []


BEHIND = b"GET /behind HTTP/1.1\r\nHost: x\r\n\r\n"


@pytest.mark.parametrize(
    "request_bytes",
    [
        b"POST /a HTTP/1.1\r\nHost: x\r\nContent-Length: 3\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n",
        b"POST /a HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\nContent-Length: 3\r\n\r\n0\r\n\r\n",
        b"POST /a HTTP/1.1\r\nHost: x\r\nContent-Length: 3, 3\r\n\r\nabc",
        b"POST /a HTTP/1.1\r\nHost: x\r\nContent-Length: 3\r\nContent-Length: 4\r\n\r\nabcd",
        b"POST /a HTTP/1.1\r\nHost: x\r\nTransfer-Encoding:\r\n chunked\r\n\r\n0\r\n\r\n",
        b"POST /a HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: gzip, chunked\r\n\r\n0\r\n\r\n",
        b"POST /a HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked, identity\r\n\r\n0\r\n\r\n",
        b"POST /a HTTP/1.0\r\nHost: x\r\nConnection: keep-alive\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n",
        b"GET /a HTTP/2.0\r\nHost: x\r\n\r\n",
        b"GET /a HTTP/1.1\r\nHost: x\r\nX-Big: " + b"y" * 1_100_000 + b"\r\n\r\n",
        b"GET /a HTTP/1.1\r\nHost: x\r\nBad Header: 1\r\n\r\n",
    ],
    ids=[
        "length-and-chunked",
        "chunked-and-length",
        "length-list",
        "two-lengths",
        "obs-folded-chunked",
        "chunked-not-last",
        "unknown-coding",
        "chunked-on-http-1.0",
        "http-2.0-line",
        "huge-head",
        "bad-header-name",
    ],
)
def test_an_ambiguous_framing_is_refused_or_the_connection_closed_and_nothing_behind_it_served(
    front: tuple[str, list[dict]], request_bytes: bytes
) -> None:
    url, seen = front
    answer = raw(url, request_bytes + BEHIND)
    assert b"<still open>" not in answer, f"the connection was kept: {answer[:300]!r}"
    assert answer.count(b"HTTP/1.") <= 1, answer[:500]
    assert "/behind" not in [s["path"] for s in seen], "the request pipelined behind was served"
    for request in seen:  # what was handed on is framed one way only: one length, or chunked alone
        framing = [name for name in request["raw_headers"] if name in ("content-length", "transfer-encoding")]
        assert len(framing) <= 1, request


@pytest.mark.parametrize("method", ["POST", "PUT", "PATCH", "DELETE"])
def test_a_request_the_app_dropped_is_never_sent_again(front: tuple[str, list[dict]], method: str) -> None:
    """The app read the request and closed without answering (a worker killed mid-request), on a connection Caddy
    had used before: the client gets an error to retry on, and the app saw the request once. (Go's transport sends
    a GET again in that case: it is idempotent.)"""
    url, seen = front
    with httpx.Client(base_url=url) as client:
        assert client.get("/warm").status_code == 200  # Caddy now holds a kept-alive connection to the app
        Recorder.drop = True
        response = client.request(method, "/admin/settle/1/", content=b"x=1")
    assert response.status_code == 503 and response.headers["retry-after"] == "2"
    assert [s["path"] for s in seen].count("/admin/settle/1/") == 1


def test_an_app_that_is_not_there_gives_503_with_retry_after(tmp_path: Path) -> None:
    url, proc = start_caddy(tmp_path / "nobody.sock", tmp_path)
    try:
        response = httpx.post(f"{url}/webhooks/generic/", content=b"{}")
        assert response.status_code == 503
        assert response.headers["retry-after"] == "2"
        assert "starting or restarting" in response.text
    finally:
        proc.terminate()
        proc.wait(timeout=READY_TIMEOUT)


def test_sigterm_stops_caddy_cleanly(upstream: tuple[Path, list[dict]], tmp_path: Path) -> None:
    _, proc = start_caddy(upstream[0], tmp_path)
    proc.send_signal(signal.SIGTERM)
    assert proc.wait(timeout=READY_TIMEOUT) == 0


def test_whatever_bytes_arrive_caddy_answers_or_closes_and_keeps_serving(front: tuple[str, list[dict]]) -> None:
    """Hostile input, generated: any bytes, a half-valid head, a bad length, a request cut short. Each connection
    gets an HTTP answer or is closed, and Caddy keeps answering everyone else."""
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
            sock.shutdown(socket.SHUT_WR)  # nothing more is coming: Caddy must not wait for it
            answer = b""
            while chunk := sock.recv(65536):
                answer += chunk
        assert answer == b"" or answer.startswith(b"HTTP/1."), answer[:100]

    one_connection()
    assert httpx.get(f"{url}/healthz", timeout=5).status_code == 200
