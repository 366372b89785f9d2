"""The embedded broker never hands a worker a message that is still being written."""

from __future__ import annotations

import os
from pathlib import Path

import pytest
from kombu import Connection
from kombu.transport.virtual import Empty

from config.broker import Channel


@pytest.fixture
def channel(tmp_path: Path) -> Channel:
    connection = Connection(
        "filesystem://",
        transport_options={"data_folder_in": str(tmp_path), "data_folder_out": str(tmp_path), "store_processed": False},
    )
    chan = connection.default_channel
    assert isinstance(chan, Channel)  # filesystem:// resolves to the atomic variant (config/celery.py)
    return chan


def test_a_message_is_complete_when_it_appears(channel: Channel, tmp_path: Path) -> None:
    channel._put("receipts", {"body": "x" * 10_000})

    files = os.listdir(tmp_path)
    assert len(files) == 1 and files[0].endswith(".receipts.msg")
    assert channel._get("receipts") == {"body": "x" * 10_000}


def test_a_message_still_being_written_is_not_consumed(channel: Channel, tmp_path: Path) -> None:
    # What a producer leaves while writing: kombu's own transport leaves an empty "<queue>.msg" here.
    (tmp_path / ".123_abc.receipts.msg.partial").write_bytes(b"")

    with pytest.raises(Empty):
        channel._get("receipts")
    assert (tmp_path / ".123_abc.receipts.msg.partial").exists()


def test_a_worker_asked_to_stop_stops_waiting_for_messages(channel: Channel, monkeypatch: pytest.MonkeyPatch) -> None:
    """A worker's wait on this transport ends as soon as the worker is asked to stop (kombu's went on for its whole
    timeout, and Celery waits once more after the stop): with no timeout at all, the wait returns at once."""
    import threading

    from celery.worker import state

    connection = channel.connection.client
    channel.basic_consume("receipts", no_ack=True, callback=lambda message: None, consumer_tag="t")
    monkeypatch.setattr(state, "should_stop", 0)  # what the worker's TERM handler sets (a warm stop)
    outcome: list[BaseException] = []

    def wait() -> None:
        try:
            connection.drain_events(timeout=None)
        except BaseException as exc:
            outcome.append(exc)

    waiter = threading.Thread(target=wait, daemon=True)
    waiter.start()
    waiter.join(timeout=10)
    assert not waiter.is_alive(), "still waiting for a message after the stop was asked"
    assert isinstance(outcome[0], TimeoutError)
