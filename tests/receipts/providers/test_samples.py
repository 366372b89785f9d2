"""The providers' own sample payloads (tests/samples, vendored; `make check-samples` compares them with the
originals) parse as they should; malformed bodies are refused with a message naming the problem; one receipt has
one dedupe key."""

from __future__ import annotations

import json
import re
from datetime import UTC, datetime, timedelta, timezone
from pathlib import Path
from typing import Any, NamedTuple

import pytest

from receipts.machine import status_of
from receipts.normalized import MalformedReceipt, NormalizedReceipt, dedupe_key
from receipts.providers.base import Provider
from receipts.providers.generic import Generic
from receipts.providers.genesys_cloud.parser import GenesysCloud
from receipts.providers.genesys_sms import GenesysSms
from receipts.providers.webex_connect import WebexConnect
from tests.conftest import SAMPLES, sample, sample_json

FORM = "application/x-www-form-urlencoded"
JSON = "application/json"
IST = timezone(timedelta(hours=5, minutes=30))
EDT = timezone(timedelta(hours=-4))


def as_json(data: Any) -> bytes:
    return json.dumps(data).encode()


def only(receipts: list[NormalizedReceipt]) -> NormalizedReceipt:
    assert len(receipts) == 1, receipts
    return receipts[0]


def utc(text: str) -> datetime:
    return datetime.fromisoformat(text).replace(tzinfo=UTC)


# Genesys Cloud CX: the example MessageData in genesys-cloud/README.md

GENESYS_CLOUD_README = "genesys-cloud/README.md"


def genesys_cloud_readme() -> str:
    return sample(GENESYS_CLOUD_README).decode()


def genesys_cloud_example() -> bytes:
    blocks = re.findall(r"```json\n(.*?)```", genesys_cloud_readme(), re.DOTALL)
    assert len(blocks) == 1, "genesys-cloud/README.md should hold one JSON example"
    return blocks[0].encode()


def test_genesys_cloud_readme_message_data_gives_its_receipts() -> None:
    receipts = GenesysCloud().parse(genesys_cloud_example(), JSON)

    # The top-level delivery-success repeats the Delivered receipt, so it adds nothing of its own.
    assert [(r.provider_message_id, r.occurred_at, status_of(r.outcome)) for r in receipts] == [
        ("8c1f5e3a2b7d4c9e", utc("2026-11-20T10:15:03.020"), "sent"),
        ("8c1f5e3a2b7d4c9e", utc("2026-11-20T10:15:09.480"), "delivered"),
    ]
    assert all(r.provider == "genesys_cloud" for r in receipts)
    assert all(not r.outcome.unmapped and not r.outcome.engagement for r in receipts)


def test_genesys_cloud_readme_message_data_receipts_carry_its_recipient_and_channel() -> None:
    receipts = GenesysCloud().parse(genesys_cloud_example(), JSON)

    assert {(r.to, r.channel) for r in receipts} == {("+15551234567", "sms")}


def test_genesys_cloud_bulk_answer_gives_the_same_receipts_as_each_message_data() -> None:
    message_data = json.loads(genesys_cloud_example())
    single = GenesysCloud().parse(genesys_cloud_example(), JSON)

    bulk = GenesysCloud().parse(as_json({"entities": [message_data]}), JSON)

    assert [(r.key, r.outcome) for r in bulk] == [(r.key, r.outcome) for r in single]


