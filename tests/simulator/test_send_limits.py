"""Send throughput limits: per provider (``send_limits``) and per sender (``sender_limit_per_second``), in a sliding
one-second window, refused with the provider's own refusal (a 429 and ``Retry-After``; SMS Aggregation's 2xx
``result=6``), counted in ``/_sim/stats``. Time is
stepped by hand through the simulator's clock, so nothing here depends on how fast the machine is."""

from __future__ import annotations

import itertools
from collections.abc import Callable
from typing import Any

import httpx
import pytest

from simulator import SimConfig, SimulatorServer
from tests.simulator.conftest import bearer, configure, get_token, stats

PROVIDERS = ("genesys_cloud", "genesys_sms", "webex_connect")
GENESYS_ERROR_KEYS = {"message", "code", "status", "contextId", "details", "errors"}
ids = itertools.count()


class Clock:
    """Stands in for ``Simulator.clock``: time moves only when a test says so."""

    def __init__(self, now: float = 1000.0) -> None:
        self.now = now

    def __call__(self) -> float:
        return self.now

    def advance(self, seconds: float) -> None:
        self.now += seconds


@pytest.fixture
def clock(sim: SimulatorServer) -> Clock:
    clock = Clock()
    sim.sim.clock = clock
    return clock


@pytest.fixture
def token(http: httpx.Client) -> str:
    return get_token(http)


def send(http: httpx.Client, token: str, provider: str, sender: str = "+15559876543") -> httpx.Response:
    """One send request to ``provider``'s send endpoint, from ``sender``."""
    to = "+15551234567"
    if provider == "genesys_cloud":
        body = {"fromAddress": sender, "toAddress": to, "toAddressMessengerType": "sms", "textBody": "Hi"}
        return http.post("/api/v2/conversations/messages/agentless", json=body, headers=bearer(token))
    if provider == "genesys_sms":  # numbers in international format, digits only
        data = {"login": "acme", "password": "pw", "phone_number": to[1:], "sender": sender.lstrip("+")}
        data["message"] = "Hi"
        return http.post("/httpapi/receiver", data={**data, "message_id": f"m-{next(ids)}"})
    body = {
        "deliverychannel": "sms",
        "channels": {"sms": {"text": "Hi", "senderid": sender}},
        "destination": [{"msisdn": [to.lstrip("+")]}],
    }
    return http.post("/resources/v1/messaging", json=body, headers={"key": "service-key"})


def accepted(response: httpx.Response) -> bool:
    if response.request.url.path == "/httpapi/receiver":  # SMS Aggregation: a 2xx either way, the outcome in the body
        assert (response.status_code, response.text) in ((200, "result=0"), (200, "result=6")), response.text
        return response.text == "result=0"
    assert response.status_code in (200, 202, 429), response.text
    return response.status_code != 429


def throughput(http: httpx.Client, provider: str) -> dict[str, Any]:
    return stats(http)["send_throughput"][provider]


# The provider's own answer to a refused send.
REFUSAL: dict[str, Callable[[httpx.Response], bool]] = {
    "genesys_cloud": lambda answer: (
        set(body := answer.json()) == GENESYS_ERROR_KEYS
        and (body["status"], body["code"]) == (429, "too.many.requests.retry.after")
        and answer.headers["Retry-After"] == "1"
    ),
    "genesys_sms": lambda answer: (answer.status_code, answer.text) == (200, "result=6"),  # throttled, resubmit
    "webex_connect": lambda answer: (
        answer.json() == {"response": {"code": "7020", "description": "You have reached maximum transaction limit"}}
        and answer.headers["Retry-After"] == "1"
    ),
}


@pytest.mark.parametrize("provider", PROVIDERS)
def test_at_limit_n_exactly_n_are_accepted_in_a_second_and_the_next_gets_429(
    http: httpx.Client, token: str, clock: Clock, provider: str
) -> None:
    configure(http, send_limits={provider: 3})

    answers = []
    for _ in range(4):
        answers.append(send(http, token, provider))
        clock.advance(0.1)

    assert [accepted(a) for a in answers] == [True, True, True, False]
    refused = answers[3]
    assert REFUSAL[provider](refused), refused.text
    assert stats(http)["messages"]["total"] == 3  # nothing created for the refused one
    assert throughput(http, provider) == {
        "accepted": 3,
        "over_limit": 1,
        "over_sender_limit": 0,
        "peak": 3,
        "sender_peak": 3,
        "limit": 3.0,
        "sender_limit": 0.0,
    }


