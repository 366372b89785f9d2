"""The simulator against the real app (granian, Celery worker and beat, tests/apprunner.py): messages sent through
each provider's simulated API, registered through the app's API, end in the status their outcome prescribes,
through receipts the simulator pushes to the app's webhooks, signed with the secrets the app reads."""

from __future__ import annotations

import signal
import subprocess
import sys
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import pytest

from simulator import SimulatorServer
from tests.apprunner import READY_TIMEOUT, ROOT, AppEnv, free_port, wait_until

pytestmark = pytest.mark.e2e


@dataclass
class App:
    env: AppEnv
    url: str
    api: httpx.Client

    def register(self, **fields: str) -> int:
        response = self.api.post(f"{self.url}/api/v1/messages/", json=fields)
        assert response.status_code in (200, 201), response.text
        return response.json()["id"]

    def message(self, message_id: int) -> dict[str, Any]:
        return self.api.get(f"{self.url}/api/v1/messages/{message_id}/").json()


@pytest.fixture(scope="module")
def app(tmp_path_factory: pytest.TempPathFactory) -> Iterator[App]:
    env = AppEnv(Path(tmp_path_factory.mktemp("sim-app")), name="sim").create()
    try:
        url = env.start_web(workers=2, threads=8)
        env.start_worker(concurrency=2)
        env.start_beat()
        with httpx.Client(headers={"Authorization": f"Token {env.api_token()}"}, timeout=10) as api:
            yield App(env, url, api)
    finally:
        env.destroy()


def app_secrets(env: AppEnv) -> dict[str, str]:
    return {
        "genesys_cloud": env.base_env["WEBHOOK_SECRET_GENESYS_CLOUD"],
        "genesys_sms": env.base_env["WEBHOOK_SECRET_GENESYS_SMS"],
        "webex_connect": env.base_env["WEBHOOK_SECRET_WEBEX_CONNECT"],
    }


# (provider, channel, address, forced outcome, status the app must end with, failure category)
CASES = [
    ("genesys_cloud", "sms", "+15552000001", "delivered", "delivered", ""),
    ("genesys_cloud", "sms", "+15552000002", "failed:InvalidDestination", "failed", "invalid_destination"),
    ("genesys_cloud", "sms", "+15552000003", "expired", "expired", "temporary_network"),
    ("genesys_cloud", "sms", "+15552000004", "failed:RecipientOptedOut", "rejected", "opted_out"),
    ("genesys_sms", "sms", "+15553000001", "delivered", "delivered", ""),
    ("genesys_sms", "sms", "+15553000002", "failed:5:3", "failed", "invalid_destination"),
    ("genesys_sms", "sms", "+15553000003", "expired", "expired", "temporary_network"),
    ("genesys_sms", "sms", "+15553000004", "failed:8:8", "rejected", "content_rejected"),
    ("webex_connect", "sms", "+15554000001", "delivered", "delivered", ""),
    ("webex_connect", "sms", "+15554000002", "failed:7102", "failed", "invalid_destination"),
    ("webex_connect", "sms", "+15554000003", "expired", "expired", "temporary_network"),
    ("webex_connect", "email", "alice@example.com", "delivered", "delivered", ""),
    ("webex_connect", "email", "bob@example.com", "failed:7520:Permanent_General", "bounced", "invalid_destination"),
]


def send(http: httpx.Client, token: str, provider: str, channel: str, address: str, n: int) -> tuple[str, str]:
    """Send one message through the simulated provider API; (provider message id, conversation id)."""
    if provider == "genesys_cloud":
        body = {"fromAddress": "+15559876543", "toAddress": address, "toAddressMessengerType": "sms", "textBody": "Hi"}
        answer = http.post(
            "/api/v2/conversations/messages/agentless", json=body, headers={"Authorization": f"Bearer {token}"}
        )
        assert answer.status_code == 202, answer.text
        return answer.json()["id"], answer.json()["conversationId"]
    if provider == "genesys_sms":
        message_id = f"sim-e2e-{n}"
        data = {
            "login": "acme",
            "password": "pw",
            "phone_number": address.lstrip("+"),
            "sender": "55555",
            "message": "Hi",
            "message_id": message_id,
            "receipt": "TRUE",
            "app_id": "e2e",
            "conversation_id": f"conv-{n}",
        }
        assert http.post("/httpapi/receiver", data=data).status_code == 200
        return message_id, f"conv-{n}"
    if channel == "email":  # Send Message API v2: v1 has no email channel
        email = {
            "channel": "email",
            "from": "news@acme.example",
            "to": [{"email": [address]}],
            "content": {"type": "text", "subject": "Hello", "text": "Hi"},
        }
        answer = http.post("/v2/messages", json=email, headers={"key": "service-key"})
        assert answer.status_code == 201, answer.text
        return answer.json()["messageId"], ""
    content = {"text": "Hi", "senderid": "ACME"}
    body = {"deliverychannel": channel, "channels": {channel: content}, "destination": [{"msisdn": [address[1:]]}]}
    answer = http.post("/resources/v1/messaging", json=body, headers={"key": "service-key"})
    assert answer.status_code == 200, answer.text
    return answer.json()["response"][0]["transid"], ""