def test_genesys_cloud_every_status_and_reason_named_in_the_readme_is_mapped() -> None:
    readme = genesys_cloud_readme()
    statuses = re.search(r"`status` is one of (.*?)\.\n", readme)
    reasons = re.search(r"the codes are\s+(.*?)\.\n", readme, re.DOTALL)
    assert statuses and reasons
    status_names = [s.strip() for s in statuses.group(1).split(",")]
    reason_codes = [r.strip() for r in reasons.group(1).split(",")]
    assert len(status_names) == 9 and len(reason_codes) == 13

    message_data = json.loads(genesys_cloud_example())
    for status in status_names:
        # A failure takes its meaning from a reason; give it one the README names.
        data = {**message_data, "status": status, "normalizedReceipts": [], "reasons": [{"code": reason_codes[0]}]}
        assert not only(GenesysCloud().parse(as_json(data), JSON)).outcome.unmapped, status or "no status"
    for code in reason_codes:
        receipt = {"type": "Receipt", "status": "Failed", "id": "m-1", "reasons": [{"code": code}]}
        outcome = only(GenesysCloud().parse(as_json(receipt), JSON)).outcome
        assert (outcome.unmapped, outcome.category != "") == (False, True), code


# Genesys SMS Aggregation: the example bodies in genesys-sms/README.md


GENESYS_SMS_README = "genesys-sms/README.md"


class SmsExample(NamedTuple):
    message_id: str
    status: str
    category: str
    retryable: bool
    details: dict[str, str]


REMINDER = "4f9c2b1e-7a0d-4c1e-9a51-2d8f3e6b7c10"
ECHOED = {"app_id": "reminders", "conversation_id": "c-001"}
GENESYS_SMS_EXAMPLES = [
    SmsExample(REMINDER, "sent", "", False, ECHOED),  # 6 accepted by aggregator
    SmsExample(REMINDER, "delivered", "", False, ECHOED),  # 2 delivered
    SmsExample("0b7e51d2-93aa-4e0f-8f0c-6c1d2a9e4b33", "rejected", "carrier_throttle", True, {}),  # 8 rejected, 6
]


def genesys_sms_readme() -> str:
    return sample(GENESYS_SMS_README).decode()


def genesys_sms_examples() -> list[bytes]:
    return [line.encode() for line in re.findall(r"^type=receipt&.*$", genesys_sms_readme(), re.MULTILINE)]


def test_genesys_sms_readme_holds_the_examples_tested_here() -> None:
    assert len(genesys_sms_examples()) == len(GENESYS_SMS_EXAMPLES)


@pytest.mark.parametrize("index", range(len(GENESYS_SMS_EXAMPLES)))
def test_genesys_sms_readme_example_parses(index: int) -> None:
    expected = GENESYS_SMS_EXAMPLES[index]

    receipt = only(GenesysSms().parse(genesys_sms_examples()[index], FORM))

    assert receipt.provider == "genesys_sms"
    assert receipt.provider_message_id == expected.message_id
    # The service names no recipient and no time: the message id finds the message, our clock stands in.
    assert (receipt.to, receipt.occurred_at, receipt.channel) == ("", None, "sms")
    assert (status_of(receipt.outcome), receipt.outcome.category, receipt.outcome.retryable) == (
        expected.status,
        expected.category,
        expected.retryable,
    )
    assert receipt.details == expected.details


def test_genesys_sms_every_state_and_result_code_named_in_the_readme_is_mapped() -> None:
    rows = dict(re.findall(r"^\| (message_state|result_code) \| (.*) \|$", genesys_sms_readme(), re.MULTILINE))
    states = [int(n) for n in re.findall(r"(\d+) [a-z]", rows["message_state"])]
    results = [int(n) for n in re.findall(r"(\d+) [a-z]", rows["result_code"])]
    assert states == list(range(1, 9))
    assert results == [0, 1, 2, 3, 4, 5, 6, 7, 8, 98, 99]

    for state in states:
        body = f"type=receipt&message_id=m-1&message_state={state}&result_code=1".encode()
        assert not only(GenesysSms().parse(body, FORM)).outcome.unmapped, state
    for result in results[1:]:  # 0 is success: it says nothing about a failure
        body = f"type=receipt&message_id=m-1&message_state=5&result_code={result}".encode()
        assert not only(GenesysSms().parse(body, FORM)).outcome.unmapped, result


# Webex Connect


class WebexExample(NamedTuple):
    transid: str
    to: str
    occurred_at: datetime
    status: str | None
    engagement: str = ""
    category: str = ""
    details: dict[str, str] = {}


