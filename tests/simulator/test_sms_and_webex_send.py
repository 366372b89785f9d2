"""The SMS Aggregation MT endpoint and the Webex Connect messaging API, as the simulator serves them."""

from __future__ import annotations

import httpx
import pytest

from simulator import SimulatorServer
from tests.apprunner import wait_until
from tests.simulator.conftest import configure, send_mt, stats


def test_mt_with_the_services_parameters_is_acknowledged_with_its_message_id(http: httpx.Client) -> None:
    response = send_mt(http, "4f9c2b1e-7a0d", receipt=True, app_id="reminders", conversation_id="c-001")

    assert (response.status_code, response.text) == (200, "result=0")
    view = http.get("/_sim/messages/4f9c2b1e-7a0d").json()["messages"][0]
    assert (view["provider"], view["to"], view["conversationId"]) == ("genesys_sms", "15551234567", "c-001")


def test_mt_takes_to_from_body_as_aliases(http: httpx.Client) -> None:
    data = {"login": "a", "password": "b", "to": "+15551234567", "from": "55555", "body": "Hi", "message_id": "m-9"}

    assert http.post("/httpapi/receiver", data={**data, "to": "15551234567"}).text == "result=0"


def test_mt_sent_twice_with_one_message_id_creates_one_message(http: httpx.Client) -> None:
    first, second = send_mt(http, "dup-1"), send_mt(http, "dup-1")

    assert (first.text, second.text) == ("result=0", "result=7")  # 7: duplicate message id
    assert len(http.get("/_sim/messages/dup-1").json()["messages"]) == 1
    assert stats(http)["duplicate_sends"] == 1


@pytest.mark.parametrize(
    ("change", "code", "complaint"),
    [
        ({"password": ""}, 2, "authentication failure"),
        ({"message_id": " "}, 1, "message_id"),
        ({"phone_number": "call me"}, 1, "phone_number"),
        ({"phone_number": "+15551234567"}, 1, "phone_number"),  # "numeric and in international format"
        ({"sender": "+15559876543"}, 1, "sender"),
        ({"sender": "ACME"}, 1, "sender"),
        ({"priority": "URGENT"}, 1, "priority"),
        ({"receipt": "maybe"}, 1, "receipt"),
    ],
)
def test_mt_refuses_bad_requests_in_a_2xx_with_the_services_result_code(
    http: httpx.Client, change: dict, code: int, complaint: str
) -> None:
    data = {"login": "acme", "password": "pw", "phone_number": "15551234567", "sender": "5", "message": "Hi"}
    data = {"message_id": "m-1", **data, **change}

    response = http.post("/httpapi/receiver", data=data)

    assert (response.status_code, response.text) == (200, f"result={code}")
    assert complaint in response.headers["X-Simulator-Reason"]
    assert http.get("/_sim/messages/m-1").status_code == 404  # nothing taken


def test_mt_checks_logins_when_configured(http: httpx.Client) -> None:
    configure(http, sms_logins={"acme": "right"})

    assert send_mt(http, "m-1").text == "result=2"
    assert send_mt(http, "m-2", password="right").text == "result=0"


@pytest.mark.parametrize("code", [1, 2, 6, 98, 99])
def test_mt_results_answer_one_number_with_the_code_a_test_asks_for(http: httpx.Client, code: int) -> None:
    configure(http, mt_results={"15551230000": code})

    forced = send_mt(http, "m-1", phone_number="15551230000")
    other = send_mt(http, "m-2")

    assert (forced.status_code, forced.text, other.text) == (200, f"result={code}", "result=0")
    assert http.get("/_sim/messages/m-1").status_code == 404  # nothing taken
    configure(http, mt_results={})
    assert send_mt(http, "m-1", phone_number="15551230000").text == "result=0"


def webex_send(http: httpx.Client, body: dict, key: str = "service-key") -> httpx.Response:
    return http.post("/resources/v1/messaging", json=body, headers={"key": key} if key else {})


