from __future__ import annotations

import base64
import hashlib
import hmac
import json
import os
import signal
import time
from pathlib import Path
from typing import Any

import pytest
from django.db import connection
from django.test.utils import override_settings
from hypothesis import settings as hypothesis_settings
from rest_framework.test import APIClient

from receipts.actions import messages, process
from receipts.models import ApiClient, Message

# A suite started in the background by a shell without job control (`make test &`, a CI runner) inherits SIGINT
# ignored, and so would every server it starts (an ignored signal stays ignored across exec): their Ctrl-C tests would
# wait in vain. A handled signal is reset to the default across exec, so the servers get Ctrl-C as from a terminal.
if signal.getsignal(signal.SIGINT) is signal.SIG_IGN:
    signal.signal(signal.SIGINT, signal.default_int_handler)

SAMPLES = Path(__file__).parent / "samples"

# Property-based tests: a quick look in `make test`, a longer one in CI (.ci/run sets HYPOTHESIS_PROFILE=ci).
hypothesis_settings.register_profile("dev", max_examples=30)
hypothesis_settings.register_profile("ci", max_examples=150)
hypothesis_settings.load_profile(os.environ.get("HYPOTHESIS_PROFILE", "dev"))

BASIC = "receipts:s3cret-pass"
GENESYS_CLOUD_SECRET = "gc-secret"
GENESYS_SMS_TOKEN = "sms-token"
WEBEX_SECRET = "webex-secret"
GENERIC_SECRET = "whsec_" + base64.b64encode(b"generic-secret-key-0123456789").decode()

WEBHOOK_PATHS = {
    "genesys_cloud": "/webhooks/genesys-cloud/",
    "genesys_sms": "/webhooks/genesys-sms/",
    "webex_connect": "/webhooks/webex-connect/",
    "generic": "/webhooks/generic/",
}


def sample(relative: str) -> bytes:
    return (SAMPLES / relative).read_bytes()


def sample_json(relative: str) -> dict[str, Any]:
    return json.loads(sample(relative))


@pytest.fixture(autouse=True, scope="session")
def fast_password_hashing() -> Any:
    """MD5 in the tests only: the production hasher costs a third of a second a hash, by design, and every
    admin_client test made a superuser (33 of them were 60% of the admin tests' setup). Production keeps Django's
    default hashers; test_checks_and_logging still checks a password end to end."""
    with override_settings(PASSWORD_HASHERS=["django.contrib.auth.hashers.MD5PasswordHasher"]):
        yield


@pytest.fixture(autouse=True)
def webhook_secrets(settings: Any) -> None:
    settings.DEBUG = False
    settings.WEBHOOK_BASIC_AUTH = [BASIC]
    settings.WEBHOOK_SECRET_GENESYS_CLOUD = [GENESYS_CLOUD_SECRET]
    settings.WEBHOOK_SECRET_GENESYS_SMS = [GENESYS_SMS_TOKEN]
    settings.WEBHOOK_SECRET_WEBEX_CONNECT = [WEBEX_SECRET]
    settings.WEBHOOK_SECRET_GENERIC = [GENERIC_SECRET]


def basic_header(credentials: str = BASIC) -> str:
    return "Basic " + base64.b64encode(credentials.encode()).decode()


def hub_signature(body: bytes, secret: str, algorithm: str = "sha256") -> str:
    return f"{algorithm}=" + hmac.new(secret.encode(), body, getattr(hashlib, algorithm)).hexdigest()


def standard_webhooks_headers(body: bytes, secret: str = GENERIC_SECRET, msg_id: str = "msg_1") -> dict[str, str]:
    timestamp = str(int(time.time()))
    encoded = secret.removeprefix("whsec_")
    key = base64.b64decode(encoded + "=" * (-len(encoded) % 4))  # padded or not, as the reference library takes it
    signature = base64.b64encode(hmac.new(key, f"{msg_id}.{timestamp}.".encode() + body, hashlib.sha256).digest())
    return {"webhook-id": msg_id, "webhook-timestamp": timestamp, "webhook-signature": f"v1,{signature.decode()}"}


def post_webhook(
    client: Any, provider: str, body: bytes | str, content_type: str = "application/json", **headers: str
) -> Any:
    """POST as a provider would, authenticated with Basic unless headers say otherwise."""
    if isinstance(body, str):
        body = body.encode()
    headers.setdefault("Authorization", basic_header())
    return client.generic("POST", WEBHOOK_PATHS[provider], body, content_type=content_type, headers=headers)


def register(**fields: Any) -> Message:
    data = {"channel": "sms", "provider": "generic", "to": "+15551234567", **fields}
    message, _ = messages.register_message(data)
    return message


def drain() -> int:
    """Process the inbox until nothing is due, as the worker would."""
    total = 0
    while claimed := process.process_due():
        total += claimed
    return total


@pytest.fixture
def api() -> APIClient:
    _, token = ApiClient.issue("test-client", ["read", "write"])
    client = APIClient()
    client.credentials(HTTP_AUTHORIZATION=f"Token {token}")
    return client


def is_postgres() -> bool:
    return connection.vendor == "postgresql"
