"""The HTTP server: standard library ``ThreadingHTTPServer`` (one thread per connection, HTTP/1.1 keep-alive),
routing, fault injection, counting. ``SimulatorServer`` runs it in a background thread for tests; the
``simulate_providers`` management command runs it in the foreground for people.
"""

from __future__ import annotations

import contextlib
import json
import logging
import socket
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import urlsplit

from simulator import control, genesys_cloud, genesys_sms, webex_connect
from simulator.config import SimConfig
from simulator.core import Simulator
from simulator.http import HttpError, Request, Response, Route, parse_query
from simulator.push import Pusher

log = logging.getLogger("simulator")

MAX_BODY = 64 * 1024 * 1024


def all_routes() -> list[Route]:
    return [*genesys_cloud.routes(), *genesys_sms.routes(), *webex_connect.routes(), *control.routes()]


def fault_response(scope: str, kind: str, sim: Simulator, path: str = "") -> Response:
    """An injected fault, in the shape the provider would answer it (Webex Connect's v2 in v2's own body)."""
    retry_after = sim.config.retry_after
    v2 = scope == "webex_connect" and path.startswith("/v2/")
    if kind == "429":
        if scope in ("genesys_cloud", "oauth"):
            return genesys_cloud.too_many_requests(retry_after)
        if v2:
            response = webex_connect.fail_v2(
                sim.config.webex_throttle_status, "7020", "You have reached maximum transaction limit"
            )
            response.headers["Retry-After"] = str(retry_after)
            return response
        if scope == "webex_connect":
            return webex_connect.over_limit(retry_after, sim.config.webex_throttle_status)
        return genesys_sms.answer(genesys_sms.THROTTLED, "injected throttle")  # a 2xx, as the service throttles
    status = sim.pick_5xx()
    if scope in ("genesys_cloud", "oauth"):
        return genesys_cloud.server_error(status)
    if v2:
        return webex_connect.fail_v2(status, "7006", "Internal error occurred")
    if scope == "webex_connect":
        return Response(status, {"response": {"code": "7006", "description": "Internal error occurred"}})
    return Response(status, {"error": "internal service error"})


class App:
    """Turns one parsed request into one response, counting it."""

    def __init__(self, sim: Simulator) -> None:
        self.sim = sim
        self.routes = all_routes()

    def match(self, method: str, path: str) -> tuple[Route | None, dict[str, str], bool]:
        path_known = False
        for route in self.routes:
            found = route.pattern.match(path)
            if found:
                if route.method == method:
                    return route, found.groupdict(), True
                path_known = True
        return None, {}, path_known

    def handle(self, method: str, target: str, headers: Any, body: bytes) -> Response:
        started = time.time()
        parts = urlsplit(target)
        route, params, path_known = self.match(method, parts.path)
        if route is None:
            status = 405 if path_known else 404
            response = self.not_found(parts.path, status)
            self.sim.stats.request(method, "(unknown)", status, "", started)
            return response
        request = Request(method, parts.path, parse_query(parts.query), headers, body, params)
        sim = self.sim
        if route.scope != "control" and route.scope in sim.config.fault_scopes:
            delay = sim.latency()
            if delay:
                time.sleep(delay)
            fault = sim.roll_fault()
            if fault:
                sim.stats.fault(f"injected_{fault}")
                response = fault_response(route.scope, fault, sim, parts.path)
                sim.stats.request(method, route.template, response.status, "", started)
                return response
        try:
            response = route.handler(sim, request)
        except HttpError as exc:
            response = exc.response
        except Exception:
            log.exception("simulator error on %s %s", method, route.template)
            response = Response(500, {"error": "simulator bug; see its log"})
        if route.scope != "control":
            sim.stats.request(method, route.template, response.status, request.principal, started)
        return response

    @staticmethod
    def not_found(path: str, status: int) -> Response:
        if path.startswith("/api/v2/"):
            code = "not.found" if status == 404 else "method.not.allowed"
            return genesys_cloud.error(status, code, f"No resource at {path} for this method.")
        return Response(status, {"error": f"no route for {path}"})


class Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    server: SimHTTPServer

    def setup(self) -> None:
        super().setup()
        # Without Nagle's delay: headers and body are two writes, and a keep-alive client would otherwise wait
        # ~40 ms (delayed ACK) for every answer.
        self.connection.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        self.server.track(self.connection, True)

    def finish(self) -> None:
        try:
            super().finish()
        finally:
            self.server.track(self.connection, False)

    def handle_any(self) -> None:
        if "chunked" in (self.headers.get("Transfer-Encoding") or "").lower():
            body = self.read_chunked()
        else:
            try:
                length = int(self.headers.get("Content-Length") or "0")
            except ValueError:
                length = -1
            if length < 0 or length > MAX_BODY:
                self.reply(Response(413 if length > MAX_BODY else 400, {"error": "bad Content-Length"}), close=True)
                return
            body = self.rfile.read(length) if length else b""
        response = self.server.app.handle(self.command, self.path, self.headers, body)
        self.reply(response)

    do_GET = do_POST = do_PUT = do_DELETE = do_PATCH = handle_any

    def read_chunked(self) -> bytes:
        chunks: list[bytes] = []
        while True:
            size = int(self.rfile.readline().split(b";")[0].strip() or b"0", 16)
            if size == 0:
                while self.rfile.readline() not in (b"\r\n", b"\n", b""):
                    pass  # trailers
                return b"".join(chunks)
            chunks.append(self.rfile.read(size))
            self.rfile.readline()

    def reply(self, response: Response, close: bool = False) -> None:
        payload = response.encoded()
        try:
            self.send_response(response.status)
            if payload or response.body is not None:
                self.send_header("Content-Type", response.content_type)
            self.send_header("Content-Length", str(len(payload)))
            for name, value in response.headers.items():
                self.send_header(name, value)
            if close:
                self.send_header("Connection", "close")
                self.close_connection = True
            self.end_headers()
            if payload and self.command != "HEAD":
                self.wfile.write(payload)
        except (BrokenPipeError, ConnectionResetError):
            self.close_connection = True

    def log_message(self, format: str, *args: Any) -> None:
        log.debug("%s %s", self.address_string(), format % args)


class SimHTTPServer(ThreadingHTTPServer):
    daemon_threads = True
    allow_reuse_address = True
    request_queue_size = 1024

    def __init__(self, address: tuple[str, int], app: App) -> None:
        self.app = app
        self.connections: set[socket.socket] = set()
        self.connections_lock = threading.Lock()
        super().__init__(address, Handler)

    def track(self, connection: socket.socket, alive: bool) -> None:
        with self.connections_lock:
            (self.connections.add if alive else self.connections.discard)(connection)

    def close_connections(self) -> None:
        """Idle keep-alive connections would otherwise keep their threads waiting after shutdown."""
        with self.connections_lock:
            connections = list(self.connections)
        for connection in connections:
            with contextlib.suppress(OSError):
                connection.shutdown(socket.SHUT_RDWR)


class SimulatorServer:
    """The simulator as an object: ``SimulatorServer(seed=1, app_url=...).start()``, ``.url``, ``.stop()``.

    Keyword arguments are ``SimConfig`` fields; or pass a ``SimConfig``. Usable as a context manager.
    """

    def __init__(self, config: SimConfig | None = None, **settings: Any) -> None:
        self.sim = Simulator(config or SimConfig(**settings))
        self.httpd: SimHTTPServer | None = None
        self.thread: threading.Thread | None = None

    @property
    def config(self) -> SimConfig:
        """The settings in force (``POST /_sim/config`` replaces them)."""
        return self.sim.config

    def start(self) -> SimulatorServer:
        self.httpd = SimHTTPServer((self.config.host, self.config.port), App(self.sim))
        self.sim.pusher = Pusher(self.sim)
        self.sim.pusher.start()
        self.thread = threading.Thread(
            target=self.httpd.serve_forever, kwargs={"poll_interval": 0.05}, name="simulator-http", daemon=True
        )
        self.thread.start()
        return self

    @property
    def port(self) -> int:
        assert self.httpd is not None, "start() first"
        return self.httpd.server_address[1]

    @property
    def url(self) -> str:
        return f"http://{self.config.host}:{self.port}"

    def stop(self) -> None:
        if self.httpd is not None:
            self.httpd.shutdown()
            self.httpd.close_connections()
            self.httpd.server_close()
        if self.thread is not None:
            self.thread.join(timeout=5)
        if self.sim.pusher is not None:
            self.sim.pusher.stop()
        self.httpd = None

    def __enter__(self) -> SimulatorServer:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    # Conveniences for tests in the same process (the same as the control endpoints).
    def configure(self, **changes: Any) -> SimConfig:
        return self.sim.reconfigure(changes)

    def stats(self) -> dict[str, Any]:
        response = control.stats(self.sim, Request("GET", "/_sim/stats", {}, {}, b""))  # type: ignore[arg-type]
        return json.loads(response.encoded())
