"""Every receipt the simulator can push, for every outcome and reason code in its tables, is accepted by the app's
own parser for that provider, authenticates with the app's check, and means what the outcome says."""

from __future__ import annotations

import hashlib
import hmac
from urllib.parse import parse_qsl

import pytest

from receipts.providers.base import hmac_signature_ok
from receipts.providers.registry import PROVIDERS
from simulator import SimConfig, genesys_cloud, genesys_sms, webex_connect
from simulator.core import Simulator
from simulator.model import reason_table

SECRETS = {"genesys_cloud": "gc-secret", "genesys_sms": "sms-token", "webex_connect": "webex-secret"}
RENDER = {
    "genesys_cloud": genesys_cloud.receipt_push,
    "genesys_sms": genesys_sms.receipt_push,
    "webex_connect": webex_connect.receipt_push,
}
CONTENT_TYPE = {"genesys_sms": "application/x-www-form-urlencoded"}
# What the app makes of each outcome's final receipt.
FINAL_STATUSES = {
    "delivered": {"delivered"},
    "failed": {"failed", "rejected", "bounced"},
    "expired": {"expired"},
}


def cases() -> list[tuple[str, str, str, str]]:
    out = []
    for provider, channel in [("genesys_cloud", "sms"), ("genesys_sms", "sms"), ("webex_connect", "sms"),
                              ("webex_connect", "email")]:  # fmt: skip
        out.append((provider, channel, "delivered", ""))
        for outcome in ("failed", "expired"):
            out += [(provider, channel, outcome, code) for code, _ in reason_table(provider, channel, outcome)]
    return out


@pytest.fixture(scope="module")
def sim() -> Simulator:
    return Simulator(SimConfig(seed=1, secrets=SECRETS, app_url="http://127.0.0.1:1"))


@pytest.mark.parametrize(("provider", "channel", "outcome", "reason"), cases())
def test_pushed_receipt_parses_and_means_its_outcome(
    sim: Simulator, provider: str, channel: str, outcome: str, reason: str
) -> None:
    to = "someone@example.com" if channel == "email" else "+15551234567"
    message = sim.create_message(
        provider, channel, to, "+15559876543", "Hi", outcome=outcome, reason=reason, extra={"app_id": "app-1"}
    )
    parser = PROVIDERS[provider]

    parsed = {}
    for event in ("sent", "final"):
        url, body, headers, _ = RENDER[provider](message, event, sim.config)
        assert url.startswith("http://127.0.0.1:1/webhooks/")
        receipts = parser.parse(body, CONTENT_TYPE.get(provider, "application/json"))
        assert len(receipts) == 1
        parsed[event] = receipts[0]
        assert parsed[event].provider_message_id == message.id
        assert authenticated(provider, body, headers)

    assert parsed["sent"].outcome.status == "sent"
    final = parsed["final"].outcome
    assert not final.unmapped, f"{provider} {reason} is not in the app's code table"
    if provider == "webex_connect" and channel == "email" and outcome == "expired":
        assert (final.status, final.soft_bounce) == ("deferred", True)  # an email cannot expire: a soft bounce
    else:
        assert final.status in FINAL_STATUSES[outcome]
    if outcome == "failed":
        assert final.category


def authenticated(provider: str, body: bytes, headers: dict[str, str]) -> bool:
    secret = SECRETS[provider]
    if provider == "genesys_cloud":
        return hmac_signature_ok(headers["X-Hub-Signature-256"], body, [secret])
    if provider == "webex_connect":
        # Webex Connect's documented form: the bare hex HMAC-SHA256 (and the app reads it).
        bare = hmac.new(secret.encode(), body, hashlib.sha256).hexdigest()
        return headers["X-Hub-Signature"] == bare and hmac_signature_ok(bare, body, [secret], bare=True)
    return headers["X-Webhook-Token"] == secret


def test_sms_receipts_echo_app_id_and_conversation_id(sim: Simulator) -> None:
    message = sim.create_message(
        "genesys_sms", "sms", "15551234567", "5", "Hi", message_id="m-1",
        extra={"app_id": "reminders", "conversation_id": "c-001"}, outcome="delivered",
    )  # fmt: skip

    _, body, _, _ = genesys_sms.receipt_push(message, "final", sim.config)

    assert dict(parse_qsl(body.decode())) == {
        "type": "receipt",
        "message_id": "m-1",
        "message_state": "2",
        "result_code": "0",
        "app_id": "reminders",
        "conversation_id": "c-001",
    }


def test_webex_receipt_goes_to_the_notifyurl_of_its_send(sim: Simulator) -> None:
    message = sim.create_message(
        "webex_connect", "sms", "15551234567", "ACME", "Hi", extra={"notifyurl": "http://127.0.0.1:2/hook"}
    )

    url, _, _, _ = webex_connect.receipt_push(message, "sent", sim.config)

    assert url == "http://127.0.0.1:2/hook"


def test_without_a_secret_the_push_uses_basic_auth() -> None:
    sim = Simulator(SimConfig(basic_auth="user:pass"))
    message = sim.create_message("genesys_cloud", "sms", "+15551234567", "+15559876543", "Hi")

    _, _, headers, _ = genesys_cloud.receipt_push(message, "sent", sim.config)

    assert headers["Authorization"] == "Basic dXNlcjpwYXNz"
    assert "X-Hub-Signature-256" not in headers
