"""Genesys SMS Aggregation Service: form-encoded delivery receipts (``type=receipt``), and the MT send.

The MT (docs.genesys.com, SMS Aggregation HTTP API, "Sending a Mobile Terminated (MT) Message") takes
``phone_number`` and ``sender`` "numeric and in international format, e.g. 12025550100": digits, no ``+``. Its
answer is a 2xx whose body is ``<name>=<code>``; the guide does not list the codes, public clients of the same API
do (0 accepted ... 98 internal error): ``MT_RESULT`` below.

The service signs nothing; callers prove themselves with HTTP Basic (``WEBHOOK_BASIC_AUTH``) or with a token
in the registered URL or an ``X-Webhook-Token`` header (``WEBHOOK_SECRET_GENESYS_SMS``). Receipts carry no time
of their own: the time we received them stands in.
"""

from __future__ import annotations

import hmac
import logging
import uuid
from dataclasses import dataclass
from typing import Any, ClassVar
from urllib.parse import parse_qsl, urlencode

import httpx
from django.conf import settings
from django.http import HttpRequest

from receipts.logging import mask
from receipts.models import Message
from receipts.normalized import MalformedReceipt, NormalizedReceipt, Outcome
from receipts.providers.base import (
    REFUSED,
    TAKEN,
    THROTTLED,
    UNKNOWN,
    Capabilities,
    Provider,
    SendError,
    content_of,
    http_client,
    load_json,
    raise_for,
    require,
    text,
    throttle_error,
    transport_error,
)
from receipts.status import FailureCategory as C
from receipts.status import Provider as ProviderName
from receipts.status import ReviewReason, Status

log = logging.getLogger(__name__)

# message_state -> status; None means "take the status from here, the category from result_code".
MESSAGE_STATE: dict[int, Outcome] = {
    1: Outcome(Status.SENT),  # ENROUTE
    2: Outcome(Status.DELIVERED),
    3: Outcome(Status.EXPIRED, C.TEMPORARY_NETWORK, retryable=True),
    4: Outcome(Status.FAILED),  # DELETED
    5: Outcome(Status.FAILED),  # UNDELIVERABLE
    6: Outcome(Status.SENT),  # ACCEPTED
    7: Outcome(review=ReviewReason.PROVIDER_UNKNOWN),  # UNKNOWN: no change, flag it
    8: Outcome(Status.REJECTED),
}
STATES_CATEGORISED_BY_RESULT = frozenset({4, 5, 8})
RESULT_CODE: dict[int, tuple[str, bool]] = {
    1: (C.PERMANENT_BLOCK, False),
    2: (C.SENDER_CONFIG, False),
    3: (C.INVALID_DESTINATION, False),
    4: (C.SENDER_CONFIG, False),
    5: (C.SENDER_CONFIG, False),
    6: (C.CARRIER_THROTTLE, True),
    7: (C.DUPLICATE, False),
    8: (C.CONTENT_REJECTED, False),
    98: (C.TEMPORARY_NETWORK, True),
    99: (C.UNKNOWN, False),
}


# A receipt's result_code 7 says the message is a duplicate of a message_id the service already took (we send the
# same id again when an MT's outcome was unknown): evidence that the first copy was taken, never a failure of it.
# Whatever its state says (8 REJECTED, 4, 5), it counts as sent: rank 20 never undoes a later status, and the
# message is never marked rejected for it (docs/design.md says why this departs from DESIGN.md's table).
RESULT_OVERRIDES: dict[int, Outcome] = {7: Outcome(Status.SENT, C.DUPLICATE)}


def outcome_for(state: int, result_code: int) -> Outcome:
    base = MESSAGE_STATE.get(state)
    if base is None:
        return Outcome(unmapped=True)
    if state not in STATES_CATEGORISED_BY_RESULT:
        return base
    if result_code in RESULT_OVERRIDES:
        return RESULT_OVERRIDES[result_code]
    category, retryable = RESULT_CODE.get(result_code, (C.UNKNOWN, False))
    unmapped = result_code not in RESULT_CODE
    return Outcome(base.status, category, retryable, unmapped=unmapped)


