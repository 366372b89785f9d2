"""Each message moves through its statuses on the configured schedule, with the configured outcome mix, the same
way every time for a given seed; receipts are pushed when their time comes, some twice or out of order."""

from __future__ import annotations

import json
import re
from concurrent.futures import ThreadPoolExecutor
from urllib.parse import parse_qsl

import httpx
import pytest

from simulator import SimulatorServer
from simulator.config import ConfigError, SimConfig, deck_counts, parse_mix
from tests.apprunner import wait_until
from tests.simulator.conftest import FAST, Receiver, configure, send_mt, stats


def send_many(http: httpx.Client, n: int, prefix: str = "m") -> None:
    with ThreadPoolExecutor(8) as pool:
        answers = list(pool.map(lambda i: send_mt(http, f"{prefix}-{i}").status_code, range(n)))
    assert answers == [200] * n


def test_the_default_mix_holds_exactly_over_2000_messages(sim: SimulatorServer, http: httpx.Client) -> None:
    send_many(http, 2000)

    counts = stats(http)["messages"]
    assert counts["by_outcome"] == {"delivered": 1800, "failed": 80, "expired": 40, "silent": 80}
    # And every message gets there: silent ones stay sent.
    wait_until(lambda: stats(http)["messages"]["by_status"].get("sent") == 80, "all final", interval=0.1)
    assert stats(http)["messages"]["by_status"] == {"delivered": 1800, "failed": 80, "expired": 40, "sent": 80}
    reasons = stats(http)["messages"]["by_reason"]
    assert reasons["genesys_sms:3:0"] == 40  # expired: message_state 3
    assert sum(n for code, n in reasons.items() if code != "genesys_sms:3:0") == 80


def test_the_schedule_respects_the_configured_delays(sim: SimulatorServer, http: httpx.Client) -> None:
    send_many(http, 300)

    config = sim.config
    for m in sim.sim.messages:
        sent_delay = m.sent_at - m.created
        assert config.sent_delay * (1 - config.jitter) - 1e-6 <= sent_delay <= config.sent_delay * (1 + config.jitter)
        if m.outcome != "silent":
            assert config.delay_min - 1e-6 <= m.final_at - m.created <= config.delay_max + 0.01
            assert m.final_at > m.sent_at
        else:
            assert m.final_at is None


def outcomes(seed: int, n: int = 150) -> list[tuple[str, str]]:
    with SimulatorServer(seed=seed, push=False, **FAST) as server, httpx.Client(base_url=server.url) as http:
        for i in range(n):
            send_mt(http, f"s-{i}")
        return [(m.outcome, m.reason) for m in sorted(server.sim.messages, key=lambda m: m.seq)]


def test_a_seed_repeats_the_same_outcomes_in_the_same_order() -> None:
    first, again, other = outcomes(42), outcomes(42), outcomes(43)

    assert first == again
    assert first != other
    assert sorted(o for o, _ in first[:100]) == sorted(o for o, _ in other[:100])  # each deck holds the mix


def test_a_new_mix_at_runtime_starts_fresh_decks(http: httpx.Client) -> None:
    send_mt(http, "before")
    configure(http, mix="failed=1,expired=1")

    send_many(http, 10, "after")

    after = stats(http)["messages"]["by_outcome"]
    assert after["failed"] + after["expired"] == 10
    assert (after["failed"], after["expired"]) == (5, 5)


def test_an_address_can_be_given_a_fixed_outcome(http: httpx.Client) -> None:
    configure(http, address_outcomes={"15550000001": "failed:5:3"})

    send_mt(http, "fixed", phone_number="15550000001")

    view = http.get("/_sim/messages/fixed").json()["messages"][0]
    assert (view["outcome"], view["reason"]) == ("failed", "5:3")