TRANSID = "4b72d8a2-290d-49e2-993e-3bd8edf31c81"
DESTINATION = "destination@domain.tld"
CHROME = (
    "Mozilla/5.0 (Windows NT 10.0; Win64; x64) AppleWebKit/537.36 (KHTML, like Gecko) "
    "Chrome/125.0.6422.140 Safari/537.36"
)
WEBEX_SAMPLES = {
    "email-7240-failed.json": WebexExample(
        "44970e48-6eae-493f-9262-4258f116771d",
        "bouncetest@domain.tld",
        datetime(2023, 2, 7, 3, 52, 17, 715000, tzinfo=IST),
        "rejected",
        category="suppressed",
    ),
    "email-7241-failed.json": WebexExample(
        "9736689f-0e7c-4b48-a517-79ea21170354",
        DESTINATION,
        utc("2018-07-26T09:52:46.339"),
        "rejected",
        category="opted_out",
    ),
    "email-7500-delivered.json": WebexExample(
        TRANSID, DESTINATION, datetime(2023, 2, 7, 3, 51, 4, 662000, tzinfo=IST), "delivered"
    ),
    "email-7501-submitted.json": WebexExample(
        TRANSID, DESTINATION, datetime(2023, 2, 7, 3, 51, 3, 311000, tzinfo=IST), "sent"
    ),
    "email-7502-read.json": WebexExample(
        "c71c2927-6bb3-2021-9c8e-226b48d66ba0_0",
        DESTINATION,
        datetime(2023, 4, 14, 22, 13, 17, 290000, tzinfo=EDT),
        "delivered",
        engagement="read",
    ),
    "email-7520-bounce.json": WebexExample(
        TRANSID,
        DESTINATION,
        datetime(2023, 2, 7, 3, 51, 52, 322000, tzinfo=IST),
        "bounced",
        category="invalid_destination",
        details={"bounce_type": "Permanent_General"},
    ),
    "email-7521-complaint.json": WebexExample(
        # No offset in the sample: naive provider times are UTC.
        TRANSID,
        DESTINATION,
        utc("2016-07-21T12:44:23.644"),
        None,
        engagement="complained",
    ),
    "email-7522-not-verified.json": WebexExample(
        TRANSID, DESTINATION, utc("2016-07-21T12:44:23.644"), "rejected", category="sender_config"
    ),
    "email-7523-failed.json": WebexExample(
        "1a893a24-6517-486b-82ef-e7801be60f88",
        "destination@invalid",
        utc("2021-03-04T17:00:07.538"),
        "failed",
        category="invalid_destination",
    ),
    "email-7524-failed.json": WebexExample(
        "3df50805-464c-4d6c-99fd-c4197789538d",
        "tevskeran.dhedldtaggggggggggggggggggggggggghhhhhhhhhhhhhhhhhhh5df@domain.tld",
        utc("2021-06-04T12:52:04.009"),
        "failed",
        category="invalid_destination",
    ),
    "email-7528-clicked.json": WebexExample(
        TRANSID,
        DESTINATION,
        utc("2016-07-21T12:44:23.644"),
        None,
        engagement="clicked",
        details={"url": "https://your.link.tld/files/sample.pdf", "ip": "192.0.2.1", "user_agent": CHROME},
    ),
}


class InboundExample(NamedTuple):
    address: str
    engagement: str
    occurred_at: datetime
    event_id: str


