"""Every row of DESIGN.md's "Provider codes" table, through each provider's real parser.

Bodies are built the way each provider sends them (JSON, or form-encoded for SMS Aggregation). The expected
rows are restated here from DESIGN.md, not read from the code tables they check. ``status`` is the status the
signal leads to: a read carries no status of its own but implies delivered (``receipts.machine.status_of``).
"""

from __future__ import annotations

import json
import re
from collections.abc import Sequence
from typing import Any, NamedTuple
from urllib.parse import urlencode

import pytest

from receipts.machine import status_of
from receipts.normalized import NormalizedReceipt, Outcome
from receipts.providers.generic import Generic
from receipts.providers.genesys_cloud.parser import GenesysCloud
from receipts.providers.genesys_sms import GenesysSms
from receipts.providers.webex_connect import WebexConnect

FORM = "application/x-www-form-urlencoded"
JSON = "application/json"
MESSAGE_ID = "8c1f5e3a2b7d4c9e"
TIME = "2026-11-20T10:15:09.480Z"


class Row(NamedTuple):
    status: str | None
    category: str = ""
    retryable: bool = False
    engagement: str = ""
    review: str = ""


def row_of(outcome: Outcome) -> Row:
    return Row(status_of(outcome), outcome.category, outcome.retryable, outcome.engagement, outcome.review)


def assert_row(outcome: Outcome, row: Row, *, unmapped: bool = False) -> None:
    assert row_of(outcome) == row
    assert outcome.unmapped is unmapped


def only(receipts: list[NormalizedReceipt]) -> NormalizedReceipt:
    assert len(receipts) == 1, receipts
    return receipts[0]


def as_json(data: Any) -> bytes:
    return json.dumps(data).encode()


# Genesys Cloud CX

DELIVERED = Row("delivered")
SENT = Row("sent")
READ = Row("delivered", engagement="read")
GENESYS_MESSAGE_STATUS = {
    "queued": Row("queued"),
    "sent": SENT,
    "published": SENT,
    "delivery-success": DELIVERED,
    "read": READ,
}
GENESYS_RECEIPT_STATUS = {"Sent": SENT, "Published": SENT, "Delivered": DELIVERED, "Read": READ}
GENESYS_MESSAGE_FAILURES = ["failed", "delivery-failed", "removed"]
GENESYS_RECEIPT_FAILURES = ["Failed", "Removed"]
GENESYS_REASON = {
    "MessageExpired": Row("expired", "temporary_network", retryable=True),
    "RateLimited": Row("failed", "carrier_throttle", retryable=True),
    "ServerError": Row("failed", "temporary_network", retryable=True),
    "InvalidDestination": Row("failed", "invalid_destination"),
    "RecipientOptedOut": Row("rejected", "opted_out"),
    "MessageNotAllowed": Row("rejected", "permanent_block"),
    "UnsupportedMessage": Row("rejected", "content_rejected"),
    "InvalidMessageStructure": Row("rejected", "content_rejected"),
    "MediaTypeNotAllowed": Row("rejected", "content_rejected"),
    "InvalidMediaContentLength": Row("rejected", "content_rejected"),
    "DataFiltered": Row("rejected", "content_rejected"),
    "GeneralError": Row("failed", "unknown"),
    "UnknownMessage": Row("failed", "unknown"),
}
UNKNOWN_FAILURE = Row("failed", "unknown")


def genesys_receipt(status: str, reasons: Sequence[str] = (), time: str = TIME) -> dict[str, Any]:
    """A normalized receipt as Genesys pushes it (open messaging) or nests it in MessageData."""
    receipt: dict[str, Any] = {
        "id": MESSAGE_ID,
        "type": "Receipt",
        "status": status,
        "isFinalReceipt": status not in ("Sent", "Published"),
        "direction": "Outbound",
        "channel": {"platform": "Sms", "type": "Private", "messageId": MESSAGE_ID, "time": time},
    }
    if reasons:
        receipt["reasons"] = [{"code": code, "message": f"{code} happened"} for code in reasons]
    return receipt