@pytest.mark.parametrize("provider", PROVIDERS)
def test_the_window_slides_a_send_fits_once_the_oldest_is_a_second_old(
    http: httpx.Client, token: str, clock: Clock, provider: str
) -> None:
    configure(http, send_limits={provider: 2})
    assert accepted(send(http, token, provider))  # t = 0
    clock.advance(0.5)
    assert accepted(send(http, token, provider))  # t = 0.5

    clock.advance(0.25)
    assert not accepted(send(http, token, provider))  # t = 0.75: both still within (t - 1, t]
    clock.advance(0.25)
    assert accepted(send(http, token, provider))  # t = 1: the first has left
    assert not accepted(send(http, token, provider))  # t = 1: the one at 0.5 and the one just now

    counts = throughput(http, provider)
    assert (counts["accepted"], counts["over_limit"], counts["peak"]) == (3, 2, 2)


def test_retry_after_is_the_whole_seconds_until_the_window_has_room(http: httpx.Client, clock: Clock) -> None:
    # Below one a second, one send per 1/N seconds: 0.25 -> one in any 4 s.
    configure(http, send_limits={"webex_connect": 0.25})
    assert accepted(send(http, "", "webex_connect"))
    clock.advance(0.5)

    refused = send(http, "", "webex_connect")

    assert refused.status_code == 429
    assert refused.headers["Retry-After"] == "4"  # 3.5 s, in whole seconds
    clock.advance(3.5)
    assert accepted(send(http, "", "webex_connect"))


@pytest.mark.parametrize("provider", PROVIDERS)
def test_the_sender_limit_counts_each_sender_on_its_own(
    http: httpx.Client, token: str, clock: Clock, provider: str
) -> None:
    configure(http, sender_limit_per_second=2)

    first = [accepted(send(http, token, provider, sender="+15550000001")) for _ in range(3)]
    second = [accepted(send(http, token, provider, sender="+15550000002")) for _ in range(3)]

    assert first == second == [True, True, False]
    assert throughput(http, provider) == {
        "accepted": 4,
        "over_limit": 2,
        "over_sender_limit": 2,
        "peak": 4,
        "sender_peak": 2,
        "limit": 0.0,
        "sender_limit": 2.0,
    }


def test_one_sender_is_limited_per_provider(http: httpx.Client, token: str, clock: Clock) -> None:
    configure(http, sender_limit_per_second=1)

    assert accepted(send(http, token, "genesys_sms", sender="+15550000001"))
    assert accepted(send(http, token, "webex_connect", sender="+15550000001"))
    assert not accepted(send(http, token, "webex_connect", sender="+15550000001"))


def test_a_send_refused_by_the_sender_limit_uses_up_none_of_the_providers(
    http: httpx.Client, token: str, clock: Clock
) -> None:
    configure(http, send_limits={"webex_connect": 2}, sender_limit_per_second=1)

    assert accepted(send(http, token, "webex_connect", sender="A"))
    assert not accepted(send(http, token, "webex_connect", sender="A"))  # the sender's limit
    assert accepted(send(http, token, "webex_connect", sender="B"))  # the provider still had room for one
    assert not accepted(send(http, token, "webex_connect", sender="C"))  # the provider's limit

    counts = throughput(http, "webex_connect")
    assert (counts["accepted"], counts["over_limit"], counts["over_sender_limit"]) == (2, 2, 1)


def test_a_webex_call_with_many_destinations_counts_once(http: httpx.Client, clock: Clock) -> None:
    configure(http, send_limits={"webex_connect": 1})
    body = {
        "deliverychannel": "sms",
        "channels": {"sms": {"text": "Hi", "senderid": "ACME"}},
        "destination": [{"msisdn": ["15551234567"]}, {"msisdn": ["15551234568"]}],
    }

    response = http.post("/resources/v1/messaging", json=body, headers={"key": "k"})

    assert response.status_code == 200
    assert len(response.json()["response"]) == 2
    assert throughput(http, "webex_connect")["accepted"] == 1


