from __future__ import annotations

import base64
import hashlib
import hmac
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from tests.apprunner import BASIC_PASSWORD, BASIC_USER, AppEnv

pytestmark = pytest.mark.e2e

WEBHOOK_PATHS = {
    "genesys_cloud": "/webhooks/genesys-cloud/",
    "genesys_sms": "/webhooks/genesys-sms/",
    "webex_connect": "/webhooks/webex-connect/",
    "generic": "/webhooks/generic/",
}


@pytest.fixture(scope="module")
def app_env(tmp_path_factory: pytest.TempPathFactory) -> Iterator[AppEnv]:
    env = AppEnv(Path(tmp_path_factory.mktemp("app"))).create()
    try:
        yield env
    finally:
        env.destroy()


def signed_headers(env: AppEnv, provider: str, body: bytes) -> dict[str, str]:
    """Each provider's own scheme, with the secrets AppEnv configures."""
    secrets = env.base_env
    if provider == "genesys_cloud":
        digest = hmac.new(secrets["WEBHOOK_SECRET_GENESYS_CLOUD"].encode(), body, hashlib.sha256).hexdigest()
        return {"Content-Type": "application/json", "X-Hub-Signature-256": f"sha256={digest}"}
    if provider == "webex_connect":
        digest = hmac.new(secrets["WEBHOOK_SECRET_WEBEX_CONNECT"].encode(), body, hashlib.sha512).hexdigest()
        return {"Content-Type": "application/json", "X-Hub-Signature": f"sha512={digest}"}
    if provider == "genesys_sms":
        return {
            "Content-Type": "application/x-www-form-urlencoded",
            "X-Webhook-Token": secrets["WEBHOOK_SECRET_GENESYS_SMS"],
        }
    key = base64.b64decode(secrets["WEBHOOK_SECRET_GENERIC"].removeprefix("whsec_"))
    msg_id, stamp = f"msg_{time.time_ns()}", str(int(time.time()))
    signature = base64.b64encode(hmac.new(key, f"{msg_id}.{stamp}.".encode() + body, hashlib.sha256).digest())
    return {
        "Content-Type": "application/json",
        "webhook-id": msg_id,
        "webhook-timestamp": stamp,
        "webhook-signature": f"v1,{signature.decode()}",
    }


def post_receipt(env: AppEnv, http: httpx.Client, base_url: str, provider: str, body: bytes) -> httpx.Response:
    return http.post(base_url + WEBHOOK_PATHS[provider], content=body, headers=signed_headers(env, provider, body))


def basic_auth() -> tuple[str, str]:
    return BASIC_USER, BASIC_PASSWORD