def genesys_message_data(status: str, receipts: Sequence[dict[str, Any]] = ()) -> dict[str, Any]:
    """A MessageData as ``GET /api/v2/conversations/messages/{messageId}/details`` answers it."""
    return {
        "id": MESSAGE_ID,
        "timestamp": "2026-11-20T10:15:02.114Z",
        "fromAddress": "+15559876543",
        "toAddress": "+15551234567",
        "direction": "outbound",
        "messengerType": "sms",
        "status": status,
        "normalizedReceipts": list(receipts),
        "conversationId": "0f5e6d7c-1b2a-4c3d-9e8f-7a6b5c4d3e2f",
    }


def parse_genesys(data: Any) -> list[NormalizedReceipt]:
    return GenesysCloud().parse(as_json(data), JSON)


@pytest.mark.parametrize(("status", "row"), GENESYS_MESSAGE_STATUS.items())
def test_genesys_cloud_message_data_status(status: str, row: Row) -> None:
    receipt = only(parse_genesys(genesys_message_data(status)))

    assert_row(receipt.outcome, row)
    assert receipt.provider_code == status
    assert receipt.provider_message_id == MESSAGE_ID


@pytest.mark.parametrize("status", GENESYS_MESSAGE_FAILURES)
def test_genesys_cloud_message_data_failure_without_a_reason_is_an_unknown_failure(status: str) -> None:
    receipt = only(parse_genesys(genesys_message_data(status)))

    assert_row(receipt.outcome, UNKNOWN_FAILURE, unmapped=True)
    assert receipt.provider_code == status


@pytest.mark.parametrize(("status", "row"), GENESYS_RECEIPT_STATUS.items())
def test_genesys_cloud_receipt_status(status: str, row: Row) -> None:
    receipt = only(parse_genesys(genesys_receipt(status)))

    assert_row(receipt.outcome, row)
    assert receipt.provider_code == status


@pytest.mark.parametrize("status", GENESYS_RECEIPT_FAILURES)
@pytest.mark.parametrize(("reason", "row"), GENESYS_REASON.items())
def test_genesys_cloud_receipt_failure_takes_its_outcome_from_the_reason(status: str, reason: str, row: Row) -> None:
    receipt = only(parse_genesys(genesys_receipt(status, [reason])))

    assert_row(receipt.outcome, row)
    assert reason in receipt.provider_code
    assert f"{reason} happened" in receipt.description


@pytest.mark.parametrize(("reason", "row"), GENESYS_REASON.items())
def test_genesys_cloud_message_data_failure_takes_its_outcome_from_its_receipt_reason(reason: str, row: Row) -> None:
    data = genesys_message_data("delivery-failed", [genesys_receipt("Sent"), genesys_receipt("Failed", [reason])])

    receipts = parse_genesys(data)

    # Every receipt that decides the status agrees with the reason: nothing from the top-level status alone
    # contradicts it (that would be a second, conflicting final for the same message).
    finals = {r.provider_code: row_of(r.outcome) for r in receipts if r.outcome.status != "sent"}
    assert finals == {f"Failed/{reason}": row}


@pytest.mark.parametrize("status", GENESYS_MESSAGE_FAILURES)
@pytest.mark.parametrize(("reason", "row"), GENESYS_REASON.items())
def test_genesys_cloud_message_data_failure_with_its_own_reasons(status: str, reason: str, row: Row) -> None:
    data = {**genesys_message_data(status), "reasons": [{"code": reason}]}

    receipt = only(parse_genesys(data))

    assert_row(receipt.outcome, row)
    assert reason in receipt.provider_code


def test_genesys_cloud_first_known_reason_decides() -> None:
    receipt = only(parse_genesys(genesys_receipt("Failed", ["SomethingNew", "RecipientOptedOut", "ServerError"])))

    assert_row(receipt.outcome, GENESYS_REASON["RecipientOptedOut"])
    assert "SomethingNew" in receipt.provider_code


def test_genesys_cloud_unknown_reason_is_an_unknown_failure_and_keeps_the_code() -> None:
    receipt = only(parse_genesys(genesys_receipt("Failed", ["BrandNewReason"])))

    assert_row(receipt.outcome, UNKNOWN_FAILURE, unmapped=True)
    assert "BrandNewReason" in receipt.provider_code


@pytest.mark.parametrize("status", GENESYS_RECEIPT_FAILURES)
def test_genesys_cloud_receipt_failure_without_a_reason_is_an_unknown_failure(status: str) -> None:
    receipt = only(parse_genesys(genesys_receipt(status)))

    assert_row(receipt.outcome, UNKNOWN_FAILURE, unmapped=True)


