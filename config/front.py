"""The front door of `make run`: reads each request in full, within a deadline, before the app sees it.

granian hands a request to a Django thread as soon as its headers arrive, and the thread then waits for the body.
A caller that announces a body and never sends it (a stalled or hostile client, with credentials or without) holds
that thread; a few dozen of them hold them all. This server stands in front on ``WEB_HOST:WEB_PORT``, reads each
request's head and body on the event loop, where a waiting connection costs no thread, and only then forwards it
to granian on a Unix socket. A request that does not arrive in time is answered 408; one too large 413; one that
does not parse 400. Chunked bodies are read and forwarded with a Content-Length.

Behind a TLS proxy of your own (nginx, a load balancer), keep this one in front of granian all the same: it is
what bounds the time a request may take to arrive. Settings (docs/configuration.md): ``FRONT_READ_TIMEOUT``,
``FRONT_IDLE_TIMEOUT``, ``FRONT_MAX_BODY``, ``FRONT_UPSTREAM_TIMEOUT``.

Run: ``python -m config.front --listen 127.0.0.1:8000 --upstream var/web.sock``. It imports nothing of Django.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import logging
import os
import signal
from collections.abc import AsyncIterator
from dataclasses import dataclass
from http import HTTPStatus

import h11

log = logging.getLogger("front")

# Hop-by-hop headers (RFC 9110 7.6.1) end at each hop; h11 writes the framing of each side itself.
HOP_BY_HOP = frozenset(
    {
        b"connection",
        b"keep-alive",
        b"proxy-connection",
        b"transfer-encoding",
        b"te",
        b"trailer",
        b"upgrade",
        b"proxy-authenticate",
        b"proxy-authorization",
        b"content-length",
        b"expect",
    }
)
MAX_HEAD = 64 * 1024  # request line and headers
READ_CHUNK = 64 * 1024


@dataclass(frozen=True)
class Limits:
    read_timeout: float = 30.0  # from the first byte of a request to the last byte of its body
    idle_timeout: float = 15.0  # a kept-alive connection waiting for its next request
    max_body: int = 32 * 1024 * 1024
    upstream_timeout: float = 150.0  # the app's answer; above the Celery task limit the admin can wait on

    @classmethod
    def from_environment(cls) -> Limits:
        def number(name: str, default: float) -> float:
            value = os.environ.get(name, "")
            return float(value) if value.strip() else default

        return cls(
            read_timeout=number("FRONT_READ_TIMEOUT", cls.read_timeout),
            idle_timeout=number("FRONT_IDLE_TIMEOUT", cls.idle_timeout),
            max_body=int(number("FRONT_MAX_BODY", cls.max_body)),
            upstream_timeout=number("FRONT_UPSTREAM_TIMEOUT", cls.upstream_timeout),
        )


class Refusal(Exception):
    def __init__(self, status: int, error: str, headers: tuple[tuple[bytes, bytes], ...] = ()) -> None:
        super().__init__(error)
        self.status, self.error, self.headers = status, error, headers


@dataclass
class Arrived:
    request: h11.Request
    body: bytes


class Front:
    def __init__(self, app: Upstream, limits: Limits) -> None:
        self.limits = limits
        self.app = app
        self.open: set[asyncio.Task] = set()

    async def serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        task = asyncio.current_task()
        assert task is not None
        self.open.add(task)
        peer = writer.get_extra_info("peername")
        peer_host = peer[0] if isinstance(peer, tuple) else ""
        conn = h11.Connection(h11.SERVER, max_incomplete_event_size=MAX_HEAD)
        try:
            while True:
                try:
                    arrived = await self.arrive(conn, reader, writer)
                except Refusal as refusal:
                    await self.refuse(conn, writer, refusal)
                    return
                if arrived is None:  # the client closed, or stayed idle past FRONT_IDLE_TIMEOUT
                    return
                await self.forward(conn, writer, arrived, peer_host)
                if conn.our_state is not h11.DONE or conn.their_state is not h11.DONE:
                    return
                conn.start_next_cycle()
        except (ConnectionError, h11.LocalProtocolError):
            pass
        finally:
            self.open.discard(task)
            writer.close()
            with contextlib.suppress(Exception):
                await writer.wait_closed()

    async def arrive(
        self, conn: h11.Connection, reader: asyncio.StreamReader, writer: asyncio.StreamWriter
    ) -> Arrived | None:
        """The next request, head and body, or None when the connection ends between requests."""
        # Idle until the first byte of the next request; from then the whole request has read_timeout to arrive.
        if not conn.trailing_data[0]:
            try:
                data = await asyncio.wait_for(reader.read(READ_CHUNK), self.limits.idle_timeout)
            except TimeoutError:
                return None
            if not data:
                return None
            conn.receive_data(data)
        try:
            async with asyncio.timeout(self.limits.read_timeout):
                request = await self.next_event(conn, reader)
                if request is None:
                    return None
                assert isinstance(request, h11.Request)
                body = await self.read_body(conn, reader, writer, request)
        except TimeoutError:
            raise Refusal(408, f"the request did not arrive within {self.limits.read_timeout:g} s") from None
        return Arrived(request, body)

    async def read_body(
        self, conn: h11.Connection, reader: asyncio.StreamReader, writer: asyncio.StreamWriter, request: h11.Request
    ) -> bytes:
        declared = dict(request.headers).get(b"content-length")
        if declared is not None and int(declared) > self.limits.max_body:
            raise Refusal(413, f"the body is larger than {self.limits.max_body} bytes")
        if conn.they_are_waiting_for_100_continue:
            writer.write(conn.send(h11.InformationalResponse(status_code=100, headers=[])))
        parts: list[bytes] = []
        size = 0
        while True:
            event = await self.next_event(conn, reader)
            if event is None:
                raise ConnectionResetError("the client closed before sending its whole body")
            if isinstance(event, h11.EndOfMessage):
                return b"".join(parts)
            if isinstance(event, h11.Data):
                size += len(event.data)
                if size > self.limits.max_body:
                    raise Refusal(413, f"the body is larger than {self.limits.max_body} bytes")
                parts.append(bytes(event.data))

    @staticmethod
    async def next_event(conn: h11.Connection, reader: asyncio.StreamReader) -> h11.Event | None:
        while True:
            try:
                event = conn.next_event()
            except h11.RemoteProtocolError as exc:
                raise Refusal(exc.error_status_hint, f"bad request: {exc}") from None
            if event is h11.NEED_DATA:
                data = await reader.read(READ_CHUNK)
                conn.receive_data(data)
                if not data and conn.their_state is h11.IDLE:
                    return None
                continue
            if isinstance(event, h11.ConnectionClosed) or not isinstance(event, h11.Event):
                return None  # closed, or PAUSED (which one request at a time never meets)
            return event

    async def forward(self, conn: h11.Connection, writer: asyncio.StreamWriter, arrived: Arrived, peer: str) -> None:
        request = arrived.request
        headers = [(name, value) for name, value in request.headers if name.lower() not in HOP_BY_HOP]
        forwarded = [value for name, value in headers if name.lower() == b"x-forwarded-for"]
        headers = [(name, value) for name, value in headers if name.lower() != b"x-forwarded-for"]
        headers.append((b"x-forwarded-for", b", ".join([*forwarded, peer.encode()]) if forwarded else peer.encode()))
        headers.append((b"content-length", str(len(arrived.body)).encode()))
        outgoing = h11.Request(method=request.method, target=request.target, headers=headers)
        try:
            async with asyncio.timeout(self.limits.upstream_timeout):
                async with self.app.exchange(outgoing, arrived.body) as (head, body):
                    out = [(n, v) for n, v in head.headers if n not in HOP_BY_HOP or n == b"content-length"]
                    writer.write(conn.send(h11.Response(status_code=head.status_code, headers=out, reason=head.reason)))
                    async for chunk in body:
                        writer.write(conn.send(h11.Data(data=chunk)))
                        await writer.drain()
                    writer.write(conn.send(h11.EndOfMessage()))
                    await writer.drain()
        except UpstreamDown:
            busy = Refusal(503, "the app is starting or restarting; try again", ((b"retry-after", b"2"),))
            await self.refuse(conn, writer, busy, keep_alive=True)
        except TimeoutError:
            await self.give_up(conn, writer, Refusal(504, "the app did not answer in time"))
        except UpstreamBroken:
            await self.give_up(conn, writer, Refusal(502, "the app closed the connection without a whole answer"))

    async def give_up(self, conn: h11.Connection, writer: asyncio.StreamWriter, refusal: Refusal) -> None:
        if conn.our_state is h11.SEND_RESPONSE:
            await self.refuse(conn, writer, refusal, keep_alive=True)
        else:  # the head is out: the only honest signal left is to close without finishing the body
            conn.send_failed()

    async def refuse(
        self, conn: h11.Connection, writer: asyncio.StreamWriter, refusal: Refusal, keep_alive: bool = False
    ) -> None:
        if conn.our_state not in (h11.IDLE, h11.SEND_RESPONSE):
            return
        body = json.dumps({"error": refusal.error}).encode()
        headers = [
            (b"content-type", b"application/json"),
            (b"content-length", str(len(body)).encode()),
            *refusal.headers,
        ]
        if not keep_alive:
            headers.append((b"connection", b"close"))
        if refusal.status in (408, 413, 431) or refusal.status >= 500:
            log.info("front: answered %s: %s", refusal.status, refusal.error)
        try:
            reason = HTTPStatus(refusal.status).phrase.encode()
            writer.write(conn.send(h11.Response(status_code=refusal.status, headers=headers, reason=reason)))
            writer.write(conn.send(h11.Data(data=body)))
            writer.write(conn.send(h11.EndOfMessage()))
            await writer.drain()
        except h11.LocalProtocolError:
            pass


class UpstreamDown(Exception):
    """The app could not be reached: nothing was sent."""


class UpstreamBroken(Exception):
    """The app's connection failed after the request went out."""