def as_int(fields: dict[str, str], name: str, required: bool) -> int | None:
    value = fields.get(name, "")
    if value == "":
        if required:
            raise MalformedReceipt(f"body has no '{name}'")
        return None
    try:
        if not value.isascii():
            raise ValueError(value)
        return int(value)
    except ValueError as exc:
        raise MalformedReceipt(f"'{name}' must be an integer, got {value!r}") from exc


def read_fields(body: bytes, content_type: str) -> dict[str, str]:
    try:
        decoded = body.decode()
    except UnicodeDecodeError as exc:
        raise MalformedReceipt("body is not UTF-8") from exc
    if "json" in content_type:
        data: Any = load_json(body)
        if not isinstance(data, dict):
            raise MalformedReceipt("expected a JSON object")
        return {k: text(v) for k, v in data.items()}
    try:
        return dict(parse_qsl(decoded, keep_blank_values=True, strict_parsing=bool(decoded)))
    except ValueError as exc:
        raise MalformedReceipt("body is not form-encoded (application/x-www-form-urlencoded)") from exc


@dataclass(frozen=True)
class GenesysSms(Provider):
    name: str = ProviderName.GENESYS_SMS

    credential_headers: ClassVar[tuple[str, ...]] = ("X-Webhook-Token",)

    def secrets(self) -> list[str]:
        return settings.WEBHOOK_SECRET_GENESYS_SMS

    def offers_credentials(self, request: HttpRequest) -> bool:
        return super().offers_credentials(request) or bool(request.GET.get("token"))

    def verify_signature(self, request: HttpRequest, body: bytes, secrets: list[str]) -> bool | None:
        token = request.headers.get("X-Webhook-Token") or request.GET.get("token")
        if not token:
            return None
        return any([hmac.compare_digest(token.encode(), s.encode()) for s in secrets])

    def received(self, request: HttpRequest, body: bytes) -> tuple[bytes, str]:
        """Receipt parameters may come in the POST's query string (the documentation does not rule it out): they
        are appended to a form body (the body's own win), never the ``token``, which is a credential."""
        content_type = request.META.get("CONTENT_TYPE", "")
        query = [
            (k, v) for k, v in parse_qsl(request.META.get("QUERY_STRING", ""), keep_blank_values=True) if k != "token"
        ]
        if not query or "json" in content_type:
            return body, content_type
        present = {k for k, _ in parse_qsl(body.decode("utf-8", "replace"), keep_blank_values=True)}
        extra = urlencode([(k, v) for k, v in query if k not in present]).encode()
        if not extra:
            return body, content_type
        return (body + b"&" + extra if body.strip() else extra), "application/x-www-form-urlencoded"

    def parse(self, body: bytes, content_type: str) -> list[NormalizedReceipt]:
        fields = read_fields(body, content_type)
        kind = require(fields, "type")
        if kind != "receipt":
            raise MalformedReceipt(f"'type' must be 'receipt', got {kind!r}")
        message_id = require(fields, "message_id")
        state = as_int(fields, "message_state", required=True)
        result = as_int(fields, "result_code", required=False) or 0
        assert state is not None
        details = {k: fields[k] for k in ("app_id", "conversation_id") if fields.get(k)}
        return [
            NormalizedReceipt(
                provider=self.name,
                provider_code=f"state={state};result={result}",
                outcome=outcome_for(state, result),
                provider_message_id=message_id,
                channel="sms",
                details=details,
                raw=fields,
            )
        ]


# --- sending --------------------------------------------------------------------------------------------

# What an MT's answer means for the send: TAKEN, REFUSED, THROTTLED, or UNKNOWN (as a 5xx: our message_id makes
# sending it again harmless), as receipts.providers.base says them.