def test_genesys_cloud_unknown_message_status_changes_nothing_and_keeps_the_code() -> None:
    receipt = only(parse_genesys(genesys_message_data("teleported")))

    assert_row(receipt.outcome, Row(None), unmapped=True)
    assert receipt.provider_code == "teleported"


def test_genesys_cloud_unknown_receipt_status_changes_nothing_and_keeps_the_code() -> None:
    receipt = only(parse_genesys(genesys_receipt("Teleported")))

    assert_row(receipt.outcome, Row(None), unmapped=True)
    assert receipt.provider_code == "Teleported"


def test_genesys_cloud_received_status_of_an_inbound_message_says_nothing_about_delivery() -> None:
    receipt = only(parse_genesys(genesys_message_data("received")))

    assert_row(receipt.outcome, Row(None))


# Genesys SMS Aggregation Service

SMS_STATE = {
    1: Row("sent"),  # ENROUTE
    2: Row("delivered"),  # DELIVERED
    3: Row("expired", "temporary_network", retryable=True),  # EXPIRED
    4: Row("failed"),  # DELETED, category by result_code
    5: Row("failed"),  # UNDELIVERABLE, category by result_code
    6: Row("sent"),  # ACCEPTED
    7: Row(None, review="provider_unknown"),  # UNKNOWN
    8: Row("rejected"),  # REJECTED, category by result_code
}
SMS_RESULT = {
    1: ("permanent_block", False),
    2: ("sender_config", False),
    3: ("invalid_destination", False),
    4: ("sender_config", False),
    5: ("sender_config", False),
    6: ("carrier_throttle", True),
    8: ("content_rejected", False),
    98: ("temporary_network", True),
    99: ("unknown", False),
}
SMS_STATES_BY_RESULT = [4, 5, 8]
# result_code 7: the message is a duplicate of a message_id the service took, whatever the state says.
SMS_DUPLICATE = Row("sent", "duplicate")


def sms_body(state: int | str, result: int | str | None = 0, **extra: str) -> bytes:
    fields: dict[str, Any] = {"type": "receipt", "message_id": "4f9c2b1e-7a0d-4c1e-9a51-2d8f3e6b7c10"}
    fields["message_state"] = state
    if result is not None:
        fields["result_code"] = result
    return urlencode({**fields, **extra}).encode()


def parse_sms(body: bytes) -> NormalizedReceipt:
    return only(GenesysSms().parse(body, FORM))


def numbers_in(code: str) -> list[str]:
    return re.findall(r"\d+", code)


@pytest.mark.parametrize("state", [s for s in SMS_STATE if s not in SMS_STATES_BY_RESULT])
def test_genesys_sms_message_state(state: int) -> None:
    receipt = parse_sms(sms_body(state, 0))

    assert_row(receipt.outcome, SMS_STATE[state])
    assert str(state) in numbers_in(receipt.provider_code)


@pytest.mark.parametrize("state", SMS_STATES_BY_RESULT)
@pytest.mark.parametrize(("result", "category"), SMS_RESULT.items())
def test_genesys_sms_failure_takes_its_category_from_result_code(
    state: int, result: int, category: tuple[str, bool]
) -> None:
    receipt = parse_sms(sms_body(state, result))

    assert_row(receipt.outcome, SMS_STATE[state]._replace(category=category[0], retryable=category[1]))
    assert numbers_in(receipt.provider_code) == [str(state), str(result)]


@pytest.mark.parametrize("state", SMS_STATES_BY_RESULT)
def test_genesys_sms_duplicate_is_evidence_the_first_copy_was_taken_never_a_failure(state: int) -> None:
    receipt = parse_sms(sms_body(state, 7))

    assert_row(receipt.outcome, SMS_DUPLICATE)
    assert numbers_in(receipt.provider_code) == [str(state), "7"]


@pytest.mark.parametrize("result", [0, 1, 6, 98])
@pytest.mark.parametrize("state", [s for s in SMS_STATE if s not in SMS_STATES_BY_RESULT])
def test_genesys_sms_result_code_does_not_touch_a_state_that_is_not_a_failure(state: int, result: int) -> None:
    assert_row(parse_sms(sms_body(state, result)).outcome, SMS_STATE[state])


