"""The broker is not the webhook's problem: with it down the kick logs and pauses and the post still answers 200.
And a kick publishes a drain only while none is waiting."""

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
from receipts import kicks, webhooks
from receipts.kicks import BROKER_DOWN_PAUSE, kick_now, request_drain
from receipts.models import InboxState, ReceiptEvent
from tests.apprunner import READY_TIMEOUT
from tests.conftest import post_webhook
from tests.receipts.webhooks.cases import BY_PROVIDER

pytestmark = pytest.mark.django_db


def test_a_kick_with_the_broker_down_logs_and_pauses_instead_of_raising(
    monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    failing = mock.Mock(side_effect=OperationalError("Error 111 connecting to 127.0.0.1:1. Connection refused."))
    monkeypatch.setattr(celery_app, "send_task", failing)
    kicks.drain_started()  # no drain from an earlier test is waiting

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
        deadline = time.monotonic() + READY_TIMEOUT
        while not any("broker unreachable" in r.getMessage() for r in caplog.records) and time.monotonic() < deadline:
            time.sleep(0.05)
    assert any("broker unreachable" in r.getMessage() for r in caplog.records)
    # Providers time their webhooks out after a few seconds and then retry; the kick must not eat that budget
    # (a publish to a dead Redis takes about 6 s of connect retries). A bound on blocking, not a benchmark.
    assert took < 2.0, f"webhook took {took:.1f} s with the broker down"


def test_a_drain_is_published_once_while_one_waits_for_a_worker(monkeypatch: pytest.MonkeyPatch) -> None:
    """Webhooks arriving four times a second must not pile drains up in the queue: one waits, the rest is
    picked up by it. Once a drain has started, the next arrival asks for another."""
    kicks.drain_started()
    published = mock.Mock(name="send_task")
    monkeypatch.setattr(celery_app, "send_task", published)

    for _ in range(20):
        kick_now()
    assert published.call_count == 1

    kicks.drain_started()  # what the drain task does first
    kick_now()
    kick_now()
    assert published.call_count == 2
    assert {c.args[0] for c in published.call_args_list} == {"receipts.drain_inbox"}


def test_a_failed_publish_leaves_no_pending_drain_behind(monkeypatch: pytest.MonkeyPatch) -> None:
    kicks.drain_started()
    monkeypatch.setattr(celery_app, "send_task", mock.Mock(side_effect=OperationalError("down")))
    assert kick_now() == BROKER_DOWN_PAUSE
    published = mock.Mock(name="send_task")
    monkeypatch.setattr(celery_app, "send_task", published)
    kick_now()
    assert published.call_count == 1


def test_the_relay_and_the_polls_have_queues_of_their_own(settings: Any) -> None:
    def queue(task: str) -> str:
        return celery_app.amqp.router.route({}, task, args=(), kwargs={})["queue"].name

    inbox = settings.CELERY_QUEUE
    assert queue("receipts.drain_inbox") == queue("receipts.sweep_inbox") == inbox
    assert queue("crm_sync.relay_outbox") == f"{inbox}.crm"
    assert queue("receipts.poll_high_priority") == queue("receipts.poll_messages") == f"{inbox}.poll"
