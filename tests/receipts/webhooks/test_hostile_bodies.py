"""Whatever an authenticated caller sends, a webhook answers 200, 400 (kept as rejected) or 413, never 5xx; and
whatever it accepts, processing stores without a failure (nothing acknowledged goes dead later)."""

from __future__ import annotations

import json
from typing import Any
from urllib.parse import quote

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from receipts.models import InboxState, ReceiptEvent
from tests.conftest import basic_header, drain, register, sample
from tests.receipts.webhooks.cases import FORM, GC_DELIVERED, GC_MESSAGE_DATA, JSON, post

pytestmark = pytest.mark.django_db

LONG_ID = "L" * 300


def post_basic(client: Any, provider: str, body: bytes, content_type: str, **headers: str) -> Any:
    return post(client, provider, body, content_type, Authorization=basic_header(), **headers)


def assert_refused_and_kept(response: Any, words: str) -> None:
    assert response.status_code == 400, response.content
    assert words in response.json()["error"]
    rejected = ReceiptEvent.objects.get(state=InboxState.REJECTED)
    assert words in rejected.error


def generic(**fields: Any) -> bytes:
    body = {"id": "msg-1", "status": "delivered", "timestamp": "2026-11-20T10:15:09Z", **fields}
    return json.dumps(body).encode()


# (provider, content type, body, words the 400 must name): each found by trying the running app.
FOUND: list[tuple[str, str, bytes, str]] = [
    ("generic", JSON, b'{"id": "m", "status": "delivered", "errorCode": ' + b"9" * 5000 + b"}", "not valid JSON"),
    ("webex_connect", JSON, b"[" * 1000 + b"]" * 1000, "nested deeper"),
    ("genesys_cloud", JSON, b"[" * 100_000 + b"]" * 100_000, "nested deeper"),
    ("generic", JSON, generic(timestamp=1e20), "out of range"),
    ("generic", JSON, generic(timestamp=-99999999999), "out of range"),
    ("generic", JSON, b'{"id": "m", "status": "delivered", "timestamp": NaN}', "NaN is not a JSON number"),
    ("generic", JSON, b'{"id": "m", "status": "delivered", "timestamp": Infinity}', "Infinity is not a JSON number"),
    ("generic", JSON, b'{"id": "m", "status": "delivered", "timestamp": 1e400}', "out of range"),
    ("generic", JSON, generic(timestamp="\u0663\u0663\u0663"), "not ISO 8601"),
    ("generic", JSON, generic(timestamp="\u00b2\u00b3"), "not ISO 8601"),
    ("generic", JSON, b'{"id": "\\ud800", "status": "delivered"}', "lone surrogate"),
    ("generic", JSON, b'{"id": "m", "status": "\\ud800"}', "lone surrogate"),
    ("generic", JSON, b'{"id": "m", "status": "failed", "errorCode": "\\udfff"}', "lone surrogate"),
    ("generic", JSON, b'{"id": "m\\u0000", "status": "delivered"}', "NUL"),
    (
        "webex_connect",
        JSON,
        sample("webex-connect/email-7500-delivered.json").replace(b'"7500"', b'"75\\u00000"'),
        "NUL",
    ),
    ("generic", JSON, b'{"id": "m", "status": "delivered"}\x00', "NUL bytes"),
    ("generic", JSON, generic().decode().encode("utf-16"), "not UTF-8"),
    ("genesys_cloud", JSON, GC_DELIVERED.decode().encode("utf-16-le"), "not UTF-8"),
    ("genesys_sms", FORM, b"type=receipt&message_state=2&message_id=" + LONG_ID.encode(), "over 255 characters"),
    ("genesys_sms", FORM, b"type=receipt&message_state=2&message_id=a%00b", "NUL"),
    ("genesys_sms", FORM, b"type=receipt&message_state=2&message_id=a\x00b", "NUL"),
    ("genesys_sms", FORM, "type=receipt&message_state=\u0662&message_id=a".encode(), "must be an integer"),
    ("genesys_sms", FORM, b"type=receipt&message_state=" + b"9" * 5000 + b"&message_id=a", "must be an integer"),
    (
        "genesys_sms",
        JSON,
        b'{"type": "receipt", "message_state": 2, "message_id": "9", "x": NaN}',
        "NaN",
    ),
]