def test_mix_parsing_and_decks() -> None:
    assert parse_mix("delivered=90,failed=4,expired=2,silent=4") == SimConfig().mix
    assert deck_counts({"delivered": 1, "failed": 1, "expired": 0, "silent": 1}) == {
        "delivered": 1,
        "failed": 1,
        "expired": 0,
        "silent": 1,
    }
    assert sum(deck_counts({"delivered": 33.3, "failed": 66.7, "expired": 0, "silent": 0}).values()) == 1000
    for bad in ("delivered", "bounced=3", "delivered=-1", "delivered=0"):
        with pytest.raises(ConfigError):
            parse_mix(bad)


def test_preloaded_messages_are_final_already_unless_asked_to_start_now(http: httpx.Client) -> None:
    configure(http, sent_delay=30, delay_min=60, delay_max=60)
    settled = http.post("/_sim/messages", json={"provider": "genesys_cloud", "count": 200}).json()
    http.post("/_sim/messages", json={"provider": "genesys_cloud", "count": 5, "settled": False})
    chosen = http.post(
        "/_sim/messages",
        json={"provider": "webex_connect", "channel": "email", "messages": [{"to": "a@example.com", "id": "t-1"}],
              "outcome": "failed", "reason": "7520:Permanent_NoEmail"},
    ).json()  # fmt: skip

    assert settled["count"] == 200 and len({m["id"] for m in settled["messages"]}) == 200
    assert all(m["conversationId"] for m in settled["messages"])
    counts = stats(http)["messages"]
    assert counts["preloaded"] == 206
    assert counts["by_status"]["queued"] == 5
    silent = sum(1 for m in settled["messages"] if m["outcome"] == "silent")
    assert counts["by_status"].get("sent", 0) == silent  # every settled one is final, or silent
    assert chosen["messages"] == [
        {
            "id": "t-1",
            "conversationId": "",
            "to": "a@example.com",
            "outcome": "failed",
            "reason": "7520:Permanent_NoEmail",
        }
    ]
    assert http.post("/_sim/messages", json={"count": 0}).status_code == 400
    assert http.post("/_sim/messages", json={"count": 1, "outcome": "failed", "reason": "Nope"}).status_code == 400


def test_receipts_are_pushed_when_due_and_authenticated(pushing: SimulatorServer, receiver: Receiver) -> None:
    with httpx.Client(base_url=pushing.url) as http:
        configure(http, mix={"delivered": 1})
        send_mt(http, "p-1", receipt=True, app_id="app")
        send_mt(http, "p-2", receipt=False)  # no receipt asked for: none pushed, as at the real service

        wait_until(lambda: len(receiver.ok()) == 2, "two receipts")
        log = http.get("/_sim/pushes").json()["pushes"]

    bodies = [dict(parse_qsl(r["body"].decode())) for r in receiver.ok()]
    assert sorted((b["message_id"], b["message_state"]) for b in bodies) == [("p-1", "2"), ("p-1", "6")]
    assert [e["event"] for e in sorted(log, key=lambda e: e["due"])] == ["sent", "final"]
    assert all(r["path"] == "/webhooks/genesys-sms/" for r in receiver.ok())
    assert all(r["headers"]["X-Webhook-Token"] == "sms" for r in receiver.ok())
    assert bodies[0]["app_id"] == "app"


def test_duplicates_and_out_of_order_receipts_at_the_configured_rates(
    pushing: SimulatorServer, receiver: Receiver
) -> None:
    with httpx.Client(base_url=pushing.url) as http:
        configure(http, mix={"delivered": 1}, rate_duplicate=1.0, rate_out_of_order=1.0)
        send_mt(http, "d-1", receipt=True)

        wait_until(lambda: len(receiver.ok()) == 4, "four pushes")
        pushes = stats(http)["pushes"]
        log = http.get("/_sim/pushes").json()["pushes"]

    states = [dict(parse_qsl(r["body"].decode()))["message_state"] for r in receiver.ok()]
    assert sorted(states) == ["2", "2", "6", "6"]  # each twice
    due = {(e["event"], e["duplicate"]): e["due"] for e in log}
    assert due[("final", False)] < due[("sent", False)]  # the final one is due first
    assert due[("final", False)] < due[("final", True)] and due[("sent", False)] < due[("sent", True)]
    assert (pushes["delivered"], pushes["duplicates"]) == (4, 2)


