"""Authentication: valid credentials, rotation, refusals (401, nothing stored), configuration, timestamps."""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import time
from datetime import UTC, datetime
from typing import Any
from unittest import mock

import pytest

from receipts.models import ReceiptEvent
from tests.conftest import (
    BASIC,
    GENESYS_CLOUD_SECRET,
    GENESYS_SMS_TOKEN,
    WEBEX_SECRET,
    basic_header,
    hub_signature,
    post_webhook,
    standard_webhooks_headers,
)
from tests.receipts.webhooks.cases import (
    BY_PROVIDER,
    CASES,
    FORM,
    GC_MESSAGE_DATA,
    JSON,
    SMS_DELIVERED,
    Case,
    assert_accepted,
    assert_refused,
    each_provider,
    post,
    whsec,
)

pytestmark = pytest.mark.django_db


def b64(raw: bytes) -> str:
    return base64.b64encode(raw).decode()


# --- valid credentials ----------------------------------------------------------------------------------


@each_provider
def test_valid_provider_signature_is_accepted_and_the_raw_body_kept(client: Any, case: Case, kicks: mock.Mock) -> None:
    response = post(client, case.provider, case.body, case.content_type, **case.signed())

    assert_accepted(response, case)
    kicks.assert_called_once()


@each_provider
def test_valid_basic_credentials_are_accepted_without_a_signature(client: Any, case: Case) -> None:
    response = post_webhook(client, case.provider, case.body, content_type=case.content_type)

    assert_accepted(response, case)


@each_provider
def test_body_is_kept_byte_for_byte_with_non_ascii_text_and_odd_whitespace(client: Any, case: Case) -> None:
    if case.content_type == FORM:
        # Percent-encoded and raw UTF-8 alike.
        body = SMS_DELIVERED.replace(b"app_id=reminders", b"app_id=rappels%20%C3%A9t%C3%A9") + "&note=café ☕".encode()
    else:
        data = json.loads(case.body)
        data["note"] = "café ☕ «ünïcode»"
        body = b"\r\n  " + json.dumps(data, ensure_ascii=False, indent="\t").encode() + b"  \n"

    response = post(client, case.provider, body, case.content_type, **case.signed(body))

    event = assert_accepted(response, case, body)
    assert event.body.encode() == body


def test_genesys_cloud_message_data_counts_each_receipt_it_carries(client: Any) -> None:
    case = BY_PROVIDER["genesys_cloud"]

    response = post(client, case.provider, GC_MESSAGE_DATA, JSON, **case.signed(GC_MESSAGE_DATA))

    assert_accepted(response, case, GC_MESSAGE_DATA, accepted=2)


def test_webex_connect_sha512_signature_is_accepted(client: Any) -> None:
    case = BY_PROVIDER["webex_connect"]

    response = post(
        client, case.provider, case.body, JSON, **{"X-Hub-Signature": hub_signature(case.body, WEBEX_SECRET, "sha512")}
    )

    assert_accepted(response, case)


def test_genesys_sms_token_in_the_query_string_is_accepted(client: Any) -> None:
    case = BY_PROVIDER["genesys_sms"]

    response = post(client, case.provider, case.body, FORM, query=f"token={GENESYS_SMS_TOKEN}")

    assert_accepted(response, case)


def test_genesys_cloud_signature_in_base64_as_documented_is_accepted(client: Any) -> None:
    """developer.genesys.cloud, open messaging, "Validate webhook notifications": ``sha256=`` and the base64 of
    ``crypto.createHmac('sha256', secretToken).update(body).digest('base64')``. Hex keeps working too."""
    case = BY_PROVIDER["genesys_cloud"]
    digest = hmac.new(GENESYS_CLOUD_SECRET.encode(), case.body, hashlib.sha256).digest()

    response = post(client, case.provider, case.body, JSON, **{"X-Hub-Signature-256": f"sha256={b64(digest)}"})

    assert_accepted(response, case)