@pytest.mark.parametrize(("provider", "content_type", "body", "words"), FOUND)
def test_hostile_body_answers_400_naming_the_problem_and_is_kept(
    client: Any, provider: str, content_type: str, body: bytes, words: str
) -> None:
    response = post_basic(client, provider, body, content_type)

    assert_refused_and_kept(response, words)


def test_a_rejected_body_with_nul_bytes_is_kept_readable(client: Any) -> None:
    response = post_basic(client, "genesys_sms", b"type=receipt&message_state=2&message_id=a\x00b", FORM)

    assert response.status_code == 400
    assert ReceiptEvent.objects.get().body == "type=receipt&message_state=2&message_id=a\ufffdb"


def test_a_content_type_over_200_characters_is_refused_and_kept(client: Any) -> None:
    content_type = "application/json; " + "x" * 300

    response = post_basic(client, "generic", generic(), content_type)

    assert_refused_and_kept(response, "Content-Type header is over 200 characters")
    assert len(ReceiptEvent.objects.get().content_type) == 200


@pytest.mark.parametrize(
    ("provider", "header"), [("genesys_cloud", "X-Hub-Signature-256"), ("webex_connect", "X-Hub-Signature")]
)
def test_a_non_ascii_signature_header_is_refused_not_a_crash(client: Any, provider: str, header: str) -> None:
    body = GC_DELIVERED if provider == "genesys_cloud" else sample("webex-connect/email-7500-delivered.json")

    response = post(client, provider, body, JSON, **{header: "sha256=\u00e9\u00e9\u00e9"})

    assert response.status_code == 401
    assert ReceiptEvent.objects.count() == 0


def test_a_non_ascii_standard_webhooks_signature_is_refused_not_a_crash(client: Any) -> None:
    headers = {"webhook-id": "msg_1", "webhook-timestamp": "\u0663\u0663", "webhook-signature": "v1,\u00e9\u00e9"}

    response = post(client, "generic", generic(), JSON, **headers)

    assert response.status_code == 401


def test_the_oversized_orphan_no_longer_blocks_the_inbox(client: Any) -> None:
    """The issue's repro: an orphan whose id is over 255 characters used to fail its batch for good."""
    message = register(provider="genesys_sms", provider_message_id="ok-1")
    refused = post_basic(client, "genesys_sms", b"type=receipt&message_state=2&message_id=" + LONG_ID.encode(), FORM)
    accepted = post_basic(client, "genesys_sms", b"type=receipt&message_state=2&message_id=ok-1", FORM)

    drain()

    assert (refused.status_code, accepted.status_code) == (400, 200)
    message.refresh_from_db()
    assert message.status == "delivered"


# --- any body, with valid credentials ---------------------------------------------------------------------

# Values that broke a parser or a column once, written as JSON literals.
HOSTILE_LITERALS = [
    "9" * 5000,
    "NaN",
    "-Infinity",
    "1e400",
    "1e20",
    "-99999999999",
    '"\\ud800"',
    '"a\\u0000b"',
    '"\\u0663\\u0663"',
    json.dumps("x" * 400),
    "[" * 50 + "]" * 50,
    "{}",
    "[]",
    "null",
    "true",
    '"2026-13-45T99:99:99Z"',
    '"+15551234567"',
    '"alice@example.com"',
]
JSON_SEEDS = {
    "genesys_cloud": [GC_DELIVERED, GC_MESSAGE_DATA],
    "webex_connect": [
        sample(f"webex-connect/{name}.json")
        for name in ("email-7500-delivered", "email-7520-bounce", "email-7528-clicked", "inbound-unsubscribe")
    ],
    "generic": [sample("generic/delivered.json"), sample("generic/failed-carrier-rejected.json")],
}
SMS_FIELDS = ["type", "message_id", "message_state", "result_code", "app_id", "conversation_id", "text", "msisdn"]