WEBEX_INBOUND_SAMPLES = {
    # The sample's "from" is "[sender@domain.tld]": the brackets are not part of the address.
    "inbound-mo.json": InboundExample(
        "sender@domain.tld", "replied", utc("2017-09-27T18:56:42.099"), "1866c6b7-4f53-4ad3-bf40-e4a30ac6c114"
    ),
    "inbound-subscribe.json": InboundExample(
        "domain@customer.tld",
        "subscribed",
        datetime(2023, 12, 8, 23, 33, 51, 900000, tzinfo=IST),
        "80699122-9dbb-45eb-836b-ea7d8dd1640b",
    ),
    "inbound-unsubscribe.json": InboundExample(
        "customer@domain.tld",
        "unsubscribed",
        datetime(2023, 12, 8, 23, 33, 44, 823000, tzinfo=IST),
        "a8169af2-3fa3-449f-ad61-71bcd424d626",
    ),
}
WEBEX_README = "webex-connect/README.md"


def parse_webex_sample(name: str) -> NormalizedReceipt:
    return only(WebexConnect().parse(sample(f"webex-connect/{name}"), JSON))


@pytest.mark.parametrize(("name", "expected"), WEBEX_SAMPLES.items())
def test_webex_connect_sample_parses(name: str, expected: WebexExample) -> None:
    receipt = parse_webex_sample(name)

    assert receipt.provider == "webex_connect"
    assert (receipt.provider_message_id, receipt.to, receipt.channel) == (expected.transid, expected.to, "email")
    assert receipt.occurred_at == expected.occurred_at
    assert receipt.provider_code == name.split("-")[1]
    outcome = receipt.outcome
    assert (status_of(outcome), outcome.engagement, outcome.category) == (
        expected.status,
        expected.engagement,
        expected.category,
    )
    assert outcome.unmapped is False
    assert receipt.is_inbound is False
    assert expected.details.items() <= receipt.details.items()


def test_webex_connect_bounce_sample_keeps_the_smtp_answer() -> None:
    receipt = parse_webex_sample("email-7520-bounce.json")

    assert receipt.details["additional_info"].startswith("5.1.1|failed|smtp; 550-5.1.1")
    assert receipt.outcome.soft_bounce is False


@pytest.mark.parametrize(("name", "expected"), WEBEX_INBOUND_SAMPLES.items())
def test_webex_connect_inbound_sample_is_an_address_event(name: str, expected: InboundExample) -> None:
    receipt = parse_webex_sample(name)

    assert receipt.is_inbound is True
    assert (receipt.provider_message_id, receipt.address, receipt.channel) == ("", expected.address, "email")
    assert (status_of(receipt.outcome), receipt.outcome.engagement) == (None, expected.engagement)
    assert receipt.occurred_at == expected.occurred_at
    assert receipt.details["event_id"] == expected.event_id


def test_webex_connect_inbound_mo_does_not_keep_attachments_or_html() -> None:
    raw = parse_webex_sample("inbound-mo.json").raw

    assert raw["event"] == "MO"
    assert not {"attachments", "htmlMessage"} & raw.keys()


@pytest.mark.parametrize(
    ("text", "engagement"),
    [
        *[(word, "unsubscribed") for word in ["STOP", "UNSUBSCRIBE", "END", "QUIT", "STOPALL", "REVOKE", "OPTOUT"]],
        ("CANCEL", "unsubscribed"),
        (" stop ", "unsubscribed"),
        ("START", "subscribed"),
        ("Start", "subscribed"),
        ("Thanks, see you tomorrow", "replied"),
        ("please stop texting me at night", "replied"),
    ],
)
def test_webex_connect_inbound_sms_keywords(text: str, engagement: str) -> None:
    mo = {**sample_json("webex-connect/inbound-mo.json"), "channel": "sms", "from": "15551234567"}
    mo["textMessage"] = text

    receipt = only(WebexConnect().parse(as_json(mo), JSON))

    assert (receipt.address, receipt.channel, receipt.outcome.engagement) == ("15551234567", "sms", engagement)


def test_webex_connect_email_reply_saying_stop_is_only_a_reply() -> None:
    mo = {**sample_json("webex-connect/inbound-mo.json"), "textMessage": "STOP"}

    assert only(WebexConnect().parse(as_json(mo), JSON)).outcome.engagement == "replied"