def test_a_repeated_mt_message_id_counts_against_no_limit(http: httpx.Client, clock: Clock) -> None:
    configure(http, send_limits={"genesys_sms": 1})
    data = {"login": "a", "password": "b", "phone_number": "15551234567", "sender": "5", "message": "Hi"}

    assert http.post("/httpapi/receiver", data={**data, "message_id": "once"}).text == "result=0"
    again = http.post("/httpapi/receiver", data={**data, "message_id": "once"})
    other = http.post("/httpapi/receiver", data={**data, "message_id": "other"})

    assert again.text == "result=7"  # duplicate message id: the first copy was taken
    assert other.text == "result=6"  # throttled


def test_the_genesys_cloud_refusal_keeps_the_rate_limit_headers(http: httpx.Client, token: str, clock: Clock) -> None:
    configure(http, send_limits={"genesys_cloud": 1})
    send(http, token, "genesys_cloud")

    refused = send(http, token, "genesys_cloud")

    assert refused.status_code == 429
    assert refused.headers["inin-ratelimit-allowed"] == "300"
    assert "rate_limited" not in stats(http)["faults"]  # that is the token's budget, not the send limit


def test_a_burst_as_fast_as_possible_never_has_more_than_the_limit_in_a_second(http: httpx.Client) -> None:
    """On the real clock: whatever the machine's speed, the first N go through and no second holds more than N."""
    configure(http, send_limits={"genesys_sms": 5})

    answers = [accepted(send(http, "", "genesys_sms")) for _ in range(10)]

    assert answers[:5] == [True] * 5
    counts = throughput(http, "genesys_sms")
    assert counts["accepted"] == sum(answers) == stats(http)["messages"]["total"]
    assert counts["accepted"] + counts["over_limit"] == 10
    assert counts["peak"] <= 5


def test_limits_are_off_by_default_and_changed_at_run_time(http: httpx.Client, token: str, clock: Clock) -> None:
    assert SimConfig().send_limits == {} and SimConfig().sender_limit_per_second == 0
    assert all(accepted(send(http, token, "webex_connect")) for _ in range(20))

    shown = configure(http, send_limits={"webex_connect": 1}, sender_limit_per_second=5)
    assert (shown["send_limits"], shown["sender_limit_per_second"]) == ({"webex_connect": 1.0}, 5.0)
    clock.advance(1)
    assert accepted(send(http, token, "webex_connect"))
    assert not accepted(send(http, token, "webex_connect"))

    configure(http, send_limits={})
    assert accepted(send(http, token, "webex_connect"))
    assert http.get("/_sim/config").json()["send_limits"] == {}


def test_reset_with_tokens_forgets_the_windows_and_reset_zeroes_the_counts(http: httpx.Client, clock: Clock) -> None:
    configure(http, send_limits={"genesys_sms": 1})
    assert accepted(send(http, "", "genesys_sms"))
    assert not accepted(send(http, "", "genesys_sms"))

    assert http.post("/_sim/reset", json={"tokens": True}).status_code == 200

    assert throughput(http, "genesys_sms")["over_limit"] == 0
    assert accepted(send(http, "", "genesys_sms"))


@pytest.mark.parametrize(
    ("change", "complaint"),
    [
        ({"send_limits": {"webex_connect": -1}}, "send_limits['webex_connect']"),
        ({"send_limits": {"genesys_sms": "fast"}}, "send_limits['genesys_sms']"),
        ({"send_limits": {"genesys_sms": True}}, "send_limits['genesys_sms']"),
        ({"send_limits": {"twilio": 1}}, "unknown provider"),
        ({"send_limits": [1]}, "must be an object"),
        ({"sender_limit_per_second": -0.5}, "sender_limit_per_second"),
        ({"sender_limit_per_second": "1"}, "sender_limit_per_second"),
        ({"conversation_idle_seconds": -1}, "conversation_idle_seconds"),
    ],
)
def test_config_refuses_impossible_limits(http: httpx.Client, change: dict[str, Any], complaint: str) -> None:
    response = http.post("/_sim/config", json=change)

    assert response.status_code == 400
    assert complaint in response.json()["error"]
    assert http.get("/_sim/config").json()["send_limits"] == {}