class Upstream:
    """Kept-alive HTTP/1.1 connections to the app (granian) on a Unix socket or TCP, one request at a time each."""

    def __init__(self, address: str, size: int = 64) -> None:
        self.address = address
        self.idle: list[tuple[asyncio.StreamReader, asyncio.StreamWriter, h11.Connection]] = []
        self.slots = asyncio.Semaphore(size)

    async def connect(self) -> tuple[asyncio.StreamReader, asyncio.StreamWriter, h11.Connection]:
        try:
            async with asyncio.timeout(5):
                if self.address.startswith("http://"):
                    host, _, port = self.address.removeprefix("http://").rstrip("/").rpartition(":")
                    reader, writer = await asyncio.open_connection(host, int(port), limit=READ_CHUNK)
                else:
                    reader, writer = await asyncio.open_unix_connection(self.address, limit=READ_CHUNK)
        except (OSError, TimeoutError) as exc:
            raise UpstreamDown(str(exc)) from exc
        return reader, writer, h11.Connection(h11.CLIENT)

    @contextlib.asynccontextmanager
    async def exchange(
        self, request: h11.Request, body: bytes
    ) -> AsyncIterator[tuple[h11.Response, AsyncIterator[bytes]]]:
        """Send one request; yields the answer's head and an iterator over its body. A kept-alive connection the
        app had closed meanwhile is replaced once, before any answer came."""
        async with self.slots:
            reused = bool(self.idle)
            reader, writer, conn = self.idle.pop() if self.idle else await self.connect()
            try:
                try:
                    head = await self.send(reader, writer, conn, request, body)
                except (ConnectionError, h11.RemoteProtocolError, UpstreamBroken):
                    if not reused:
                        raise
                    writer.close()
                    reader, writer, conn = await self.connect()
                    head = await self.send(reader, writer, conn, request, body)
                yield head, self.body(reader, conn)
            except (ConnectionError, h11.ProtocolError) as exc:
                writer.close()
                raise UpstreamBroken(str(exc)) from exc
            except BaseException:
                writer.close()
                raise
            if conn.our_state is h11.DONE and conn.their_state is h11.DONE:
                conn.start_next_cycle()
                self.idle.append((reader, writer, conn))
            else:
                writer.close()

    @staticmethod
    async def send(
        reader: asyncio.StreamReader,
        writer: asyncio.StreamWriter,
        conn: h11.Connection,
        request: h11.Request,
        body: bytes,
    ) -> h11.Response:
        writer.write(conn.send(request) + conn.send(h11.Data(data=body)) + conn.send(h11.EndOfMessage()))
        await writer.drain()
        while True:
            event = conn.next_event()
            if event is h11.NEED_DATA:
                data = await reader.read(READ_CHUNK)
                if not data:
                    raise UpstreamBroken("the app closed the connection without answering")
                conn.receive_data(data)
            elif isinstance(event, h11.Response):
                return event
            elif isinstance(event, h11.InformationalResponse):
                continue
            else:
                raise UpstreamBroken(f"unexpected {type(event).__name__} from the app")

    @staticmethod
    async def body(reader: asyncio.StreamReader, conn: h11.Connection) -> AsyncIterator[bytes]:
        while True:
            event = conn.next_event()
            if event is h11.NEED_DATA:
                conn.receive_data(await reader.read(READ_CHUNK))  # b"" at the end: h11 tells a cut answer apart
            elif isinstance(event, h11.Data):
                yield bytes(event.data)
            elif isinstance(event, h11.EndOfMessage):
                return
            else:
                raise UpstreamBroken("the app closed the connection in the middle of its answer")

    def close(self) -> None:
        for _, writer, _ in self.idle:
            writer.close()
        self.idle.clear()