def test_genesys_and_webex_pushes_carry_their_signatures(pushing: SimulatorServer, receiver: Receiver) -> None:
    with httpx.Client(base_url=pushing.url) as http:
        token = http.post("/oauth/token", auth=("c", "s"), data={"grant_type": "client_credentials"}).json()
        body = {"fromAddress": "+15559876543", "toAddress": "+15551234567", "toAddressMessengerType": "sms"}
        http.post(
            "/api/v2/conversations/messages/agentless",
            json={**body, "textBody": "x"},
            headers={"Authorization": f"Bearer {token['access_token']}"},
        )
        webex = {"deliverychannel": "sms", "channels": {"sms": {"text": "x"}}, "destination": [{"msisdn": ["1555"]}]}
        webex["destination"] = [{"msisdn": ["15551234567"]}]
        http.post("/resources/v1/messaging", json=webex, headers={"key": "k"})

        wait_until(lambda: len(receiver.ok()) >= 4, "four pushes")

    by_path = {}
    for r in receiver.ok():
        by_path.setdefault(r["path"], []).append(r)
    assert set(by_path) == {"/webhooks/genesys-cloud/", "/webhooks/webex-connect/"}
    assert all(r["headers"]["X-Hub-Signature-256"].startswith("sha256=") for r in by_path["/webhooks/genesys-cloud/"])
    # Webex Connect signs with the bare hex digest, as its documentation shows.
    assert all(
        re.fullmatch(r"[0-9a-f]{64}", r["headers"]["X-Hub-Signature"]) for r in by_path["/webhooks/webex-connect/"]
    )
    assert json.loads(by_path["/webhooks/genesys-cloud/"][0]["body"])["type"] == "Receipt"
    assert "deliveryInfoNotification" in json.loads(by_path["/webhooks/webex-connect/"][0]["body"])


def test_a_failed_push_is_retried_with_backoff_then_delivered(pushing: SimulatorServer, receiver: Receiver) -> None:
    receiver.failures = [503, 500]
    with httpx.Client(base_url=pushing.url) as http:
        configure(http, mix={"delivered": 1}, sent_delay=0.0, delay_min=5, delay_max=5)
        send_mt(http, "r-1", receipt=True)

        wait_until(lambda: len(receiver.ok()) == 1, "delivered after retries")
        pushes = stats(http)["pushes"]
        log = http.get("/_sim/pushes").json()["pushes"]

    assert [r["status"] for r in receiver.received] == [503, 500, 200]
    assert (pushes["attempts"], pushes["retries"], pushes["delivered"]) == (3, 2, 1)
    assert [e["attempt"] for e in log] == [1, 2, 3]


def test_a_push_to_an_app_that_is_down_gives_up_after_the_retries(http: httpx.Client) -> None:
    configure(
        http, push=True, app_url="http://127.0.0.1:9", mix={"delivered": 1}, push_retry_spacing=0.02, push_retries=2
    )
    send_mt(http, "down-1", receipt=True)

    wait_until(lambda: stats(http)["pushes"].get("gave_up") == 2, "gave up on both receipts")

    pushes = stats(http)["pushes"]
    assert (pushes["attempts"], pushes["retries"], pushes.get("delivered", 0)) == (6, 4, 0)


def test_a_push_the_app_refuses_is_not_retried(pushing: SimulatorServer, receiver: Receiver) -> None:
    receiver.failures = [401]
    with httpx.Client(base_url=pushing.url) as http:
        configure(http, mix={"silent": 1})
        send_mt(http, "refused-1", receipt=True)

        wait_until(lambda: stats(http)["pushes"].get("rejected") == 1, "rejected")
        assert stats(http)["pushes"]["attempts"] == 1