def test_webex_send_answers_one_transid_per_destination(http: httpx.Client) -> None:
    body = {
        "deliverychannel": "sms",
        "channels": {"sms": {"text": "Body", "senderid": "ACME"}},
        "destination": [
            {"msisdn": ["15551230001", "15551230002"], "correlationid": "corr-1"},
            {"msisdn": ["15551230003"]},
        ],
        "callbackData": "campaign-7",
    }

    response = webex_send(http, body)

    assert response.status_code == 200
    answers = response.json()["response"]
    assert [(a["code"], a["description"]) for a in answers] == [("1001", "Queued")] * 2
    assert answers[0]["correlationid"] == "corr-1"
    shared = http.get(f"/_sim/messages/{answers[0]['transid']}").json()["messages"]
    assert sorted(m["to"] for m in shared) == ["15551230001", "15551230002"]
    assert stats(http)["sends"]["webex_connect"] == 3


def test_webex_v1_has_no_email_channel(http: httpx.Client) -> None:
    """Send Message v1's deliverychannel is sms, voice, push, ...: email is Send Message API v2's."""
    body = {
        "deliverychannel": "email",
        "channels": {"email": {"subject": "Hello", "text": "Body", "from": "noreply@example.com"}},
        "destination": [{"email": ["a@example.com"]}],
    }

    response = webex_send(http, body)

    assert (response.status_code, response.json()["response"]["code"]) == (400, "7004")
    assert "/v2/messages" in response.json()["response"]["description"]
    assert stats(http)["sends"].get("webex_connect", 0) == 0


V2_EMAIL = {
    "channel": "email",
    "from": "news@acme.example",
    "to": [{"email": ["a@example.com", "b@example.com"], "correlationId": "corr-1"}],
    "options": {"fromName": "Acme News"},
    "content": {"type": "text", "subject": "Hello", "text": "Body"},
    "callbackData": "campaign-7",
}


def webex_v2(http: httpx.Client, body: dict, key: str = "service-key") -> httpx.Response:
    return http.post("/v2/messages", json=body, headers={"key": key} if key else {})


def test_webex_v2_email_answers_201_with_one_message_id_its_receipts_carry(http: httpx.Client) -> None:
    response = webex_v2(http, V2_EMAIL)

    assert response.status_code == 201, response.text
    answer = response.json()
    assert (answer["status"], answer["correlationId"]) == ("queued", "corr-1")
    assert answer["requestTimestamp"]
    sent = http.get(f"/_sim/messages/{answer['messageId']}").json()["messages"]
    assert sorted((m["channel"], m["to"], m["from"]) for m in sent) == [
        ("email", "a@example.com", "news@acme.example"),
        ("email", "b@example.com", "news@acme.example"),
    ]


@pytest.mark.parametrize(
    ("change", "code", "names"),
    [
        ({"channel": None}, "7003", "channel"),
        ({"channel": "whatsapp"}, "7004", "channel"),
        ({"from": None}, "7003", "from"),
        ({"from": "+15559876543"}, "7004", "from"),  # an email goes out from an email address
        ({"to": []}, "7003", "to"),
        ({"to": [{"msisdn": ["15551234567"]}]}, "7003", "to[0].email"),
        ({"to": [{"email": ["not an address"]}]}, "7004", "to[0].email"),
        ({"to": [{"email": "a@example.com"}]}, "7003", "to[0].email"),  # a list, as documented
        ({"content": None}, "7003", "content"),
        ({"content": {"subject": "Hello", "text": "Body"}}, "7003", "content.type"),
        ({"content": {"type": "markdown", "subject": "Hello", "text": "Body"}}, "7004", "content.type"),
        ({"content": {"type": "text", "text": "Body"}}, "7003", "content.subject"),
        ({"content": {"type": "text", "subject": "Hello"}}, "7003", "content.text"),
        ({"content": {"type": "html", "subject": "Hello", "text": "Body"}}, "7003", "content.html"),
        ({"notifyUrl": " https://example.com/n"}, "7004", "notifyUrl"),
        ({"options": {"fromName": 7}}, "7004", "options"),
    ],
)
def test_webex_v2_refuses_what_the_email_api_marks_mandatory_or_invalid(
    http: httpx.Client, change: dict, code: str, names: str
) -> None:
    body = {k: v for k, v in {**V2_EMAIL, **change}.items() if v is not None}

    response = webex_v2(http, body)

    assert (response.status_code, response.json()["code"]) == (400, code), response.text
    assert response.json()["message"].endswith(names)
    assert stats(http)["sends"].get("webex_connect", 0) == 0


def test_webex_v2_without_a_right_key_is_401_with_no_body(http: httpx.Client) -> None:
    configure(http, webex_service_keys=["good"])

    assert (webex_v2(http, V2_EMAIL, key="").status_code, webex_v2(http, V2_EMAIL, key="").content) == (401, b"")
    assert webex_v2(http, V2_EMAIL, key="bad").status_code == 401
    assert webex_v2(http, V2_EMAIL, key="good").status_code == 201


