"""Injected 429s, 5xx and latency, switched on and off at runtime; counters and logs tests count requests by;
OAuth tokens that expire."""

from __future__ import annotations

import time
from concurrent.futures import ThreadPoolExecutor

import httpx

from simulator import SimulatorServer
from tests.apprunner import wait_until
from tests.simulator.conftest import bearer, configure, get_token, send_mt, send_sms, stats

DETAILS = "/api/v2/conversations/messages/{messageId}/details"


def test_a_429_storm_starts_and_ends_at_runtime(http: httpx.Client) -> None:
    token = get_token(http)
    configure(http, rate_429=1.0, retry_after=7)

    storm = [send_sms(http, token), http.get("/api/v2/conversations/messages/x/details")]
    webex = http.post("/resources/v1/messaging", json={}, headers={"key": "k"})
    mt = send_mt(http, "m-1")
    configure(http, rate_429=0.0)
    after = send_sms(http, token)

    assert [r.status_code for r in [*storm, webex]] == [429] * 3
    assert all(r.headers["Retry-After"] == "7" for r in [*storm, webex])
    assert storm[0].json()["code"] == "too.many.requests.retry.after"
    assert "[7] seconds" in storm[0].json()["message"]
    assert webex.json()["response"]["code"] == "7020"  # each provider throttles in its own way
    assert (mt.status_code, mt.text) == (200, "result=6")
    assert after.status_code == 202
    counts = stats(http)
    assert counts["faults"]["injected_429"] == 4
    assert counts["requests"]["by_endpoint"]["POST /api/v2/conversations/messages/agentless"]["by_status"] == {
        "202": 1,
        "429": 1,
    }


def test_an_outage_answers_5xx_and_leaves_control_and_login_alone(http: httpx.Client) -> None:
    configure(http, rate_5xx=1.0)

    token = get_token(http)  # login.{region} is another service: not in fault_scopes by default
    answers = [send_sms(http, token) for _ in range(20)]

    assert {a.status_code for a in answers} <= {500, 502, 503, 504}
    assert all(a.json()["status"] == a.status_code and "contextId" in a.json() for a in answers)
    assert http.get("/_sim/stats").status_code == 200
    configure(http, fault_scopes=["oauth"])
    assert http.post("/oauth/token", auth=("c", "s"), data={"grant_type": "client_credentials"}).status_code >= 500
    assert send_sms(http, token).status_code == 202


def test_faults_at_a_rate_hit_about_that_fraction(http: httpx.Client) -> None:
    configure(http, rate_429=0.2, rate_5xx=0.1)

    answers = [send_mt(http, f"m-{i}") for i in range(500)]

    assert 60 <= sum(1 for a in answers if a.text == "result=6") <= 140  # about 100 throttled, in a 2xx
    assert 25 <= sum(1 for a in answers if a.status_code >= 500) <= 75  # about 50
    assert (
        sum(1 for a in answers if a.status_code == 200 and a.text in ("result=0", "result=6"))
        + sum(1 for a in answers if a.status_code >= 500)
        == 500
    )


def test_latency_is_added_to_provider_requests(http: httpx.Client) -> None:
    configure(http, latency_ms=300, latency_jitter_ms=50)

    started = time.monotonic()
    send_mt(http, "slow-1")
    elapsed = time.monotonic() - started

    assert elapsed >= 0.3  # a lower bound only: the sleep guarantees it


def test_requests_are_counted_by_endpoint_and_status_and_logged(http: httpx.Client) -> None:
    token = get_token(http)
    message_id = send_sms(http, token).json()["id"]
    for _ in range(3):
        http.get(f"/api/v2/conversations/messages/{message_id}/details", headers=bearer(token))
    http.get("/api/v2/conversations/messages/missing/details", headers=bearer(token))
    http.get("/api/v2/nothing/here", headers=bearer(token))

    counts = stats(http)
    log = http.get("/_sim/requests", params={"endpoint": DETAILS}).json()["requests"]

    assert counts["requests"]["by_endpoint"][f"GET {DETAILS}"] == {"total": 4, "by_status": {"200": 3, "404": 1}}
    assert counts["requests"]["by_endpoint"]["GET (unknown)"]["total"] == 1
    assert counts["requests"]["total"] == 7  # token, send, 4 details, 1 unknown; control calls are not counted
    assert [row["status"] for row in log] == [200, 200, 200, 404]
    assert len({row["principal"] for row in log}) == 1
    assert counts["tokens_issued"] == 1 and counts["sends"] == {"genesys_cloud": 1}


def test_reset_zeroes_the_counters_and_optionally_forgets_messages_and_tokens(http: httpx.Client) -> None:
    token = get_token(http)
    send_sms(http, token)

    http.post("/_sim/reset")
    kept = stats(http)
    http.post("/_sim/reset", json={"messages": True, "tokens": True})
    cleared = stats(http)

    assert (kept["requests"]["total"], kept["tokens_issued"], kept["messages"]["total"]) == (0, 0, 1)
    assert cleared["messages"]["total"] == 0
    assert send_sms(http, token).status_code == 401


def test_concurrent_requests_are_all_answered_and_counted(http: httpx.Client) -> None:
    token = get_token(http)
    configure(http, rate_limit_per_minute=0)

    def worker(n: int) -> list[int]:
        with httpx.Client(base_url=str(http.base_url), timeout=30) as own:
            return [send_sms(own, token).status_code for _ in range(50)]

    with ThreadPoolExecutor(8) as pool:
        codes = [c for batch in pool.map(worker, range(8)) for c in batch]

    assert codes == [202] * 400
    assert stats(http)["requests"]["by_endpoint"]["POST /api/v2/conversations/messages/agentless"]["total"] == 400


def test_tokens_expire_after_their_lifetime(http: httpx.Client) -> None:
    configure(http, token_lifetime=2)
    response = http.post("/oauth/token", auth=("c", "s"), data={"grant_type": "client_credentials"})
    token = response.json()["access_token"]

    assert response.json()["expires_in"] == 2
    assert send_sms(http, token).status_code == 202
    wait_until(lambda: send_sms(http, token).status_code == 401, "token expired")
    assert send_sms(http, token).json()["code"] == "bad.credentials"
    assert send_sms(http, get_token(http)).status_code == 202


def test_every_token_can_be_expired_at_once(http: httpx.Client) -> None:
    tokens = [get_token(http) for _ in range(2)]

    assert http.post("/_sim/tokens/expire").json() == {"expired": 2}

    assert [send_sms(http, t).status_code for t in tokens] == [401, 401]
    assert stats(http)["faults"]["unauthorized"] == 2


def test_bad_settings_are_refused_with_their_name(http: httpx.Client) -> None:
    for change, name in [
        ({"rate_429": 2}, "rate_429"),
        ({"nope": 1}, "nope"),
        ({"port": 1}, "port"),
        ({"delay_min": 5, "delay_max": 1}, "delay_max"),
        ({"push": "yes"}, "push"),
        ({"fault_scopes": ["everything"]}, "fault_scopes"),
    ]:
        response = http.post("/_sim/config", json=change)
        assert response.status_code == 400 and name in response.json()["error"], (change, response.text)


def test_config_shows_whether_secrets_are_set_never_their_values() -> None:
    with SimulatorServer(secrets={"genesys_cloud": "top-secret"}, basic_auth="u:p", push=False) as server:
        body = httpx.get(f"{server.url}/_sim/config").json()

    assert body["secrets"] == {"genesys_cloud": True}
    assert body["basic_auth"] is True
    assert "top-secret" not in str(body)