def test_genesys_sms_unknown_state_changes_nothing_and_keeps_the_code() -> None:
    receipt = parse_sms(sms_body(42, 0))

    assert_row(receipt.outcome, Row(None), unmapped=True)
    assert "42" in numbers_in(receipt.provider_code)


@pytest.mark.parametrize("state", SMS_STATES_BY_RESULT)
def test_genesys_sms_unknown_result_code_is_an_unknown_failure_and_keeps_the_code(state: int) -> None:
    receipt = parse_sms(sms_body(state, 77))

    assert_row(receipt.outcome, SMS_STATE[state]._replace(category="unknown"), unmapped=True)
    assert numbers_in(receipt.provider_code) == [str(state), "77"]


@pytest.mark.parametrize("state", SMS_STATES_BY_RESULT)
def test_genesys_sms_failure_without_result_code_is_an_unknown_failure(state: int) -> None:
    receipt = parse_sms(sms_body(state, None))

    assert status_of(receipt.outcome) == SMS_STATE[state].status
    assert receipt.outcome.category == "unknown"


def test_genesys_sms_json_receipt_reads_like_the_form() -> None:
    fields = {"type": "receipt", "message_id": "m-1", "message_state": 5, "result_code": 3}

    receipt = only(GenesysSms().parse(as_json(fields), JSON))

    assert_row(receipt.outcome, Row("failed", "invalid_destination"))


# Webex Connect


class WebexRow(NamedTuple):
    code: str
    delivery_status: str
    description: str
    channel: str
    row: Row


WEBEX_ROWS = {
    "7501 submitted": WebexRow("7501", "Submitted", "Submitted", "email", Row("sent")),
    "7501 submitted sms": WebexRow("7501", "Submitted", "Submitted", "sms", Row("sent")),
    "7500 delivered": WebexRow("7500", "Delivered", "Delivered", "email", Row("delivered")),
    "7500 delivered sms": WebexRow("7500", "Delivered", "Delivered", "sms", Row("delivered")),
    "7502 read": WebexRow("7502", "Read", "Read", "email", Row("delivered", engagement="read")),
    "7528 clicked": WebexRow(
        "7528", "Clicked", "https://your.link.tld/a|192.0.2.1", "email", Row(None, engagement="clicked")
    ),
    "7521 complaint": WebexRow("7521", "Complaint", "abuse", "email", Row(None, engagement="complained")),
    "7522 not verified": WebexRow("7522", "Not Verified", "not verified", "email", Row("rejected", "sender_config")),
    "7101 invalid sender": WebexRow("7101", "Failed", "Invalid sender id", "sms", Row("rejected", "sender_config")),
    "7102 invalid address": WebexRow("7102", "Failed", "Invalid address", "sms", Row("failed", "invalid_destination")),
    "7523 invalid email": WebexRow("7523", "Failed", "Invalid email", "email", Row("failed", "invalid_destination")),
    "7524 too long": WebexRow("7524", "Failed", "max length", "email", Row("failed", "invalid_destination")),
    "7107 too long": WebexRow("7107", "Failed", "length exceeded", "sms", Row("rejected", "content_rejected")),
    "7208 expired": WebexRow("7208", "Failed", "Message expired", "sms", Row("expired", "temporary_network", True)),
    "7240 already bounced": WebexRow(
        "7240", "Failed", "already bounced : a@b.tld", "email", Row("rejected", "suppressed")
    ),
    "7241 unsubscribed": WebexRow("7241", "Failed", "unsubscribed : a@b.tld", "email", Row("rejected", "opted_out")),
}
PERMANENT_BOUNCES = ["Permanent_General", "Permanent_NoEmail", "Permanent_Suppressed"]
TRANSIENT_BOUNCES = [
    "Transient_General",
    "Transient_MailboxFull",
    "Transient_MessageTooLarge",
    "Transient_ContentRejected",
    "Transient_AttachmentRejected",
]