async def run(listen: str, app: str, limits: Limits, ready: asyncio.Event | None = None) -> None:
    host, _, port = listen.rpartition(":")
    upstream = Upstream(app)
    front = Front(upstream, limits)
    server = await asyncio.start_server(front.serve, host or "127.0.0.1", int(port), limit=MAX_HEAD, backlog=2048)
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for signum in (signal.SIGTERM, signal.SIGINT):
        with contextlib.suppress(NotImplementedError, RuntimeError, ValueError):
            loop.add_signal_handler(signum, stop.set)
    log.warning("front: listening on http://%s, forwarding to %s", listen, app)
    if ready is not None:
        ready.set()
    async with server:
        await stop.wait()
        server.close()
        # Requests already being answered get a few seconds to finish; idle kept-alive connections just close.
        if front.open:
            await asyncio.wait(list(front.open), timeout=10)
        for task in list(front.open):
            task.cancel()
    upstream.close()


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n", 1)[0])
    parser.add_argument("--listen", default="127.0.0.1:8000", help="host:port to answer on")
    parser.add_argument("--upstream", required=True, help="the app: a Unix socket path, or http://host:port")
    args = parser.parse_args(argv)
    logging.basicConfig(level=os.environ.get("LOG_LEVEL", "INFO"), format="[%(levelname)s] %(message)s")
    asyncio.run(run(args.listen, args.upstream, Limits.from_environment()))


if __name__ == "__main__":
    main()
