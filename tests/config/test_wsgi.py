"""The WSGI entry point the web server loads: webhooks take the short road, everything else all of Django."""

from __future__ import annotations

import io
from typing import Any

import pytest

from config.wsgi import application
from receipts.models import ReceiptEvent
from tests.conftest import basic_header, sample

pytestmark = pytest.mark.django_db(transaction=True)  # the handler's request signals close the connection


def call(method: str, path: str, body: bytes = b"", host: str = "127.0.0.1", **headers: str) -> tuple[str, dict]:
    environ: dict[str, Any] = {
        "REQUEST_METHOD": method,
        "PATH_INFO": path,
        "QUERY_STRING": "",
        "SERVER_NAME": "127.0.0.1",
        "SERVER_PORT": "8000",
        "SERVER_PROTOCOL": "HTTP/1.1",
        "REMOTE_ADDR": "127.0.0.1",
        "HTTP_HOST": host,
        "CONTENT_TYPE": "application/json",
        "CONTENT_LENGTH": str(len(body)),
        "wsgi.url_scheme": "http",
        "wsgi.input": io.BytesIO(body),
        "wsgi.errors": io.StringIO(),
    }
    environ |= {f"HTTP_{name.upper().replace('-', '_')}": value for name, value in headers.items()}
    answer: dict[str, Any] = {}

    def start_response(status: str, response_headers: list[tuple[str, str]], exc_info: Any = None) -> None:
        answer["status"], answer["headers"] = status, dict(response_headers)

    b"".join(application(environ, start_response))
    return answer["status"], answer["headers"]


def test_a_webhook_is_stored_without_passing_through_the_browser_middleware() -> None:
    status, headers = call("POST", "/webhooks/generic/", sample("generic/delivered.json"), authorization=basic_header())

    assert status == "200 OK"
    assert ReceiptEvent.objects.count() == 1
    # XFrameOptionsMiddleware and SecurityMiddleware set these on every response that passes through them.
    assert "X-Frame-Options" not in headers
    assert "X-Content-Type-Options" not in headers


def test_every_other_url_gets_the_whole_middleware_stack() -> None:
    status, headers = call("GET", "/healthz")

    assert status == "200 OK"
    assert headers["X-Frame-Options"] == "DENY"
    assert headers["X-Content-Type-Options"] == "nosniff"


def test_a_webhook_for_a_host_not_in_allowed_hosts_is_refused_and_not_stored(settings: Any) -> None:
    settings.ALLOWED_HOSTS = ["receipts.example.com"]

    status, _ = call("POST", "/webhooks/generic/", sample("generic/delivered.json"), authorization=basic_header())

    assert status.startswith("400")
    assert ReceiptEvent.objects.count() == 0


def test_an_unknown_webhook_url_answers_404() -> None:
    status, _ = call("POST", "/webhooks/nobody/", b"{}", authorization=basic_header())

    assert status.startswith("404")