def test_pushed_receipts_of_all_three_providers_change_the_apps_messages(app: App) -> None:
    outcomes = {address: outcome for _, _, address, outcome, _, _ in CASES}
    outcomes["+15552000009"] = "silent"
    outcomes.update({a.lstrip("+"): o for a, o in outcomes.items() if a.startswith("+")})
    server = SimulatorServer(
        seed=5,
        app_url=app.url,
        secrets=app_secrets(app.env),
        address_outcomes=outcomes,
        sent_delay=0.2,
        delay_min=0.5,
        delay_max=1.5,
        rate_duplicate=0.5,
        rate_out_of_order=0.5,
    ).start()
    try:
        with httpx.Client(base_url=server.url, timeout=10) as http:
            token = http.post("/oauth/token", auth=("c", "s"), data={"grant_type": "client_credentials"}).json()
            registered = {}
            for n, (provider, channel, address, _, _, _) in enumerate(CASES):
                provider_id, conversation = send(http, token["access_token"], provider, channel, address, n)
                fields = {"channel": channel, "provider": provider, "provider_message_id": provider_id, "to": address}
                registered[address] = app.register(
                    **fields, **({"conversation_id": conversation} if conversation else {})
                )
            silent_id, _ = send(http, token["access_token"], "genesys_cloud", "sms", "+15552000009", 99)
            silent = app.register(
                channel="sms", provider="genesys_cloud", provider_message_id=silent_id, to="+15552000009"
            )

            def settled() -> bool:
                return all(app.message(registered[c[2]])["status"] == c[4] for c in CASES)

            try:
                wait_until(settled, "every message final in the app", interval=0.25)
            except TimeoutError:
                print({c[2]: app.message(registered[c[2]])["status"] for c in CASES}, app.env.logs())
                raise
            wait_until(lambda: server.sim.pusher.pending() == 0, "all pushes done")
            pushes = http.get("/_sim/stats").json()["pushes"]

            # A push acknowledged is not yet processed: wait for the sent receipts (pushed concurrently, maybe
            # after the final one) to reach the timelines too. More than two would fail the check below.
            def timelines_complete() -> bool:
                return all(len(app.message(registered[c[2]])["events"]) >= 2 for c in CASES)

            wait_until(timelines_complete, "every receipt on its timeline", interval=0.25)
    finally:
        server.stop()

    for _, _, address, _, status, category in CASES:
        message = app.message(registered[address])
        assert (message["status"], message["failure_category"] or "") == (status, category), address
        # Sent, then the final receipt; a duplicate push lands once; out-of-order ones change nothing.
        assert {e["source"] for e in message["events"]} == {"webhook"}
        assert len(message["events"]) == 2, (address, [e["provider_code"] for e in message["events"]])
    wait_until(lambda: app.message(silent)["status"] == "sent", "silent message sent")  # and never final
    assert pushes.get("rejected", 0) == pushes.get("gave_up", 0) == 0
    assert pushes["duplicates"] > 0


def test_the_management_command_pushes_with_the_apps_own_settings_and_stops_on_ctrl_c(app: App) -> None:
    port = free_port()
    log = open(app.env.workdir / "simulator.log", "w")  # noqa: SIM115 - closed below
    argv = [sys.executable, "manage.py", "simulate_providers", "--port", str(port), "--app-url", app.url]
    argv += ["--mix", "delivered=1", "--sent-delay", "0.1", "--delay-min", "0.3", "--delay-max", "0.6", "--seed", "1"]
    proc = subprocess.Popen(argv, cwd=ROOT, env=app.env.env(LOG_LEVEL="INFO"), stdout=log, stderr=subprocess.STDOUT)
    url = f"http://127.0.0.1:{port}"
    try:
        wait_until(lambda: httpx.get(f"{url}/_sim/health").status_code == 200, "simulator up")
        with httpx.Client(base_url=url, timeout=10) as http:
            data = {"login": "a", "password": "b", "phone_number": "15555000001", "sender": "5", "message": "Hi"}
            assert http.post("/httpapi/receiver", data={**data, "message_id": "cmd-1", "receipt": "TRUE"}).is_success
        registered = app.register(channel="sms", provider="genesys_sms", provider_message_id="cmd-1", to="+15555000001")
        wait_until(lambda: app.message(registered)["status"] == "delivered", "delivered via the command")
    finally:
        proc.send_signal(signal.SIGINT)
        code = proc.wait(timeout=READY_TIMEOUT)
        log.close()
    output = (app.env.workdir / "simulator.log").read_text()
    assert code == 0, output
    assert "Stopped." in output
    assert "+15555000001" not in output and "15555000001" not in output  # addresses are masked in the log
    assert "push genesys_sms message_state=2" in output
    assert app.env.base_env["WEBHOOK_SECRET_GENESYS_SMS"] not in output  # the secret is never logged
