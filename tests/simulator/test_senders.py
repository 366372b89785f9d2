"""The built-in provider senders (retries, the demo campaign) against the simulator's send endpoints."""

from __future__ import annotations

import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import httpx
import pytest

from receipts.models import Message
from receipts.providers.base import SendError
from receipts.providers.genesys_sms import MT_RESULT, REFUSED, THROTTLED, UNKNOWN
from receipts.providers.senders import configured_sender, sender_for
from simulator import SimulatorServer


@pytest.fixture
def configured(settings: Any, sim: SimulatorServer) -> SimulatorServer:
    settings.GENESYS_CLOUD_BASE_URL = settings.GENESYS_CLOUD_LOGIN_URL = sim.url
    settings.GENESYS_CLOUD_CLIENT_ID, settings.GENESYS_CLOUD_CLIENT_SECRET = "client", "secret"
    settings.GENESYS_CLOUD_FROM_ADDRESS = "+15559876543"
    settings.GENESYS_SMS_MT_URL = f"{sim.url}/httpapi/receiver"
    settings.GENESYS_SMS_LOGIN, settings.GENESYS_SMS_PASSWORD = "login", "password"
    settings.GENESYS_SMS_SENDER = "+15559876543"
    settings.WEBEX_CONNECT_URL, settings.WEBEX_CONNECT_SERVICE_KEY = sim.url, "key"
    settings.WEBEX_CONNECT_SENDER_ID, settings.WEBEX_CONNECT_EMAIL_FROM = "DEMO", "demo@example.com"
    settings.SENDERS = {}
    return sim


@pytest.mark.django_db
@pytest.mark.parametrize(
    ("provider", "channel", "to"),
    [
        ("genesys_cloud", "sms", "+15551234567"),
        ("genesys_sms", "sms", "+15551234567"),
        ("webex_connect", "sms", "+15551234567"),
        ("webex_connect", "email", "someone@example.com"),
    ],
)
def test_each_sender_sends_and_returns_the_id_its_receipts_will_carry(
    configured: SimulatorServer, provider: str, channel: str, to: str
) -> None:
    message = Message(provider=provider, channel=channel, to=to, content={"text": "hello", "subject": "hi"})

    sender = sender_for(provider)
    assert sender is not None
    provider_message_id = sender.send(message)

    known = httpx.get(f"{configured.url}/_sim/messages/{provider_message_id}")
    assert known.status_code == 200, known.text
    assert [m["provider"] for m in known.json()["messages"]] == [provider]


def test_without_credentials_there_is_no_sender(settings: Any) -> None:
    settings.SENDERS = {}
    settings.GENESYS_SMS_LOGIN = ""
    assert configured_sender("genesys_sms") is None
    assert sender_for("genesys_sms") is None


def test_a_refused_send_is_a_send_error_that_says_whether_to_try_again(configured: SimulatorServer) -> None:
    httpx.post(f"{configured.url}/_sim/config", json={"rate_5xx": 1.0})
    message = Message(provider="genesys_sms", channel="sms", to="+15551234567", content={"text": "hello"})
    with pytest.raises(SendError) as refused:
        sender_for("genesys_sms").send(message)  # type: ignore[union-attr]
    assert refused.value.transient is True

    with pytest.raises(SendError, match="no text"):
        sender_for("genesys_sms").send(Message(provider="genesys_sms", channel="sms", to="+1555", content={}))  # type: ignore[union-attr]


def test_genesys_cloud_refuses_an_email_from_the_sms_number(configured: SimulatorServer) -> None:
    """What the app must never send: agentless email's fromAddress.email must be an email address."""
    http = httpx.Client(base_url=configured.url, timeout=10)
    token = http.post("/oauth/token", auth=("c", "s"), data={"grant_type": "client_credentials"}).json()
    request = {
        "senderType": "Outbound",
        "fromAddress": {"email": "+15559876543"},
        "toAddresses": [{"email": "alice@example.com"}],
        "subject": "Hi",
        "textBody": "Hello",
    }

    refused = http.post(
        "/api/v2/conversations/emails/agentless",
        json=request,
        headers={"Authorization": f"Bearer {token['access_token']}"},
    )

    assert refused.status_code == 400
    assert "fromAddress" in refused.json()["message"]