def test_webex_connect_readme_bounce_subtypes_each_map() -> None:
    readme = sample(WEBEX_README).decode()
    assert "a real\nbounce carries one of them" in readme
    bounce = sample_json("webex-connect/email-7520-bounce.json")
    subtypes = bounce["deliveryInfoNotification"]["deliveryInfo"]["Description"].split("/")
    assert len(subtypes) == 8

    for subtype in subtypes:
        bounce["deliveryInfoNotification"]["deliveryInfo"]["Description"] = subtype
        receipt = only(WebexConnect().parse(as_json(bounce), JSON))
        expected = ("bounced", False) if subtype.startswith("Permanent_") else ("deferred", True)
        assert (receipt.outcome.status, receipt.outcome.soft_bounce) == expected, subtype
        assert receipt.details["bounce_type"] == subtype


def test_webex_connect_readme_sms_codes_use_the_email_envelope() -> None:
    readme = sample(WEBEX_README).decode()
    family = re.search(r"same code family \((.*?)\)", readme, re.DOTALL)
    assert family
    codes = re.findall(r"\b(7\d{3})\b", family.group(1))
    assert codes == ["7501", "7500", "7101", "7102", "7107", "7208"]
    notification = sample_json("webex-connect/email-7500-delivered.json")
    info = notification["deliveryInfoNotification"]["deliveryInfo"]
    info.update(deliveryChannel="SMS", destinationType="msisdn", destination="15551234567")

    for code in codes:
        info.update(code=code, deliveryStatus="Failed" if code not in ("7500", "7501") else "Delivered")
        receipt = only(WebexConnect().parse(as_json(notification), JSON))
        assert (receipt.channel, receipt.to, receipt.provider_code) == ("sms", "15551234567", code)
        assert receipt.outcome.status is not None and not receipt.outcome.unmapped, code


def test_webex_connect_readme_recipients_of_one_email_are_told_apart_by_destination() -> None:
    readme = sample(WEBEX_README).decode()
    assert "told apart by `destination`" in readme
    first = sample_json("webex-connect/email-7500-delivered.json")
    second = json.loads(json.dumps(first))
    second["deliveryInfoNotification"]["deliveryInfo"]["destination"] = "Second@Domain.tld"

    receipts = WebexConnect().parse(as_json([first, second]), JSON)

    assert [(r.provider_message_id, r.to) for r in receipts] == [
        (TRANSID, DESTINATION),
        (TRANSID, "Second@Domain.tld"),
    ]
    assert receipts[0].key != receipts[1].key


# Generic JSON


class GenericExample(NamedTuple):
    occurred_at: datetime
    status: str
    category: str
    code: str


GENERIC_SAMPLES = {
    "delivered.json": GenericExample(utc("2023-10-27T14:32:15"), "delivered", "", "delivered"),
    "failed-carrier-rejected.json": GenericExample(
        utc("2023-10-27T14:33:02"), "failed", "permanent_block", "carrier_rejected"
    ),
}


@pytest.mark.parametrize(("name", "expected"), GENERIC_SAMPLES.items())
def test_generic_sample_parses(name: str, expected: GenericExample) -> None:
    receipt = only(Generic().parse(sample(f"generic/{name}"), JSON))

    assert receipt.provider == "generic"
    assert receipt.provider_message_id == "msg-7a3b9c2d-1e4f-5a6b-7c8d-9e0f1a2b3c4d"
    assert (receipt.to, receipt.channel) == ("+15551234567", "sms")
    assert receipt.occurred_at == expected.occurred_at
    assert (status_of(receipt.outcome), receipt.outcome.category) == (expected.status, expected.category)
    assert receipt.outcome.unmapped is False
    assert expected.code in receipt.provider_code
    assert receipt.details["conversation_id"] == "conv-8f4e2a1b-9c3d-4e5f-a6b7-8d9e0f1a2b3c"


# Every sample is tested