@pytest.mark.parametrize("algorithm", [hashlib.sha256, hashlib.sha512])
def test_webex_connect_bare_hex_signature_as_documented_is_accepted(client: Any, algorithm: Any) -> None:
    """developers.webexconnect.io, outbound webhooks: "the hexadecimal representation of an SHA-256 or SHA-512
    signature", with no prefix."""
    case = BY_PROVIDER["webex_connect"]
    digest = hmac.new(WEBEX_SECRET.encode(), case.body, algorithm).hexdigest()

    assert_accepted(post(client, case.provider, case.body, JSON, **{"X-Hub-Signature": digest}), case)


@pytest.mark.parametrize(
    "header",
    ["sha256=not-a-digest", "sha256=", "c2hhMjU2", "sha256=" + "0" * 64, "sha256=" + b64(b"\0" * 32)],
)
def test_a_signature_that_is_no_digest_of_the_body_is_refused(client: Any, header: str) -> None:
    case = BY_PROVIDER["webex_connect"]
    assert_refused(post(client, case.provider, case.body, JSON, **{"X-Hub-Signature": header}))


def test_genesys_sms_receipt_fields_in_the_query_string_are_read_and_the_token_not_kept(client: Any) -> None:
    case = BY_PROVIDER["genesys_sms"]
    query = f"{SMS_DELIVERED.decode()}&token={GENESYS_SMS_TOKEN}"

    response = post(client, case.provider, b"", FORM, query=query)

    assert_accepted(response, case)
    stored = ReceiptEvent.objects.get()
    assert "message_state=2" in stored.body and GENESYS_SMS_TOKEN not in stored.body


def test_standard_webhooks_secret_without_base64_padding_works(client: Any, settings: Any) -> None:
    case = BY_PROVIDER["generic"]
    unpadded = whsec(b"a key of 31 bytes, no padding.!").rstrip("=")
    assert not unpadded.endswith("=") and len(unpadded.removeprefix("whsec_")) % 4
    settings.WEBHOOK_SECRET_GENERIC = [unpadded]

    response = post(client, case.provider, case.body, JSON, **standard_webhooks_headers(case.body, unpadded))

    assert_accepted(response, case)


@pytest.mark.parametrize("padded", [True, False])
def test_a_body_signed_by_the_standard_webhooks_reference_library_is_accepted(
    client: Any, settings: Any, padded: bool
) -> None:
    """The Standard Webhooks reference library (PyPI standardwebhooks) signs; the webhook accepts, with the secret
    written padded or not."""
    from standardwebhooks import Webhook

    case = BY_PROVIDER["generic"]
    secret = whsec(b"the reference library's key")
    secret = secret if padded else secret.rstrip("=")
    settings.WEBHOOK_SECRET_GENERIC = [secret]
    now = datetime.now(UTC)
    signature = Webhook(secret).sign("msg_ref_1", now, case.body.decode())
    headers = {
        "webhook-id": "msg_ref_1",
        "webhook-timestamp": str(int(now.timestamp())),
        "webhook-signature": signature,
    }

    assert_accepted(post(client, case.provider, case.body, JSON, **headers), case)


def test_standard_webhooks_accepts_any_matching_signature_of_several(client: Any) -> None:
    case = BY_PROVIDER["generic"]
    headers = case.signed()
    wrong = standard_webhooks_headers(case.body, whsec(b"some-other-key"))["webhook-signature"]
    headers["webhook-signature"] = f"{wrong} {headers['webhook-signature']}"

    response = post(client, case.provider, case.body, JSON, **headers)

    assert_accepted(response, case)


# --- rotation -------------------------------------------------------------------------------------------


@each_provider
def test_old_basic_entry_is_accepted_while_still_listed(client: Any, settings: Any, case: Case) -> None:
    settings.WEBHOOK_BASIC_AUTH = ["receipts:next-pass", BASIC]

    old = post_webhook(client, case.provider, case.body, content_type=case.content_type)
    new = post_webhook(
        client,
        case.provider,
        case.other_status,
        content_type=case.content_type,
        Authorization=basic_header("receipts:next-pass"),
    )

    assert old.status_code == 200, old.content
    assert new.status_code == 200, new.content
    assert ReceiptEvent.objects.count() == 2


