"""A campaign as deployed: granian, Celery workers and beat as real processes, the provider simulator as the
provider (with its own throughput limit), everything over HTTP.

1,000 contacts, 5% of them suppressed and 2% with numbers the provider rejects; the worker is killed with SIGKILL
mid-campaign and started again; the campaign is paused and resumed. Every allowed contact gets exactly one message
at the provider, none suppressed does, none is left unsent, and the receipts bring the delivery statuses back.
Then quiet hours hold a campaign, and a provider outage trips the failure-rate breaker and its alert.
"""

from __future__ import annotations

import time
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import httpx
import pytest

from simulator import SimulatorServer
from tests.apprunner import AppEnv, wait_until

pytestmark = pytest.mark.e2e

CONTACTS = 1000
SUPPRESSED = range(0, CONTACTS, 20)  # every 20th: 5%
INVALID = range(7, CONTACTS, 50)  # every 50th: 2%, numbers the provider rejects
RATE = 50  # the simulator's limit, sends a second; the app's bucket is set to it: the campaign takes about 20 s


def phone(i: int) -> str:
    return f"+1555020{i:04d}"


@dataclass
class App:
    env: AppEnv
    url: str
    api: httpx.Client
    sim: SimulatorServer
    settings: dict[str, str]

    def post(self, path: str, body: Any = None) -> httpx.Response:
        return self.api.post(f"{self.url}{path}", json=body)

    def campaign(self, campaign_id: int) -> dict[str, Any]:
        answer = self.api.get(f"{self.url}/api/v1/campaigns/{campaign_id}/")
        assert answer.status_code == 200, answer.text[:500]
        return answer.json()

    def at_the_provider(self, provider: str = "genesys_sms") -> Counter[str]:
        return Counter(m.to.lstrip("+") for m in list(self.sim.sim.messages) if m.provider == provider)

    def eventually(self, predicate: Any, what: str) -> Any:
        try:
            return wait_until(predicate, what, interval=0.25)
        except TimeoutError:
            print(self.env.logs())
            raise


@pytest.fixture(scope="module")
def app(app_env: AppEnv) -> Iterator[App]:
    invalid = {phone(i): "failed:5:3" for i in INVALID}  # SMS Aggregation: undeliverable, unknown subscriber
    invalid.update({number.lstrip("+"): outcome for number, outcome in invalid.items()})
    sim = SimulatorServer(
        seed=11,
        mix={"delivered": 100.0},
        address_outcomes=invalid,
        send_limits={"genesys_sms": RATE},
        sent_delay=0.2,
        delay_min=0.5,
        delay_max=1.0,
        secrets={
            "genesys_sms": app_env.base_env["WEBHOOK_SECRET_GENESYS_SMS"],
            "webex_connect": app_env.base_env["WEBHOOK_SECRET_WEBEX_CONNECT"],
        },
    ).start()
    settings = {
        "GENESYS_SMS_MT_URL": f"{sim.url}/httpapi/receiver",
        "GENESYS_SMS_LOGIN": "e2e",
        "GENESYS_SMS_PASSWORD": "e2e",
        "GENESYS_SMS_SENDER": "+15559876543",
        "WEBEX_CONNECT_URL": sim.url,
        "WEBEX_CONNECT_SERVICE_KEY": "e2e",
        "WEBEX_CONNECT_SENDER_ID": "ACME",
        "SEND_RATE_GENESYS_SMS": str(RATE),
        "SEND_RATE_WEBEX_CONNECT": str(RATE),
        "SEND_DISPATCH_INTERVAL": "1",
        "SEND_RECONCILE_INTERVAL": "1",
        "SEND_CLAIM_TIMEOUT": "3",
        "SEND_RETRY_DELAY": "1",
        "CAMPAIGN_FAILURE_MIN_SENDS": "10",
        "CIRCUIT_FAILURE_THRESHOLD": "1000",
        "ALERT_INTERVAL": "1",
        "DEFAULT_PHONE_REGION": "US",
    }
    url = app_env.start_web(workers=1, threads=4, **settings)
    sim.sim.reconfigure({"app_url": url})
    app_env.start_worker(concurrency=3, **settings)
    app_env.start_beat(**settings)
    token = app_env.api_token()
    try:
        with httpx.Client(headers={"Authorization": f"Token {token}"}, timeout=30) as api:
            yield App(app_env, url, api, sim, settings)
    finally:
        sim.stop()