COVERED = {
    GENESYS_CLOUD_README,
    GENESYS_SMS_README,
    WEBEX_README,
    *(f"webex-connect/{name}" for name in [*WEBEX_SAMPLES, *WEBEX_INBOUND_SAMPLES]),
    *(f"generic/{name}" for name in GENERIC_SAMPLES),
}


def files_under(root: Path) -> set[str]:
    return {p.relative_to(root).as_posix() for p in root.rglob("*") if p.is_file()}


def test_every_sample_file_is_covered_by_a_test() -> None:
    assert files_under(SAMPLES) == COVERED


def test_webex_connect_and_generic_samples_are_all_json_bodies_we_test() -> None:
    on_disk = {f for f in files_under(SAMPLES) if f.endswith(".json")}

    assert on_disk == {f for f in COVERED if f.endswith(".json")}


# Malformed bodies


class Malformed(NamedTuple):
    provider: Provider
    body: bytes
    content_type: str
    names: str  # a regular expression the error message must match


def message_data(**fields: Any) -> bytes:
    return as_json({"id": "m-1", "status": "delivered", "timestamp": "2026-11-20T10:15:02Z", **fields})


def webex(info: dict[str, Any] | None = None, **envelope: Any) -> bytes:
    delivery = {"code": "7500", "deliveryStatus": "Delivered", "timeStamp": "2023-02-07T03:51:04Z"}
    notification = {"transid": "t-1", "deliveryInfo": {**delivery, **(info or {})}, **envelope}
    return as_json({"deliveryInfoNotification": {k: v for k, v in notification.items() if v is not None}})


def generic(**fields: Any) -> bytes:
    data = {"id": "msg-1", "status": "delivered", "timestamp": "2023-10-27T14:32:15Z", **fields}
    return as_json({k: v for k, v in data.items() if v is not None})