def leaves(value: Any, path: tuple = ()) -> list[tuple]:
    if isinstance(value, dict):
        return [p for key, child in value.items() for p in leaves(child, (*path, key))] or [path]
    if isinstance(value, list):
        return [p for i, child in enumerate(value) for p in leaves(child, (*path, i))] or [path]
    return [path]


def with_literal(document: Any, path: tuple, marker: str) -> Any:
    if not path:
        return marker
    head, *rest = path
    copy = dict(document) if isinstance(document, dict) else list(document)
    copy[head] = with_literal(document[head], tuple(rest), marker)
    return copy


any_text = st.text(st.characters(codec=None, exclude_categories=()), max_size=30)
literal = st.one_of(
    st.sampled_from(HOSTILE_LITERALS),
    any_text.map(lambda text: json.dumps(text)),  # lone surrogates come out as \\udxxx escapes
    st.integers().map(str),
    st.floats(allow_nan=False, allow_infinity=False).map(repr),
)


@st.composite
def json_bodies(draw: st.DrawFn, provider: str) -> bytes:
    document = json.loads(draw(st.sampled_from(JSON_SEEDS[provider])))
    paths = leaves(document)
    chosen = draw(st.lists(st.sampled_from(paths), min_size=1, max_size=3, unique=True))
    literals = {}
    for i, path in enumerate(chosen):
        marker = f"@@hostile{i}@@"
        document = with_literal(document, path, marker)
        literals[json.dumps(marker)] = draw(literal)
    text = json.dumps(document)
    for marker, value in literals.items():
        text = text.replace(marker, value)
    return text.encode()


@st.composite
def form_bodies(draw: st.DrawFn) -> bytes:
    fields = {"type": "receipt", "message_id": "sms-1", "message_state": "2", "result_code": "0"}
    for name in draw(st.lists(st.sampled_from(SMS_FIELDS), min_size=1, max_size=3, unique=True)):
        fields[name] = draw(st.one_of(any_text, st.sampled_from(["9" * 5000, "\u0662", "-1", "99", LONG_ID])))
    return "&".join(f"{quote(k)}={quote(v, errors='surrogatepass')}" for k, v in fields.items()).encode()


def assert_answered_and_processable(client: Any, provider: str, body: bytes, content_type: str) -> None:
    response = post_basic(client, provider, body, content_type)

    assert response.status_code in (200, 400), (response.status_code, body[:300])
    if response.status_code == 400:
        assert response.json()["error"]
        return
    drain()
    assert not ReceiptEvent.objects.filter(state=InboxState.DEAD).exists(), body[:300]
    assert not ReceiptEvent.objects.filter(attempts__gt=0).exists(), body[:300]


HOSTILE = settings(deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow])


@pytest.mark.parametrize("provider", sorted(JSON_SEEDS))
@HOSTILE
@given(data=st.data())
def test_any_json_body_is_answered_and_anything_accepted_is_processed(client: Any, provider: str, data: Any) -> None:
    body = data.draw(json_bodies(provider))

    assert_answered_and_processable(client, provider, body, JSON)


@HOSTILE
@given(body=form_bodies())
def test_any_form_body_is_answered_and_anything_accepted_is_processed(client: Any, body: bytes) -> None:
    assert_answered_and_processable(client, "genesys_sms", body, FORM)


@HOSTILE
@given(
    body=st.binary(max_size=2000),
    provider=st.sampled_from(["genesys_cloud", "genesys_sms", "webex_connect", "generic"]),
)
def test_any_bytes_are_answered(client: Any, body: bytes, provider: str) -> None:
    assert_answered_and_processable(client, provider, body, FORM if provider == "genesys_sms" else JSON)


def test_whatever_a_rejected_row_holds_is_stored() -> None:
    """The rejected row keeps what came, made storable: NUL as U+FFFD, a lone surrogate as "?"."""
    from receipts.actions import ingest
    from receipts.normalized import MalformedReceipt

    with pytest.raises(MalformedReceipt):
        ingest.ingest("generic", b'{"a": "\x00"}', "application/json; x=\ud800", "127.0.0.1")

    kept = ReceiptEvent.objects.get()
    assert (kept.state, kept.body, kept.content_type) == (
        InboxState.REJECTED,
        '{"a": "\ufffd"}',
        "application/json; x=?",
    )