def test_webex_v2_sms_takes_text_or_unicode(http: httpx.Client) -> None:
    body = {"channel": "sms", "from": "ACME", "to": [{"msisdn": ["15551234567"]}]}

    assert webex_v2(http, {**body, "content": {"type": "unicode", "text": "Grüße ✓"}}).status_code == 201
    assert webex_v2(http, {**body, "content": {"type": "binary", "text": "x"}}).json()["code"] == "7004"


def test_webex_sms_send_and_transaction_status(sim: SimulatorServer, http: httpx.Client) -> None:
    configure(http, mix={"delivered": 1})
    body = {
        "deliverychannel": "sms",
        "channels": {"sms": {"text": "Hi", "senderid": "ACME"}},
        "destination": [{"msisdn": ["15551234567"]}],
    }
    transid = webex_send(http, body).json()["response"][0]["transid"]

    wait_until(lambda: http.get(f"/resources/v1/messaging/status/{transid}").json()[0]["status"] == "delivered", "")

    row = http.get(f"/resources/v1/messaging/status/{transid}").json()[0]
    assert (row["transactionid"], row["to"], row["channel"], row["error_code"]) == (transid, "15551234567", "SMS", None)


@pytest.mark.parametrize(
    ("body", "key", "status", "code"),
    [
        ({}, "", 401, "7002"),
        ({"deliverychannel": "sms"}, "k", 400, "7003"),
        ({"deliverychannel": "voice", "channels": {}, "destination": []}, "k", 400, "7004"),
        ({"deliverychannel": "email", "channels": {}, "destination": []}, "k", 400, "7004"),
        (
            {
                "deliverychannel": "sms",
                "channels": {"sms": {"text": "x"}},
                "destination": [{"msisdn": ["1555000000"]}] * 1001,
            },
            "k",
            400,
            "7009",
        ),
        (
            {"deliverychannel": "sms", "channels": {"sms": {"text": "x"}}, "destination": [{"msisdn": ["abc"]}]},
            "k",
            400,
            "7004",
        ),
    ],
)
def test_webex_send_refuses_with_the_messaging_api_codes(
    http: httpx.Client, body: dict, key: str, status: int, code: str
) -> None:
    response = webex_send(http, body, key)

    assert (response.status_code, response.json()["response"]["code"]) == (status, code)


def test_webex_checks_service_keys_when_configured(http: httpx.Client) -> None:
    configure(http, webex_service_keys=["good"])
    body = {"deliverychannel": "sms", "channels": {"sms": {"text": "x"}}, "destination": [{"msisdn": ["15551234567"]}]}

    assert webex_send(http, body, "bad").json()["response"]["code"] == "7001"
    assert webex_send(http, body, "good").status_code == 200


@pytest.mark.parametrize(
    ("text", "kind", "taken"),
    [
        ("Hello {you} €5", None, True),  # GSM 03.38, with its extension table
        ("Grüße", None, True),  # ü is in the default alphabet
        ("Zażółć", None, False),  # ż, ł, ć are not: Unicode, type 4
        ("Zażółć", "1", False),
        ("Zażółć", "4", True),
        ("✓ done", "4", True),
        ("x", "9", False),
    ],
)
def test_webex_v1_sms_outside_gsm_needs_type_4_unicode(http: httpx.Client, text: str, kind: str, taken: bool) -> None:
    sms = {"text": text, "senderid": "ACME", **({"type": kind} if kind else {})}
    body = {"deliverychannel": "sms", "channels": {"sms": sms}, "destination": [{"msisdn": ["15551234567"]}]}

    response = webex_send(http, body)

    assert response.status_code == (200 if taken else 400), response.text
    if not taken:
        assert response.json()["response"]["code"] == "7004"


@pytest.mark.parametrize("status", [200, 429])
def test_webex_v2_throttles_with_7020_in_v2s_own_body(http: httpx.Client, status: int) -> None:
    configure(http, webex_throttle_status=status, rate_429=1.0, fault_scopes=["webex_connect"])

    response = webex_v2(http, V2_EMAIL)

    assert (response.status_code, response.json()["code"]) == (status, "7020")
    assert response.headers["Retry-After"]