@pytest.mark.django_db
def test_genesys_cloud_email_goes_out_from_the_email_from_address_and_sms_from_the_number(
    configured: SimulatorServer, settings: Any
) -> None:
    settings.GENESYS_CLOUD_EMAIL_FROM, settings.GENESYS_CLOUD_EMAIL_FROM_NAME = "news@acme.example", "Acme News"
    sender = sender_for("genesys_cloud")
    assert sender is not None

    email = sender.send(Message(provider="genesys_cloud", channel="email", to="ann@example.com", content=HELLO))
    sms = sender.send(Message(provider="genesys_cloud", channel="sms", to="+15551234567", content=HELLO))

    [sent_email] = httpx.get(f"{configured.url}/_sim/messages/{email}").json()["messages"]
    [sent_sms] = httpx.get(f"{configured.url}/_sim/messages/{sms}").json()["messages"]
    assert (sent_email["channel"], sent_email["from"]) == ("email", "news@acme.example")
    assert (sent_sms["channel"], sent_sms["from"]) == ("sms", "+15559876543")  # GENESYS_CLOUD_FROM_ADDRESS


def test_genesys_cloud_email_without_an_email_from_address_is_refused_before_anything_leaves(
    configured: SimulatorServer, settings: Any
) -> None:
    settings.GENESYS_CLOUD_EMAIL_FROM = ""
    message = Message(provider="genesys_cloud", channel="email", to="ann@example.com", content=HELLO)

    with pytest.raises(SendError, match="GENESYS_CLOUD_EMAIL_FROM") as refused:
        sender_for("genesys_cloud").send(message)  # type: ignore[union-attr]

    assert refused.value.transient is False
    emails = httpx.get(f"{configured.url}/_sim/requests", params={"endpoint": "/api/v2/conversations/emails/agentless"})
    assert emails.json()["requests"] == []


HELLO = {"text": "hello", "subject": "hi"}


@pytest.mark.parametrize("code", [1, 2, 3, 4, 5, 6, 98, 99, 42])
def test_every_sms_aggregation_result_code_means_what_its_row_says(configured: SimulatorServer, code: int) -> None:
    """MT_RESULT row by row, the simulator answering the code in its 2xx (42: a code nobody lists)."""
    httpx.post(f"{configured.url}/_sim/config", json={"mt_results": {"15551230000": code}})
    message = Message(provider="genesys_sms", channel="sms", to="+15551230000", content=HELLO)

    with pytest.raises(SendError) as answered:
        sender_for("genesys_sms").send(message)  # type: ignore[union-attr]

    error = answered.value
    meaning = MT_RESULT.get(code, ("", UNKNOWN))[1]
    assert f"result {code}" in str(error)
    assert (error.transient, error.throttled, error.may_have_sent) == {
        REFUSED: (False, False, False),
        THROTTLED: (True, True, False),
        UNKNOWN: (True, False, True),
    }[meaning]


def test_an_sms_aggregation_answer_without_a_result_code_leaves_the_outcome_open(settings: Any) -> None:
    """A 2xx that says nothing readable: maybe taken (sent again with the same message_id, the service dedupes it)."""

    class Answer(BaseHTTPRequestHandler):
        def do_POST(self) -> None:
            self.rfile.read(int(self.headers["Content-Length"]))
            self.send_response(200)
            self.send_header("Content-Length", "2")
            self.end_headers()
            self.wfile.write(b"OK")

        def log_message(self, *args: Any) -> None:
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Answer)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    settings.SENDERS = {}
    settings.GENESYS_SMS_MT_URL = f"http://127.0.0.1:{server.server_address[1]}/httpapi/receiver"
    settings.GENESYS_SMS_LOGIN, settings.GENESYS_SMS_PASSWORD, settings.GENESYS_SMS_SENDER = "l", "p", "15559876543"
    try:
        with pytest.raises(SendError, match="no result code") as answered:
            sender_for("genesys_sms").send(  # type: ignore[union-attr]
                Message(provider="genesys_sms", channel="sms", to="+15551234567", content=HELLO)
            )
    finally:
        server.shutdown()
        server.server_close()
    assert (answered.value.transient, answered.value.may_have_sent) == (True, True)


@pytest.mark.django_db
def test_webex_connect_email_goes_to_send_message_v2_with_its_from_name_and_subject(
    configured: SimulatorServer, settings: Any
) -> None:
    """v1 has no email channel (the simulator refuses it, 400 7004): email is POST /v2/messages."""
    settings.WEBEX_CONNECT_EMAIL_FROM_NAME = "Acme News"
    message = Message(
        provider="webex_connect", channel="email", to="ann@example.com", content=HELLO, correlation_id="c-1"
    )

    message_id = sender_for("webex_connect").send(message)  # type: ignore[union-attr]

    [sent] = httpx.get(f"{configured.url}/_sim/messages/{message_id}").json()["messages"]
    assert (sent["channel"], sent["to"], sent["from"]) == ("email", "ann@example.com", "demo@example.com")
    assert {k: sent["extra"][k] for k in ("api", "subject", "fromName", "correlationid")} == {
        "api": "v2",
        "subject": "hi",
        "fromName": "Acme News",
        "correlationid": "c-1",
    }
    posted = httpx.get(f"{configured.url}/_sim/requests", params={"endpoint": "/v2/messages"}).json()["requests"]
    assert [r["status"] for r in posted] == [201]