@each_provider
def test_basic_entry_removed_from_the_list_is_refused(client: Any, settings: Any, case: Case) -> None:
    settings.WEBHOOK_BASIC_AUTH = ["receipts:next-pass"]

    response = post_webhook(client, case.provider, case.body, content_type=case.content_type)

    assert_refused(response)


@each_provider
def test_old_secret_is_accepted_while_still_listed(client: Any, settings: Any, case: Case) -> None:
    settings.WEBHOOK_BASIC_AUTH = []
    setattr(settings, case.secret_setting, [case.other_secret, case.good_secret])

    old = post(client, case.provider, case.body, case.content_type, **case.signed())
    new = post(
        client,
        case.provider,
        case.other_status,
        case.content_type,
        **case.signed(case.other_status, case.other_secret),
    )

    assert old.status_code == 200, old.content
    assert new.status_code == 200, new.content
    assert ReceiptEvent.objects.count() == 2


# --- refused: 401 and nothing stored --------------------------------------------------------------------


@each_provider
def test_missing_credentials_are_refused(client: Any, case: Case, kicks: mock.Mock) -> None:
    response = post(client, case.provider, case.body, case.content_type)

    assert_refused(response)
    assert "credentials" in response.json()["error"]
    assert response["WWW-Authenticate"].startswith("Basic")
    kicks.assert_not_called()


@each_provider
def test_wrong_signature_is_refused(client: Any, case: Case) -> None:
    response = post(client, case.provider, case.body, case.content_type, **case.signed(secret=case.other_secret))

    assert_refused(response)
    assert "signature" in response.json()["error"]


@pytest.mark.parametrize("case", [c for c in CASES if c.provider != "genesys_sms"], ids=str)  # a token signs no body
def test_signature_of_another_body_is_refused(client: Any, case: Case) -> None:
    headers = case.signed(case.other_status)

    response = post(client, case.provider, case.body, case.content_type, **headers)

    assert_refused(response)


@each_provider
def test_wrong_signature_is_refused_even_with_valid_basic(client: Any, case: Case) -> None:
    headers = case.signed(secret=case.other_secret)

    response = post_webhook(client, case.provider, case.body, content_type=case.content_type, **headers)

    assert_refused(response)


@pytest.mark.parametrize(
    "authorization",
    [
        basic_header("receipts:wrong-pass"),
        basic_header("someone-else:s3cret-pass"),
        basic_header("receipts:s3cret-pass "),
        basic_header("receipts"),
        "Basic not-base64!!",
        "Basic",
        "Bearer " + base64.b64encode(BASIC.encode()).decode(),
        basic_header().replace("Basic ", ""),
    ],
    ids=["wrong-password", "wrong-user", "trailing-space", "no-password", "bad-base64", "empty", "bearer", "no-scheme"],
)
@each_provider
def test_wrong_basic_credentials_are_refused(client: Any, case: Case, authorization: str) -> None:
    response = post_webhook(
        client, case.provider, case.body, content_type=case.content_type, Authorization=authorization
    )

    assert_refused(response)


@each_provider
def test_malformed_body_from_an_unauthenticated_caller_is_refused_not_kept(client: Any, case: Case) -> None:
    response = post(client, case.provider, b"this is not a receipt", case.content_type)

    assert_refused(response)


def test_genesys_cloud_refuses_a_sha512_signature_in_its_sha256_header(client: Any) -> None:
    case = BY_PROVIDER["genesys_cloud"]
    headers = {"X-Hub-Signature-256": hub_signature(case.body, GENESYS_CLOUD_SECRET, "sha512")}

    assert_refused(post(client, case.provider, case.body, JSON, **headers))


def test_genesys_cloud_refuses_a_signature_without_its_prefix(client: Any) -> None:
    case = BY_PROVIDER["genesys_cloud"]
    headers = {"X-Hub-Signature-256": hub_signature(case.body, GENESYS_CLOUD_SECRET).removeprefix("sha256=")}

    assert_refused(post(client, case.provider, case.body, JSON, **headers))