def test_a_1000_contact_campaign_survives_a_killed_worker_and_a_pause(app: App) -> None:
    rows = [{"crm_record_id": f"crm-{i:04d}", "phone": phone(i), "first_name": f"Ann{i}"} for i in range(CONTACTS)]
    rows += [{"crm_record_id": "crm-bad-1", "phone": "12"}, {"crm_record_id": "crm-bad-2", "phone": "not a number"}]
    imported = app.post("/api/v1/contacts/", {"contacts": rows}).json()
    assert (imported["added"], [r["index"] for r in imported["refused"]]) == (CONTACTS, [CONTACTS, CONTACTS + 1])
    for i in SUPPRESSED:
        assert app.post("/api/v1/suppressions/", {"channel": "sms", "address": phone(i)}).status_code == 201

    made = app.post(
        "/api/v1/campaigns/",
        {
            "name": "e2e reminders",
            "channel": "sms",
            "provider": "genesys_sms",
            "body": "Hi {{ contact.first_name }}, your appointment is tomorrow. Reply YES to confirm.",
        },
    )
    assert made.status_code == 201, made.text
    campaign_id = made.json()["id"]
    assert app.post(f"/api/v1/campaigns/{campaign_id}/start/").status_code == 200

    def at_provider() -> int:
        return sum(app.at_the_provider().values())

    # Pause: nothing more leaves; resume: it goes on.
    app.eventually(lambda: at_provider() >= 150, "the first 150 sends")
    paused = app.post(f"/api/v1/campaigns/{campaign_id}/pause/")
    assert paused.json().get("state") == "paused", paused.text
    # A batch a worker had claimed before the pause may still finish (under load, well after 1.5 s).
    app.eventually(lambda: app.campaign(campaign_id)["progress"]["queued"] == 0, "the batches in flight settled")
    paused_at = at_provider()
    time.sleep(3)
    assert at_provider() == paused_at
    assert app.post(f"/api/v1/campaigns/{campaign_id}/resume/").json()["state"] == "running"

    # Kill the worker mid-campaign (SIGKILL: no warm shutdown), then start another.
    worker = next(p for p, _ in app.env.processes if str(p.args[0]).endswith("celery") and "worker" in p.args)
    app.eventually(lambda: at_provider() >= paused_at + 100, "sending after the resume")
    app.env.kill(worker)
    killed_at = at_provider()
    assert killed_at < CONTACTS - len(SUPPRESSED) - 100, "the campaign nearly ended before the kill"
    app.env.start_worker(concurrency=3, **app.settings)

    allowed = CONTACTS - len(SUPPRESSED)
    app.eventually(lambda: app.campaign(campaign_id)["state"] == "completed", "the campaign completed")
    progress = app.campaign(campaign_id)["progress"]
    assert progress == {
        "audience": CONTACTS,
        "planned_contacts": CONTACTS,
        "planned": 0,
        "queued": 0,
        "sent": allowed,
        "suppressed": len(SUPPRESSED),
        "failed": 0,
        "unknown": 0,
        "cancelled": 0,
    }
    at_provider = app.at_the_provider()
    assert max(at_provider.values()) == 1, "a contact got two messages"
    assert set(at_provider) == {phone(i).lstrip("+") for i in range(CONTACTS) if i not in SUPPRESSED}
    throughput = app.sim.sim.stats.snapshot()["send_throughput"]["genesys_sms"]
    assert throughput["peak"] <= RATE and throughput["over_limit"] == 0

    # The receipts come back: the rejected numbers fail, the others are delivered.
    def statuses() -> dict[str, int]:
        where = f"WHERE campaign_id = {int(campaign_id)}"
        return dict(app.env.sql(f"SELECT status, count(*) FROM receipts_message {where} GROUP BY status"))  # noqa: S608

    invalid_sent = len([i for i in INVALID if i not in SUPPRESSED])
    expected = {"delivered": allowed - invalid_sent, "failed": invalid_sent}
    app.eventually(lambda: statuses() == expected, f"the delivery statuses {expected}")


def test_quiet_hours_hold_a_campaign(app: App) -> None:
    now = time.gmtime()
    start, end = f"{now.tm_hour:02d}:00", f"{(now.tm_hour + 2) % 24:02d}:00"  # quiet from the top of this hour
    made = app.post(
        "/api/v1/campaigns/",
        {
            "name": "e2e quiet",
            "channel": "sms",
            "provider": "webex_connect",
            "body": "Hi {{ contact.first_name }}",
            "audience": {"crm_record_ids": ["crm-0001", "crm-0002"]},
            "quiet_start": start,
            "quiet_end": end,
            "time_zone": "UTC",
        },
    )
    assert made.status_code == 201, made.text
    campaign_id = made.json()["id"]
    assert app.post(f"/api/v1/campaigns/{campaign_id}/start/").status_code == 200
    app.eventually(lambda: app.campaign(campaign_id)["progress"]["planned"] == 2, "the campaign planned")
    time.sleep(3)  # beat dispatches every second: nothing may leave
    assert app.campaign(campaign_id)["progress"]["planned"] == 2
    assert not app.at_the_provider("webex_connect")


def test_a_provider_outage_trips_the_failure_rate_breaker(app: App) -> None:
    app.sim.sim.reconfigure({"rate_5xx": 1.0, "fault_scopes": ["webex_connect"]})
    try:
        made = app.post(
            "/api/v1/campaigns/",
            {
                "name": "e2e outage",
                "channel": "sms",
                "provider": "webex_connect",
                "body": "Hi {{ contact.first_name }}",
                "audience": {"crm_record_ids": [f"crm-{i:04d}" for i in range(100, 160)]},
            },
        )
        campaign_id = made.json()["id"]
        assert app.post(f"/api/v1/campaigns/{campaign_id}/start/").status_code == 200
        app.eventually(lambda: app.campaign(campaign_id)["state"] == "paused", "the breaker pausing the campaign")
        assert app.campaign(campaign_id)["state_reason"].startswith("failure-rate breaker")
        key = f"campaign_paused:{campaign_id}"
        app.eventually(
            lambda: app.env.sql(f"SELECT count(*) FROM receipts_alert WHERE key = '{key}'")[0][0] == 1,  # noqa: S608
            "the alert",
        )
        progress = app.campaign(campaign_id)["progress"]
        assert progress["planned"] > 0  # the rest waits, not lost
    finally:
        app.sim.sim.reconfigure({"rate_5xx": 0.0})