GC, SMS, WX, GN = GenesysCloud(), GenesysSms(), WebexConnect(), Generic()
MALFORMED = {
    "genesys-cloud not json": Malformed(GC, b"{not json", JSON, "not valid JSON"),
    "genesys-cloud not utf-8": Malformed(GC, b'{"id": "\xff"}', JSON, "UTF-8"),
    "genesys-cloud a string": Malformed(GC, b'"delivered"', JSON, "expected a JSON object"),
    "genesys-cloud empty list": Malformed(GC, b"[]", JSON, "no receipt"),
    "genesys-cloud no status": Malformed(GC, as_json({"id": "m-1"}), JSON, "'status'"),
    "genesys-cloud empty status": Malformed(GC, message_data(status=""), JSON, "'status'"),
    "genesys-cloud receipt no status": Malformed(
        GC, as_json({"type": "Receipt", "channel": {"messageId": "m-1"}}), JSON, "'status'"
    ),
    "genesys-cloud receipt no id": Malformed(
        GC, as_json({"type": "Receipt", "status": "Delivered"}), JSON, "messageId"
    ),
    "genesys-cloud reasons not a list": Malformed(
        GC, as_json({"type": "Receipt", "status": "Failed", "id": "m-1", "reasons": "ServerError"}), JSON, "'reasons'"
    ),
    "genesys-cloud channel not an object": Malformed(
        GC, as_json({"type": "Receipt", "status": "Sent", "id": "m-1", "channel": "sms"}), JSON, "'channel'"
    ),
    "genesys-cloud receipts not a list": Malformed(
        GC, message_data(normalizedReceipts={"status": "Sent"}), JSON, "'normalizedReceipts'"
    ),
    "genesys-cloud bad timestamp": Malformed(GC, message_data(timestamp="yesterday"), JSON, "yesterday.*ISO 8601"),
    "genesys-cloud timestamp not a string": Malformed(GC, message_data(timestamp=True), JSON, "timestamp"),
    "genesys-cloud id an object": Malformed(GC, message_data(id={"value": "m-1"}), JSON, "'id'"),
    "genesys-sms empty body": Malformed(SMS, b"", FORM, "'type'"),
    "genesys-sms not form-encoded": Malformed(SMS, b"just some text", FORM, "form-encoded"),
    "genesys-sms not utf-8": Malformed(SMS, b"type=receipt&message_id=\xff", FORM, "UTF-8"),
    "genesys-sms wrong type": Malformed(SMS, b"type=mo&message_id=m-1&message_state=2", FORM, "'type'.*'mo'"),
    "genesys-sms no message_id": Malformed(SMS, b"type=receipt&message_state=2", FORM, "'message_id'"),
    "genesys-sms no message_state": Malformed(SMS, b"type=receipt&message_id=m-1", FORM, "'message_state'"),
    "genesys-sms state not a number": Malformed(
        SMS, b"type=receipt&message_id=m-1&message_state=delivered", FORM, "'message_state'.*integer"
    ),
    "genesys-sms result not a number": Malformed(
        SMS, b"type=receipt&message_id=m-1&message_state=5&result_code=x", FORM, "'result_code'.*integer"
    ),
    "genesys-sms json not an object": Malformed(SMS, b"[1]", JSON, "expected a JSON object"),
    "genesys-sms json broken": Malformed(SMS, b"{", JSON, "not valid JSON"),
    "webex not json": Malformed(WX, b"<xml/>", JSON, "not valid JSON"),
    "webex unknown shape": Malformed(WX, as_json({"hello": "world"}), JSON, "deliveryInfoNotification"),
    "webex empty list": Malformed(WX, b"[]", JSON, "no receipt"),
    "webex list of numbers": Malformed(WX, b"[1]", JSON, "expected a JSON object"),
    "webex notification not an object": Malformed(WX, as_json({"deliveryInfoNotification": "x"}), JSON, "object"),
    "webex no deliveryInfo": Malformed(
        WX, as_json({"deliveryInfoNotification": {"transid": "t-1"}}), JSON, "'deliveryInfo'"
    ),
    "webex no transid": Malformed(WX, webex(transid=None), JSON, "'transid'"),
    "webex no code": Malformed(WX, webex({"code": None}), JSON, "'code'"),
    "webex bad timeStamp": Malformed(WX, webex({"timeStamp": "07/02/2023"}), JSON, "ISO 8601"),
    "webex inbound no from": Malformed(WX, as_json({"event": "Unsubscribe", "channel": "Email"}), JSON, "'from'"),
    "webex transid an object": Malformed(WX, webex(transid={"id": "t-1"}), JSON, "'transid'"),
    "generic not json": Malformed(GN, b"id=1&status=delivered", JSON, "not valid JSON"),
    "generic empty list": Malformed(GN, b"[]", JSON, "no receipt"),
    "generic list of strings": Malformed(GN, b'["delivered"]', JSON, "expected a JSON object"),
    "generic no id": Malformed(GN, generic(id=None), JSON, "'id'"),
    "generic no status": Malformed(GN, generic(status=None), JSON, "'status'.*'deliveryStatus'"),
    "generic metadata not an object": Malformed(GN, generic(metadata=["a"]), JSON, "'metadata'"),
    "generic bad timestamp": Malformed(GN, generic(timestamp="27/10/2023"), JSON, "ISO 8601"),
    "generic id an object": Malformed(GN, generic(id={"value": "msg-1"}), JSON, "'id'"),
}


@pytest.mark.parametrize("case", MALFORMED.values(), ids=MALFORMED.keys())
def test_malformed_body_is_refused_with_a_message_naming_the_problem(case: Malformed) -> None:
    with pytest.raises(MalformedReceipt, match=case.names):
        case.provider.parse(case.body, case.content_type)


# Dedupe keys


def keys(provider: Provider, body: bytes, content_type: str = JSON) -> str:
    return dedupe_key(provider.parse(body, content_type))


def reversed_keys(data: dict[str, Any]) -> dict[str, Any]:
    return {k: reversed_keys(v) if isinstance(v, dict) else v for k, v in reversed(data.items())}


