"""Campaign tests send through the provider simulator (a real HTTP server) with the app's real senders."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest

from receipts.providers.limits import RedisStore, SqliteStore, default_store
from simulator import SimulatorServer

SHARED_PREFIXES = ("limits:send:", "limits:dispatch:", "campaign-sends:")


def forget_shared_state() -> None:
    """The send buckets, breakers and failure counts live outside the database (Redis or the SQLite file), so a
    test starts them afresh."""
    store = default_store()
    if isinstance(store, RedisStore):
        for prefix in SHARED_PREFIXES:
            for key in store.client.scan_iter(f"{prefix}*"):
                store.client.delete(key)
    elif isinstance(store, SqliteStore):
        with store._tx() as db:
            for prefix in SHARED_PREFIXES:
                db.execute("DELETE FROM state WHERE key LIKE ?", (f"{prefix}%",))


@pytest.fixture
def providers(settings: Any) -> Iterator[SimulatorServer]:
    """The simulator as all three providers, with no send limits of ours unless a test sets them."""
    server = SimulatorServer(seed=5, push=False).start()
    settings.GENESYS_SMS_MT_URL = f"{server.url}/httpapi/receiver"
    settings.GENESYS_SMS_LOGIN, settings.GENESYS_SMS_PASSWORD = "login", "password"
    settings.GENESYS_SMS_SENDER = "+15559876543"
    settings.WEBEX_CONNECT_URL, settings.WEBEX_CONNECT_SERVICE_KEY = server.url, "key"
    settings.WEBEX_CONNECT_SENDER_ID, settings.WEBEX_CONNECT_EMAIL_FROM = "ACME", "news@acme.example"
    settings.GENESYS_CLOUD_BASE_URL = settings.GENESYS_CLOUD_LOGIN_URL = server.url
    settings.GENESYS_CLOUD_CLIENT_ID, settings.GENESYS_CLOUD_CLIENT_SECRET = "client", "secret"
    settings.GENESYS_CLOUD_FROM_ADDRESS = "+15550001000"
    settings.SENDERS = {}
    settings.DEFAULT_PHONE_REGION = "US"
    settings.SEND_RATE_GENESYS_SMS = settings.SEND_RATE_WEBEX_CONNECT = settings.SEND_RATE_GENESYS_CLOUD = 0
    settings.SEND_RATE_PER_SENDER = 0
    forget_shared_state()
    try:
        yield server
    finally:
        server.stop()
        forget_shared_state()