def webex_body(
    code: str,
    delivery_status: str,
    description: str = "",
    *,
    channel: str = "email",
    additional: str = "",
    destination: str = "",
) -> bytes:
    email = channel == "email"
    return as_json(
        {
            "deliveryInfoNotification": {
                "deliveryInfo": {
                    "deliveryChannel": channel if email else "SMS",
                    "Description": description,
                    "destinationType": "email" if email else "msisdn",
                    "timeStamp": "2023-02-07T03:51:04.662+05:30",
                    "code": code,
                    "deliveryStatus": delivery_status,
                    "destination": destination or ("destination@domain.tld" if email else "15551234567"),
                    "additionalInfo": additional,
                },
                "correlationid": "3bd8edf31c81",
                "callbackData": "callbackdata",
                "transid": "4b72d8a2-290d-49e2-993e-3bd8edf31c81",
                "subtid": "",
            }
        }
    )


def parse_webex(body: bytes) -> NormalizedReceipt:
    return only(WebexConnect().parse(body, JSON))


@pytest.mark.parametrize("case", WEBEX_ROWS.values(), ids=WEBEX_ROWS.keys())
def test_webex_connect_code(case: WebexRow) -> None:
    receipt = parse_webex(webex_body(case.code, case.delivery_status, case.description, channel=case.channel))

    assert_row(receipt.outcome, case.row)
    assert receipt.provider_code == case.code
    assert receipt.channel == case.channel


def test_webex_connect_click_carries_url_ip_and_user_agent() -> None:
    agent = "Mozilla/5.0 (X11; Linux x86_64) Firefox/128.0"
    body = webex_body("7528", "Clicked", "https://your.link.tld/offer?id=7|198.51.100.4", additional=agent)

    receipt = parse_webex(body)

    assert receipt.details == {"url": "https://your.link.tld/offer?id=7", "ip": "198.51.100.4", "user_agent": agent}


@pytest.mark.parametrize("subtype", PERMANENT_BOUNCES)
def test_webex_connect_permanent_bounce_is_bounced(subtype: str) -> None:
    receipt = parse_webex(webex_body("7520", "Bounce", subtype, additional="5.1.1|failed|smtp; 550 no such user"))

    assert_row(receipt.outcome, Row("bounced", "invalid_destination"))
    assert receipt.outcome.soft_bounce is False
    assert receipt.details["bounce_type"] == subtype
    assert receipt.provider_code == "7520"


@pytest.mark.parametrize("subtype", TRANSIENT_BOUNCES)
def test_webex_connect_transient_bounce_is_a_deferral_counted_as_soft_bounce(subtype: str) -> None:
    receipt = parse_webex(webex_body("7520", "Bounce", subtype))

    assert_row(receipt.outcome, Row("deferred", "temporary_network", retryable=True))
    assert receipt.outcome.soft_bounce is True
    assert receipt.details["bounce_type"] == subtype


@pytest.mark.parametrize("code", ["7103", "7200", "7299", "7530", "7999"])
def test_webex_connect_other_failed_code_is_an_unknown_failure_and_keeps_the_code(code: str) -> None:
    receipt = parse_webex(webex_body(code, "Failed", "Something new"))

    assert_row(receipt.outcome, UNKNOWN_FAILURE, unmapped=True)
    assert receipt.provider_code == code


@pytest.mark.parametrize("delivery_status", ["Submitted", "Queued", "Whatever", ""])
def test_webex_connect_unknown_code_that_is_not_failed_changes_nothing_and_keeps_the_code(
    delivery_status: str,
) -> None:
    receipt = parse_webex(webex_body("7600", delivery_status))

    assert_row(receipt.outcome, Row(None), unmapped=True)
    assert receipt.provider_code == "7600"


def test_webex_connect_bounce_of_an_unknown_kind_is_unknown_and_keeps_the_code() -> None:
    receipt = parse_webex(webex_body("7520", "Bounce", "Undetermined_Something"))

    assert receipt.outcome.unmapped is True
    assert receipt.outcome.category in ("", "unknown")
    assert receipt.provider_code == "7520"
    assert receipt.details["bounce_type"] == "Undetermined_Something"


# Generic JSON

