"""The broker is not the webhook's problem: with it down the kick logs and pauses and the post still answers 200."""

from __future__ import annotations

import logging
import runpy
import socket
import time
from collections.abc import Iterator
from typing import Any
from unittest import mock

import pytest
from kombu.exceptions import OperationalError

from config.celery import app as celery_app
from receipts import webhooks
from receipts.kicks import BROKER_DOWN_PAUSE, kick_now, request_drain
from receipts.models import InboxState, ReceiptEvent
from tests.conftest import post_webhook
from tests.receipts.webhooks.cases import BY_PROVIDER

pytestmark = pytest.mark.django_db


def test_a_kick_with_the_broker_down_logs_and_pauses_instead_of_raising(
    monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    failing = mock.Mock(side_effect=OperationalError("Error 111 connecting to 127.0.0.1:1. Connection refused."))
    monkeypatch.setattr(celery_app, "send_task", failing)

    with caplog.at_level(logging.WARNING, logger="receipts.kicks"):
        pause = kick_now()

    assert pause == BROKER_DOWN_PAUSE
    failing.assert_called_once()
    warnings = [r for r in caplog.records if r.name == "receipts.kicks" and r.levelno == logging.WARNING]
    assert len(warnings) == 1
    assert "broker unreachable" in warnings[0].getMessage()


def closed_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture
def redis_broker_on_a_closed_port(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    """The project's Celery app pointed at a Redis URL nobody listens on, with the settings module's own
    transport options for Redis (the settings are evaluated again with that CELERY_BROKER_URL)."""
    import config.settings as settings_module
    from config.celery import app

    url = f"redis://127.0.0.1:{closed_port()}/0"
    monkeypatch.setenv("CELERY_BROKER_URL", url)
    production = runpy.run_path(settings_module.__file__)
    saved = (app.conf.broker_url, app.conf.broker_transport_options)
    monkeypatch.setattr(webhooks, "request_drain", request_drain)  # the real kicker, not the recorder

    def reset_pools() -> None:
        if app._pool is not None:
            app._pool.force_close_all()
        app._pool = None
        app.amqp._producer_pool = None

    app.conf.broker_url = production["CELERY_BROKER_URL"]
    app.conf.broker_transport_options = production["CELERY_BROKER_TRANSPORT_OPTIONS"]
    reset_pools()
    try:
        yield
    finally:
        app.conf.broker_url, app.conf.broker_transport_options = saved
        reset_pools()


@pytest.mark.usefixtures("redis_broker_on_a_closed_port")
def test_broker_on_a_closed_port_still_answers_200_quickly(client: Any, caplog: pytest.LogCaptureFixture) -> None:
    case = BY_PROVIDER["generic"]

    started = time.monotonic()
    with caplog.at_level(logging.WARNING, logger="receipts.kicks"):
        response = post_webhook(client, case.provider, case.body)
        took = time.monotonic() - started

        assert response.status_code == 200
        assert ReceiptEvent.objects.get().state == InboxState.RECEIVED
        # The kicker thread finds the broker down after the answer has gone, and says so.
        deadline = time.monotonic() + 30
        while not any("broker unreachable" in r.getMessage() for r in caplog.records) and time.monotonic() < deadline:
            time.sleep(0.05)
    assert any("broker unreachable" in r.getMessage() for r in caplog.records)
    # Providers time their webhooks out after a few seconds and then retry; the kick must not eat that budget
    # (a publish to a dead Redis takes about 6 s of connect retries). A bound on blocking, not a benchmark.
    assert took < 2.0, f"webhook took {took:.1f} s with the broker down"
