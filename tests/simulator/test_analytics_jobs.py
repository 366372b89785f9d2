"""Analytics conversation details jobs: submit, wait for FULFILLED, page with the cursor; every conversation in
the interval comes back exactly once, with its sessions' deliveryStatus."""

from __future__ import annotations

from collections import Counter
from typing import Any

import httpx
import pytest

from simulator import SimulatorServer
from tests.apprunner import wait_until
from tests.simulator.conftest import bearer, configure, get_token, send_sms, stats

JOBS = "/api/v2/analytics/conversations/details/jobs"
ALL_TIME = "2000-01-01T00:00:00.000Z/2100-01-01T00:00:00.000Z"


def submit(http: httpx.Client, token: str, **query: Any) -> str:
    response = http.post(JOBS, json={"interval": ALL_TIME, **query}, headers=bearer(token))
    assert response.status_code == 202, response.text
    return response.json()["jobId"]


def wait_fulfilled(http: httpx.Client, token: str, job_id: str) -> None:
    wait_until(lambda: http.get(f"{JOBS}/{job_id}", headers=bearer(token)).json()["state"] == "FULFILLED", "job")


def pages(http: httpx.Client, token: str, job_id: str, page_size: int = 1000) -> list[dict[str, Any]]:
    out, cursor = [], ""
    while True:
        params: dict[str, Any] = {"pageSize": page_size, **({"cursor": cursor} if cursor else {})}
        response = http.get(f"{JOBS}/{job_id}/results", params=params, headers=bearer(token))
        assert response.status_code == 200, response.text
        out.append(response.json())
        cursor = response.json().get("cursor", "")
        if not cursor:
            return out


def delivery(conversation: dict[str, Any]) -> tuple[str, str]:
    sessions = [s for p in conversation["participants"] for s in p["sessions"] if "deliveryStatus" in s]
    assert len(sessions) == 1
    return sessions[0]["deliveryStatus"], sessions[0].get("extendedDeliveryStatus", "")


@pytest.fixture
def token(http: httpx.Client) -> str:
    configure(http, rate_limit_per_minute=0)
    return get_token(http)


def test_paging_returns_every_conversation_exactly_once(http: httpx.Client, token: str) -> None:
    preloaded = http.post("/_sim/messages", json={"provider": "genesys_cloud", "count": 2500}).json()["messages"]
    sent = [send_sms(http, token).json() for _ in range(3)]
    expected = [m["conversationId"] for m in preloaded] + [m["conversationId"] for m in sent]
    job_id = submit(http, token)
    wait_fulfilled(http, token, job_id)

    results = pages(http, token, job_id)

    assert [len(p["conversations"]) for p in results] == [1000, 1000, 503]
    seen = [c["conversationId"] for p in results for c in p["conversations"]]
    assert seen == expected  # ascending by conversationStart, each once
    assert all("cursor" in p for p in results[:-1]) and "cursor" not in results[-1]
    assert all(p["dataAvailabilityDate"] for p in results)


def test_statuses_match_the_outcomes_and_an_sms_failure_carries_no_reason(http: httpx.Client, token: str) -> None:
    preloaded = http.post("/_sim/messages", json={"provider": "genesys_cloud", "count": 300}).json()["messages"]
    job_id = submit(http, token)
    wait_fulfilled(http, token, job_id)

    conversations = {c["conversationId"]: c for p in pages(http, token, job_id, 120) for c in p["conversations"]}

    expected = {
        "delivered": "DeliverySuccess",
        "failed": "DeliveryFailed",
        "expired": "DeliveryFailed",
        "silent": "Sent",
    }
    for message in preloaded:
        status, extended = delivery(conversations[message["conversationId"]])
        assert status == expected[message["outcome"]]
        assert extended == ""  # an SMS failure's reason is not in analytics: the bulk lookup has it
    assert Counter(m["outcome"] for m in preloaded) == {"delivered": 270, "failed": 12, "expired": 6, "silent": 12}


def test_a_conversation_has_the_analytics_model_fields(http: httpx.Client, token: str) -> None:
    http.post("/_sim/messages", json={"count": 1, "outcome": "failed", "reason": "RecipientOptedOut"})
    job_id = submit(http, token)
    wait_fulfilled(http, token, job_id)

    conversation = pages(http, token, job_id)[0]["conversations"][0]

    assert {"conversationId", "conversationStart", "conversationEnd", "participants"} <= set(conversation)
    assert [p["purpose"] for p in conversation["participants"]] == ["agent", "customer"]
    session = conversation["participants"][1]["sessions"][0]
    assert (session["mediaType"], session["messageType"], session["direction"]) == ("message", "sms", "outbound")
    assert session["deliveryStatus"] == "DeliveryFailed" and session["deliveryStatusChangeDate"].endswith("Z")
    # A failed SMS's reason is not in analytics (it is in the message's normalizedReceipts).
    assert "extendedDeliveryStatus" not in session and "errorCode" not in session["segments"][0]