def test_webex_connect_refuses_an_unknown_signature_algorithm(client: Any) -> None:
    case = BY_PROVIDER["webex_connect"]
    headers = {"X-Hub-Signature": hub_signature(case.body, WEBEX_SECRET, "sha1")}

    assert_refused(post(client, case.provider, case.body, JSON, **headers))


def test_genesys_sms_wrong_token_in_the_query_is_refused_even_with_valid_basic(client: Any) -> None:
    case = BY_PROVIDER["genesys_sms"]

    response = post(client, case.provider, case.body, FORM, query="token=nope", Authorization=basic_header())

    assert_refused(response)


@pytest.mark.parametrize(
    "change",
    [
        {"webhook-id": "msg_2"},
        {"webhook-timestamp": "not-a-number"},
        {"webhook-signature": "v2,abc"},
    ],
    ids=["other-id", "bad-timestamp", "unknown-version"],
)
def test_standard_webhooks_refuses_tampered_headers(client: Any, change: dict[str, str]) -> None:
    case = BY_PROVIDER["generic"]
    headers = {**case.signed(), **change}

    assert_refused(post(client, case.provider, case.body, JSON, **headers))


@pytest.mark.parametrize("offset", [-301, 301], ids=["too-old", "too-far-ahead"])
def test_standard_webhooks_refuses_a_timestamp_outside_the_tolerance(
    client: Any, time_machine: Any, offset: int
) -> None:
    case = BY_PROVIDER["generic"]
    headers = case.signed()  # signed now, with the current time in webhook-timestamp
    time_machine.move_to(time.time() - offset, tick=False)

    response = post(client, case.provider, case.body, JSON, **headers)

    assert_refused(response)


def test_standard_webhooks_accepts_a_timestamp_inside_the_tolerance(client: Any, time_machine: Any) -> None:
    case = BY_PROVIDER["generic"]
    headers = case.signed()
    time_machine.move_to(time.time() + 290, tick=False)

    assert_accepted(post(client, case.provider, case.body, JSON, **headers), case)


def test_standard_webhooks_tolerance_follows_the_setting(client: Any, settings: Any, time_machine: Any) -> None:
    settings.WEBHOOK_TIMESTAMP_TOLERANCE = 30
    case = BY_PROVIDER["generic"]
    headers = case.signed()
    time_machine.move_to(time.time() + 60, tick=False)

    assert_refused(post(client, case.provider, case.body, JSON, **headers))


# --- what is configured ---------------------------------------------------------------------------------


def configure_nothing(settings: Any) -> None:
    settings.WEBHOOK_BASIC_AUTH = []
    for case in CASES:
        setattr(settings, case.secret_setting, [])


@each_provider
def test_nothing_configured_refuses_when_debug_is_off(client: Any, settings: Any, case: Case) -> None:
    configure_nothing(settings)
    settings.DEBUG = False

    response = post_webhook(client, case.provider, case.body, content_type=case.content_type, **case.signed())

    assert_refused(response)
    assert "no webhook secret" in response.json()["error"]


@each_provider
def test_nothing_configured_accepts_when_debug_is_on(client: Any, settings: Any, case: Case) -> None:
    configure_nothing(settings)
    settings.DEBUG = True

    response = post(client, case.provider, case.body, case.content_type)

    assert_accepted(response, case)


@each_provider
def test_basic_only_configured_needs_basic(client: Any, settings: Any, case: Case) -> None:
    setattr(settings, case.secret_setting, [])

    signed_only = post(client, case.provider, case.body, case.content_type, **case.signed())
    assert_refused(signed_only)

    assert_accepted(post_webhook(client, case.provider, case.body, content_type=case.content_type), case)


@each_provider
def test_secret_only_configured_refuses_basic(client: Any, settings: Any, case: Case) -> None:
    settings.WEBHOOK_BASIC_AUTH = []

    assert_refused(post_webhook(client, case.provider, case.body, content_type=case.content_type))

    assert_accepted(post(client, case.provider, case.body, case.content_type, **case.signed()), case)