GENERIC_STATUS = {
    "pending": Row("pending"),
    "accepted": Row("queued"),
    "queued": Row("queued"),
    "sending": Row("sent"),
    "sent": Row("sent"),
    "deferred": Row("deferred", "temporary_network", retryable=True),
    "delivered": Row("delivered"),
    "failed": Row("failed", "unknown"),
    "undelivered": Row("failed", "unknown"),
    "rejected": Row("rejected", "unknown"),
    "expired": Row("expired", "temporary_network", retryable=True),
    "bounced": Row("bounced", "invalid_destination"),
    "read": Row("delivered", engagement="read"),
    "opened": Row("delivered", engagement="read"),
    "clicked": Row(None, engagement="clicked"),
    "complained": Row(None, engagement="complained"),
    "unsubscribed": Row(None, engagement="unsubscribed"),
    "subscribed": Row(None, engagement="subscribed"),
}
GENERIC_ERROR_CODE = {
    "carrier_rejected": ("permanent_block", False),
    "blocked": ("permanent_block", False),
    "spam": ("content_rejected", False),
    "invalid_number": ("invalid_destination", False),
    "invalid_address": ("invalid_destination", False),
    "unreachable": ("temporary_network", True),
    "network_error": ("temporary_network", True),
    "timeout": ("temporary_network", True),
    "throttled": ("carrier_throttle", True),
    "rate_limited": ("carrier_throttle", True),
    "opted_out": ("opted_out", False),
    "unsubscribed": ("opted_out", False),
    # Our own category names are taken as they are.
    "temporary_network": ("temporary_network", True),
    "carrier_throttle": ("carrier_throttle", True),
    "permanent_block": ("permanent_block", False),
    "invalid_destination": ("invalid_destination", False),
    "content_rejected": ("content_rejected", False),
    "sender_config": ("sender_config", False),
    "suppressed": ("suppressed", False),
    "duplicate": ("duplicate", False),
    "unknown": ("unknown", False),
}
GENERIC_FAILURES = ["failed", "undelivered", "rejected"]


def generic_body(status: str | None = None, error_code: str | None = None, **fields: Any) -> bytes:
    data: dict[str, Any] = {
        "id": "msg-7a3b9c2d",
        "type": "sms",
        "to": "+15551234567",
        "conversationId": "conv-8f4e2a1b",
        "timestamp": "2023-10-27T14:32:15Z",
        "errorCode": error_code,
        "metadata": {"campaignId": "appt-reminder-q3"},
        **fields,
    }
    if status is not None:
        data["status"] = status
    return as_json(data)


def parse_generic(body: bytes) -> NormalizedReceipt:
    return only(Generic().parse(body, JSON))


@pytest.mark.parametrize(("status", "row"), GENERIC_STATUS.items())
def test_generic_status(status: str, row: Row) -> None:
    receipt = parse_generic(generic_body(status))

    assert_row(receipt.outcome, row)
    assert receipt.provider_code == status


@pytest.mark.parametrize(("status", "row"), GENERIC_STATUS.items())
def test_generic_delivery_status_reads_like_status(status: str, row: Row) -> None:
    receipt = parse_generic(generic_body(deliveryStatus=status))

    assert_row(receipt.outcome, row)


def test_generic_status_is_read_in_any_case() -> None:
    assert_row(parse_generic(generic_body("Delivered")).outcome, Row("delivered"))


@pytest.mark.parametrize("status", GENERIC_FAILURES)
@pytest.mark.parametrize(("error_code", "category"), GENERIC_ERROR_CODE.items())
def test_generic_failure_takes_its_category_from_error_code(
    status: str, error_code: str, category: tuple[str, bool]
) -> None:
    receipt = parse_generic(generic_body(status, error_code))

    row = GENERIC_STATUS[status]._replace(category=category[0], retryable=category[1])
    assert_row(receipt.outcome, row)
    assert error_code in receipt.provider_code


@pytest.mark.parametrize("status", ["delivered", "sent", "read"])
def test_generic_error_code_on_a_status_that_is_not_a_failure_is_ignored(status: str) -> None:
    assert_row(parse_generic(generic_body(status, "spam")).outcome, GENERIC_STATUS[status])


def test_generic_unknown_status_changes_nothing_and_keeps_the_code() -> None:
    receipt = parse_generic(generic_body("teleported"))

    assert_row(receipt.outcome, Row(None), unmapped=True)
    assert receipt.provider_code == "teleported"


@pytest.mark.parametrize("status", GENERIC_FAILURES)
def test_generic_unknown_error_code_is_an_unknown_failure_and_keeps_the_code(status: str) -> None:
    receipt = parse_generic(generic_body(status, "E-4711"))

    assert_row(receipt.outcome, GENERIC_STATUS[status]._replace(category="unknown"), unmapped=True)
    assert "E-4711" in receipt.provider_code
