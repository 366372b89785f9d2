"""A provider's send endpoint on 127.0.0.1, and a sender that talks to it: the network edge of the retry tests.

``HttpSender`` is a provider sender as ``receipts.providers.senders`` hands it to the retry policy: it takes an unsaved
message, makes one HTTP call, and returns the provider's id or raises SendError. The end-to-end tests name it in
the ``SENDERS`` setting (it then reads the URL from ``E2E_SENDER_URL``).
"""

from __future__ import annotations

import json
import os
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import httpx

from receipts.models import Message
from receipts.providers.base import SendError


class LocalProvider:
    """Records every send and answers 202 {"id": "new-<n>"}, or the status codes queued in ``answers``."""

    def __init__(self) -> None:
        self.requests: list[dict[str, Any]] = []
        self.answers: list[int] = []
        outer = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
                outer.requests.append(body)
                status = outer.answers.pop(0) if outer.answers else 202
                answer = json.dumps({"id": f"new-{len(outer.requests)}"} if status < 300 else {"error": "no"})
                self.send_response(status)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(answer)))
                self.end_headers()
                self.wfile.write(answer.encode())

            def log_message(self, *args: Any) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}/send"
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self.thread.start()

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()


class HttpSender:
    def __init__(self, url: str | None = None) -> None:
        self.url = url or os.environ["E2E_SENDER_URL"]

    def send(self, message: Message) -> str:
        payload = {"to": message.to, "text": message.content["text"], "replaces": message.replaces_id}
        try:
            response = httpx.post(self.url, json=payload, timeout=5)
        except httpx.TransportError as exc:
            raise SendError(str(exc), transient=True) from exc
        if response.status_code == 429 or response.status_code >= 500:
            raise SendError(f"HTTP {response.status_code}", transient=True)
        if response.status_code >= 400:
            raise SendError(f"HTTP {response.status_code}")
        return response.json()["id"]