def test_webex_connect_email_without_a_subject_is_refused_before_anything_leaves(configured: SimulatorServer) -> None:
    message = Message(provider="webex_connect", channel="email", to="ann@example.com", content={"text": "hello"})

    with pytest.raises(SendError, match="subject") as refused:
        sender_for("webex_connect").send(message)  # type: ignore[union-attr]

    assert refused.value.transient is False
    assert httpx.get(f"{configured.url}/_sim/requests", params={"endpoint": "/v2/messages"}).json()["requests"] == []


@pytest.mark.django_db
@pytest.mark.parametrize(("text", "kind"), [("Your code is 1234", "1"), ("Zażółć gęślą jaźń", "4"), ("OK ✓", "4")])
def test_webex_connect_sms_says_unicode_for_text_outside_gsm(configured: SimulatorServer, text: str, kind: str) -> None:
    """channels.sms.type 4 ("Unicode", docs.imiconnect.com Messaging API, SMS): the simulator refuses other text
    without it, as a real send would mangle it."""
    message = Message(provider="webex_connect", channel="sms", to="+15551234567", content={"text": text})

    transid = sender_for("webex_connect").send(message)  # type: ignore[union-attr]

    [sent] = httpx.get(f"{configured.url}/_sim/messages/{transid}").json()["messages"]
    assert sent["extra"]["smsType"] == kind


@pytest.mark.parametrize(("subject", "taken"), [("s" * 400, True), ("s" * 401, False)])
def test_genesys_cloud_refuses_an_agentless_email_subject_over_400_characters(
    configured: SimulatorServer, subject: str, taken: bool
) -> None:
    """Agentless Email: "subject line 400 characters" ("Email rate limits", help.mypurecloud.com)."""
    http = httpx.Client(base_url=configured.url, timeout=10)
    token = http.post("/oauth/token", auth=("c", "s"), data={"grant_type": "client_credentials"}).json()
    request = {
        "senderType": "Outbound",
        "fromAddress": {"email": "news@acme.example"},
        "toAddresses": [{"email": "alice@example.com"}],
        "subject": subject,
        "textBody": "Hello",
    }

    answer = http.post(
        "/api/v2/conversations/emails/agentless",
        json=request,
        headers={"Authorization": f"Bearer {token['access_token']}"},
    )

    assert answer.status_code == (202 if taken else 400), answer.text


def test_genesys_cloud_email_subject_over_400_is_refused_before_anything_leaves(
    configured: SimulatorServer, settings: Any
) -> None:
    settings.GENESYS_CLOUD_EMAIL_FROM = "news@acme.example"
    message = Message(
        provider="genesys_cloud", channel="email", to="ann@example.com", content={"text": "hi", "subject": "s" * 401}
    )

    with pytest.raises(SendError, match="at most 400") as refused:
        sender_for("genesys_cloud").send(message)  # type: ignore[union-attr]

    assert (refused.value.transient, refused.value.may_have_sent) == (False, False)
    emails = httpx.get(f"{configured.url}/_sim/requests", params={"endpoint": "/api/v2/conversations/emails/agentless"})
    assert emails.json()["requests"] == []


@pytest.mark.parametrize("status", [200, 400, 429])
def test_a_webex_connect_email_throttled_with_7020_is_not_taken_and_no_failure(
    configured: SimulatorServer, status: int
) -> None:
    """7020 in v2's body, whatever the status: planned again after the wait, never a failure of the campaign."""
    httpx.post(
        f"{configured.url}/_sim/config",
        json={"webex_throttle_status": status, "rate_429": 1.0, "fault_scopes": ["webex_connect"]},
    )
    message = Message(provider="webex_connect", channel="email", to="ann@example.com", content=HELLO)

    with pytest.raises(SendError) as throttled:
        sender_for("webex_connect").send(message)  # type: ignore[union-attr]

    assert (throttled.value.throttled, throttled.value.transient, throttled.value.may_have_sent) == (True, True, False)
    assert throttled.value.retry_after is not None
