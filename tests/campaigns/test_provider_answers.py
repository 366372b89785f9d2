"""What a provider's answer to a send means, read as the provider writes it, through the simulator over HTTP: taken
(sent), refused (failed, with the provider's reason), throttled (not taken, planned again after a wait, no failure
of the campaign), or unknown (sent again with the same id where the provider dedupes it)."""

from __future__ import annotations

import logging
from datetime import timedelta
from typing import Any

import httpx
import pytest
from django.utils import timezone
from rest_framework.test import APIClient

from campaigns import dispatch, lifecycle, throttle
from campaigns.contacts import import_contacts
from campaigns.models import Campaign, Send
from simulator import SimulatorServer

pytestmark = pytest.mark.django_db

SMS = {"channel": "sms", "provider": "genesys_sms", "to": "+15550001234", "content": {"text": "Your code is 42"}}


def plan_one(**changes: Any) -> Send:
    send, _ = dispatch.plan({**SMS, **changes}, idempotency_key=None)
    return send


def at_the_simulator(sim: SimulatorServer, provider_message_id: str) -> list[dict[str, Any]]:
    known = httpx.get(f"{sim.url}/_sim/messages/{provider_message_id}")
    return known.json()["messages"] if known.status_code == 200 else []


def campaign_of(api: APIClient, provider: str, n: int) -> int:
    rows = [{"crm_record_id": f"003-{i:04d}", "phone": f"+1555010{i:04d}"} for i in range(n)]
    assert not import_contacts(enumerate(rows)).refused
    body = {"name": "Reminders", "channel": "sms", "provider": provider, "body": "See you tomorrow"}
    campaign_id = api.post("/api/v1/campaigns/", body, format="json").json()["id"]
    assert api.post(f"/api/v1/campaigns/{campaign_id}/start/").status_code == 200
    while lifecycle.plan_batch(campaign_id, size=50):
        pass
    return int(campaign_id)


# --- SMS Aggregation: numbers as the MT takes them, and the result code in its 2xx ---------------------------


def test_an_mt_gives_its_numbers_in_international_format_digits_only(providers: SimulatorServer) -> None:
    send = plan_one()

    assert dispatch.dispatch().sent == 1

    send.refresh_from_db()
    [message] = at_the_simulator(providers, send.provider_message_id)  # the service took it: no "+" in either
    assert (message["to"], message["from"]) == ("15550001234", "15559876543")


@pytest.mark.parametrize(("code", "said"), [(1, "parameters missing or invalid"), (2, "authentication failed")])
def test_an_mt_refused_in_a_2xx_fails_with_the_services_reason(
    providers: SimulatorServer, caplog: pytest.LogCaptureFixture, code: int, said: str
) -> None:
    providers.sim.reconfigure({"mt_results": {"15550001234": code}})
    send = plan_one()

    with caplog.at_level(logging.INFO):
        assert dispatch.dispatch().failed == 1

    send.refresh_from_db()
    assert send.state == "failed"
    assert f"result {code}" in send.error and said in send.error
    assert not at_the_simulator(providers, send.provider_message_id)
    config_errors = [r for r in caplog.records if r.levelno >= logging.ERROR and "GENESYS_SMS_LOGIN" in r.getMessage()]
    assert len(config_errors) == (1 if code == 2 else 0)  # a login refused is the operators' problem: an error
    assert "15550001234" not in caplog.text  # numbers masked, the password never logged
    assert "password" not in caplog.text.replace("GENESYS_SMS_PASSWORD", "")


def test_a_throttled_mt_goes_back_to_the_queue_and_is_no_failure_of_the_campaign(
    api: APIClient, providers: SimulatorServer, settings: Any
) -> None:
    settings.CAMPAIGN_FAILURE_MIN_SENDS = 1
    campaign_id = campaign_of(api, "genesys_sms", 3)
    providers.sim.reconfigure({"rate_429": 1.0})  # SMS Aggregation throttles in a 2xx: result=6

    done = dispatch.dispatch(max_wait=0)

    assert done.retried >= 1 and done.sent == done.failed == done.unknown == 0
    assert Send.objects.filter(campaign_id=campaign_id, state="planned").count() == 3
    assert throttle.recent_attempts(campaign_id) == (0, 0)  # the failure-rate breaker counts nothing
    assert Campaign.objects.get(pk=campaign_id).state == "running"
    retried = Send.objects.filter(campaign_id=campaign_id, attempts=1).first()
    assert retried is not None and "result 6" in retried.error
    assert retried.not_before is not None and retried.not_before > timezone.now()  # after a backoff

    providers.sim.reconfigure({"rate_429": 0.0})
    later = timezone.now() + timedelta(minutes=5)
    sent = sum(dispatch.dispatch(now=later).sent for _ in range(3))
    assert sent == 3
    retried.refresh_from_db()
    assert len(at_the_simulator(providers, retried.provider_message_id)) == 1


def test_an_internal_error_in_a_2xx_is_sent_again_with_the_same_id_and_taken_once(providers: SimulatorServer) -> None:
    providers.sim.reconfigure({"mt_results": {"15550001234": 98}})
    send = plan_one()

    assert dispatch.dispatch().retried == 1  # outcome unknown, but our message_id makes sending it again harmless

    send.refresh_from_db()
    assert (send.state, send.attempts) == ("planned", 1)
    first_id = send.provider_message_id
    providers.sim.reconfigure({"mt_results": {}})
    assert dispatch.dispatch(now=timezone.now() + timedelta(minutes=5)).sent == 1
    send.refresh_from_db()
    assert (send.state, send.provider_message_id) == ("sent", first_id)
    assert len(at_the_simulator(providers, first_id)) == 1


def test_a_duplicate_message_id_answer_means_the_first_copy_was_taken(providers: SimulatorServer) -> None:
    send = plan_one()
    assert dispatch.dispatch().sent == 1
    send.refresh_from_db()
    # As if the worker had died after the request and before the answer was kept: sent again, answered 7.
    Send.objects.filter(pk=send.pk).update(
        state="sending", claimed_at=timezone.now() - timedelta(hours=1), message_id=None
    )
    assert dispatch.reconcile_stuck()["requeued"] == 1

    assert dispatch.dispatch().sent == 1

    send.refresh_from_db()
    assert send.state == "sent"
    assert len(at_the_simulator(providers, send.provider_message_id)) == 1
    assert providers.stats()["duplicate_sends"] == 1


# --- Webex Connect: 7020 whatever the HTTP status ------------------------------------------------------------


@pytest.mark.parametrize("status", [200, 400, 429])
def test_webex_7020_is_a_throttle_in_any_status_not_a_failure(
    api: APIClient, providers: SimulatorServer, settings: Any, status: int
) -> None:
    settings.CAMPAIGN_FAILURE_MIN_SENDS = 1
    campaign_id = campaign_of(api, "webex_connect", 2)
    providers.sim.reconfigure({"rate_429": 1.0, "retry_after": 30, "webex_throttle_status": status})

    done = dispatch.dispatch(max_wait=0)

    assert done.sent == done.failed == done.unknown == 0 and done.retried >= 1
    assert not Send.objects.filter(campaign_id=campaign_id, state__in=["failed", "unknown"]).exists()
    assert throttle.recent_attempts(campaign_id) == (0, 0)
    assert Campaign.objects.get(pk=campaign_id).state == "running"
    retried = Send.objects.filter(campaign_id=campaign_id, attempts=1).first()
    assert retried is not None and "7020" in retried.error
    assert retried.not_before is not None and retried.not_before >= timezone.now() + timedelta(seconds=25)