@pytest.mark.parametrize(
    ("provider", "relative"),
    [(WX, f"webex-connect/{name}") for name in [*WEBEX_SAMPLES, *WEBEX_INBOUND_SAMPLES]]
    + [(GN, f"generic/{name}") for name in GENERIC_SAMPLES],
)
def test_same_receipt_in_a_reordered_envelope_has_the_same_dedupe_key(provider: Provider, relative: str) -> None:
    data = sample_json(relative)

    assert keys(provider, as_json(reversed_keys(data))) == keys(provider, sample(relative))
    assert keys(provider, as_json([data])) == keys(provider, sample(relative))


def test_same_receipts_in_another_order_have_the_same_dedupe_key() -> None:
    delivered, failed = sample_json("generic/delivered.json"), sample_json("generic/failed-carrier-rejected.json")

    assert keys(GN, as_json([delivered, failed])) == keys(GN, as_json([failed, delivered]))


def test_genesys_cloud_message_data_with_receipts_reordered_has_the_same_dedupe_key() -> None:
    data = json.loads(genesys_cloud_example())
    reordered = {
        **reversed_keys(data),
        "normalizedReceipts": [reversed_keys(r) for r in data["normalizedReceipts"]][::-1],
    }

    assert keys(GC, as_json(reordered)) == keys(GC, genesys_cloud_example())
    assert keys(GC, as_json({"entities": [data]})) == keys(GC, genesys_cloud_example())


def test_genesys_sms_receipt_with_fields_reordered_has_the_same_dedupe_key() -> None:
    body = genesys_sms_examples()[0]
    reordered = "&".join(reversed(body.decode().split("&"))).encode()

    assert keys(SMS, reordered, FORM) == keys(SMS, body, FORM)


def test_different_receipts_have_different_dedupe_keys() -> None:
    delivered = sample_json("generic/delivered.json")
    webex_delivered = sample_json("webex-connect/email-7500-delivered.json")
    other_recipient = json.loads(json.dumps(webex_delivered))
    other_recipient["deliveryInfoNotification"]["deliveryInfo"]["destination"] = "other@domain.tld"
    click = sample_json("webex-connect/email-7528-clicked.json")
    other_click = json.loads(json.dumps(click))
    other_click["deliveryInfoNotification"]["deliveryInfo"]["Description"] = "https://your.link.tld/other|192.0.2.1"
    sms = genesys_sms_examples()

    bodies = {
        "generic delivered": keys(GN, sample("generic/delivered.json")),
        "generic failed": keys(GN, sample("generic/failed-carrier-rejected.json")),
        "generic other message": keys(GN, as_json({**delivered, "id": "msg-other"})),
        "generic later time": keys(GN, as_json({**delivered, "timestamp": "2023-10-27T14:40:00Z"})),
        "generic both": keys(GN, as_json([delivered, sample_json("generic/failed-carrier-rejected.json")])),
        "webex delivered": keys(WX, as_json(webex_delivered)),
        "webex other recipient": keys(WX, as_json(other_recipient)),
        "webex submitted": keys(WX, sample("webex-connect/email-7501-submitted.json")),
        "webex click": keys(WX, as_json(click)),
        "webex other click": keys(WX, as_json(other_click)),
        "webex subscribe": keys(WX, sample("webex-connect/inbound-subscribe.json")),
        "webex unsubscribe": keys(WX, sample("webex-connect/inbound-unsubscribe.json")),
        "genesys-cloud readme": keys(GC, genesys_cloud_example()),
        "sms accepted": keys(SMS, sms[0], FORM),
        "sms delivered": keys(SMS, sms[1], FORM),
        "sms rejected": keys(SMS, sms[2], FORM),
    }

    assert len(set(bodies.values())) == len(bodies)


def test_the_same_receipt_from_another_provider_has_another_dedupe_key() -> None:
    body = as_json({"id": "m-1", "status": "delivered", "timestamp": "2026-11-20T10:15:02Z"})

    assert keys(GN, body) != keys(GC, body)