def test_results_before_the_job_is_fulfilled_are_refused(http: httpx.Client, token: str) -> None:
    configure(http, analytics_job_delay=60)
    job_id = submit(http, token)

    status = http.get(f"{JOBS}/{job_id}", headers=bearer(token)).json()
    early = http.get(f"{JOBS}/{job_id}/results", headers=bearer(token))
    deleted = http.delete(f"{JOBS}/{job_id}", headers=bearer(token))

    assert status["state"] == "QUEUED" and status["submissionDate"]
    assert (early.status_code, early.json()["code"]) == (400, "bad.request")
    assert deleted.status_code == 202
    assert http.get(f"{JOBS}/{job_id}", headers=bearer(token)).json()["state"] == "CANCELLED"
    assert http.get(f"{JOBS}/unknown", headers=bearer(token)).status_code == 404


def test_filters_interval_order_and_limit(http: httpx.Client, token: str) -> None:
    preloaded = http.post("/_sim/messages", json={"provider": "genesys_cloud", "count": 400}).json()["messages"]
    http.post("/_sim/messages", json={"provider": "genesys_cloud", "channel": "email", "count": 7})
    failed = sum(1 for m in preloaded if m["outcome"] in ("failed", "expired"))

    def count(**query: Any) -> list[str]:
        job_id = submit(http, token, **query)
        wait_fulfilled(http, token, job_id)
        return [c["conversationId"] for p in pages(http, token, job_id) for c in p["conversations"]]

    def predicate(dimension: str, value: str) -> list[dict[str, Any]]:
        return [{"type": "and", "predicates": [{"dimension": dimension, "value": value}]}]

    assert len(count(segmentFilters=predicate("deliveryStatus", "DeliveryFailed"))) == failed
    assert len(count(segmentFilters=predicate("mediaType", "email"))) == 7
    assert len(count(segmentFilters=predicate("messageType", "sms"))) == 400
    one = preloaded[5]["conversationId"]
    assert count(conversationFilters=predicate("conversationId", one)) == [one]
    either = [{"type": "or", "predicates": [{"dimension": "conversationId", "value": v} for v in ("a", one)]}]
    assert count(conversationFilters=either) == [one]
    assert count(interval="2001-01-01T00:00:00Z/2001-01-02T00:00:00Z") == []
    newest = count(order="desc", limit=10)  # the 7 emails came last, then the newest SMS
    assert newest[7:] == [m["conversationId"] for m in preloaded[-1:-4:-1]]


@pytest.mark.parametrize(
    "query",
    [
        {"interval": "yesterday"},
        {"interval": "2026-01-02T00:00:00Z/2026-01-01T00:00:00Z"},
        {"interval": ALL_TIME, "segmentFilters": [{"type": "and", "predicates": [{"dimension": "wrapUpCode"}]}]},
        {"interval": ALL_TIME, "segmentFilters": [{"type": "xor", "predicates": []}]},
        {"interval": ALL_TIME, "limit": 0},
    ],
)
def test_bad_queries_are_refused(http: httpx.Client, token: str, query: dict[str, Any]) -> None:
    response = http.post(JOBS, json=query, headers=bearer(token))

    assert response.status_code == 400
    assert response.json()["code"] == "bad.request"


def test_a_bad_cursor_is_refused(http: httpx.Client, token: str) -> None:
    job_id = submit(http, token)
    wait_fulfilled(http, token, job_id)

    response = http.get(f"{JOBS}/{job_id}/results", params={"cursor": "garbage"}, headers=bearer(token))

    assert response.status_code == 400


def test_reconciling_10000_in_flight_messages_takes_a_handful_of_requests(
    sim: SimulatorServer, http: httpx.Client, token: str
) -> None:
    """What the bulk tier can do against this API: one job, its status, ten pages (the budget is 50)."""
    http.post("/_sim/messages", json={"provider": "genesys_cloud", "count": 10_000, "ids": False})
    http.post("/_sim/reset")

    job_id = submit(http, token)
    wait_fulfilled(http, token, job_id)
    found = sum(len(p["conversations"]) for p in pages(http, token, job_id))

    assert found == 10_000
    assert stats(http)["requests"]["total"] <= 50