# The MT answer's result code (the body ``<name>=<code>``) -> (what it says, what it means for the send). From public
# clients of the same API (the guide lists none): 0 accepted, 1 parameters missing or invalid, 2 authentication
# failed, 3 unrecognised carrier id, 4 invalid shortcode, 5 shortcode not approved, 6 throttled, 7 duplicate message
# id, 98 internal error, 99 other. Any other code, or a body not of that form, reads as UNKNOWN.
MT_RESULT: dict[int, tuple[str, str]] = {
    0: ("accepted", TAKEN),
    1: ("one or more parameters missing or invalid", REFUSED),
    2: ("authentication failed", REFUSED),
    3: ("unrecognised carrier id", REFUSED),
    4: ("invalid shortcode", REFUSED),
    5: ("shortcode not approved", REFUSED),
    6: ("throttled", THROTTLED),
    7: ("duplicate message id", TAKEN),  # the first copy was taken: we sent this message_id before
    98: ("internal error", UNKNOWN),
    99: ("other or unknown error", UNKNOWN),
}
MT_AUTH_FAILED = 2


def mt_result(body: str) -> int | None:
    """The code of an MT answer ``<name>=<code>``, or None when the body is not of that form."""
    _, equals, code = body.strip().rpartition("=")
    code = code.strip()
    return int(code) if equals and code.isascii() and code.isdigit() else None


def international(number: str) -> str:
    """A number as the MT takes it: digits in international format, no ``+`` (nor spaces, dashes, dots or
    parentheses someone typed into a setting). An alphanumeric sender is left as it is."""
    digits = number.strip().lstrip("+").translate(str.maketrans("", "", " -.()"))
    return digits if digits.isascii() and digits.isdigit() else number.strip()


class GenesysSmsSender:
    """An MT to the SMS Aggregation Service; we choose the message_id, and ask for delivery receipts."""

    def send(self, message: Message) -> str:
        content = content_of(message)
        # Ours to choose: the dispatcher passes one derived from the send, so sending it again is harmless (the
        # service answers the same message_id once).
        message_id = message.provider_message_id or str(uuid.uuid4())
        form = {
            "login": settings.GENESYS_SMS_LOGIN,
            "password": settings.GENESYS_SMS_PASSWORD,
            "phone_number": international(message.to),
            "sender": international(content.get("from") or settings.GENESYS_SMS_SENDER),
            "message": content["text"],
            "message_id": message_id,
            "receipt": "TRUE",
            "app_id": settings.GENESYS_SMS_APP_ID,
        }
        try:
            response = http_client().post(settings.GENESYS_SMS_MT_URL, data=form)
        except httpx.HTTPError as exc:
            raise transport_error("SMS Aggregation", exc) from exc
        raise_for(response, "SMS Aggregation")
        code = mt_result(response.text)
        if code is None:
            answer, meaning = f"no result code ({response.text[:100]!r})", UNKNOWN
        else:
            said, meaning = MT_RESULT.get(code, ("an unknown code", UNKNOWN))
            answer = f"result {code}, {said}"
        if meaning == TAKEN:
            log.info("SMS Aggregation MT %s to %s: %s", message_id, mask(message.to), answer)
            return message_id
        if meaning == THROTTLED:
            raise throttle_error("SMS Aggregation", response, answer)
        if meaning == REFUSED:
            if code == MT_AUTH_FAILED:
                # Every MT will fail alike until someone fixes the settings: an operator's problem, not a message's.
                log.error("SMS Aggregation refused our login: check GENESYS_SMS_LOGIN and GENESYS_SMS_PASSWORD")
            raise SendError(f"SMS Aggregation refused the MT: {answer}", status=response.status_code)
        raise SendError(
            f"SMS Aggregation answered {answer}: it may have taken the MT",
            transient=True,
            may_have_sent=True,
            status=response.status_code,
        )


CAPABILITIES = Capabilities(
    name=ProviderName.GENESYS_SMS,
    webhook="genesys-sms",
    channels=frozenset({"sms"}),  # SMS Aggregation carries no email
    sender_settings={"sms": "GENESYS_SMS_SENDER"},
    numeric_sms_sender=True,  # "must be numeric and in international format"
    idempotent_resend=True,  # our message_id; a repeat answers 7 (duplicate) and is one message
    own_breaker=True,
    credentials=("GENESYS_SMS_LOGIN", "GENESYS_SMS_PASSWORD"),
    answer_codes={str(code): meaning for code, (_, meaning) in MT_RESULT.items()},
    sender=GenesysSmsSender,
)
