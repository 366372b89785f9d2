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
from dataclasses import dataclass
from http import HTTPStatus

import h11
import httpx

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
    def __init__(self, transport: httpx.AsyncBaseTransport, base_url: str, limits: Limits) -> None:
        self.limits = limits
        self.client = httpx.AsyncClient(
            transport=transport,
            base_url=base_url,
            timeout=httpx.Timeout(limits.upstream_timeout, connect=5.0),
            follow_redirects=False,
        )
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
        outgoing = self.client.build_request(
            request.method.decode(), request.target.decode("latin-1"), headers=headers, content=arrived.body
        )
        try:
            response = await self.client.send(outgoing, stream=True)
        except httpx.TimeoutException:
            return await self.refuse(conn, writer, Refusal(504, "the app did not answer in time"), keep_alive=True)
        except httpx.TransportError:
            busy = Refusal(503, "the app is starting or restarting; try again", ((b"retry-after", b"2"),))
            return await self.refuse(conn, writer, busy, keep_alive=True)
        try:
            out = [(name.encode(), value.encode("latin-1")) for name, value in response.headers.multi_items()]
            out = [(name, value) for name, value in out if name.lower() not in HOP_BY_HOP or name == b"content-length"]
            head = h11.Response(status_code=response.status_code, headers=out, reason=response.reason_phrase.encode())
            writer.write(conn.send(head))
            async for chunk in response.aiter_raw():
                writer.write(conn.send(h11.Data(data=chunk)))
                await writer.drain()
            writer.write(conn.send(h11.EndOfMessage()))
            await writer.drain()
        except httpx.HTTPError:
            # The head is out: the only honest signal left is to close without finishing the body.
            conn.send_failed()
        finally:
            await response.aclose()

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


def upstream(address: str) -> tuple[httpx.AsyncBaseTransport, str]:
    """The app's transport and base URL: ``http://host:port``, or else the path of a Unix socket."""
    limits = httpx.Limits(max_connections=64, max_keepalive_connections=32)
    if address.startswith("http://"):
        return httpx.AsyncHTTPTransport(limits=limits), address
    return httpx.AsyncHTTPTransport(uds=address, limits=limits), "http://app"


async def run(listen: str, app: str, limits: Limits, ready: asyncio.Event | None = None) -> None:
    host, _, port = listen.rpartition(":")
    front = Front(*upstream(app), limits)
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
    await front.client.aclose()


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n", 1)[0])
    parser.add_argument("--listen", default="127.0.0.1:8000", help="host:port to answer on")
    parser.add_argument("--upstream", required=True, help="the app: a Unix socket path, or http://host:port")
    args = parser.parse_args(argv)
    logging.basicConfig(level=os.environ.get("LOG_LEVEL", "INFO"), format="[%(levelname)s] %(message)s")
    logging.getLogger("httpx").setLevel(logging.WARNING)  # one line per forwarded request is granian's access log
    asyncio.run(run(args.listen, args.upstream, Limits.from_environment()))


if __name__ == "__main__":
    main()
