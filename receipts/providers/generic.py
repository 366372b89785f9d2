"""Generic JSON receipts: ``{id, conversationId, status|deliveryStatus, errorCode, timestamp, metadata}``.

For any sender that relays receipts in that shape (one object or a list). Signed per Standard Webhooks:
``webhook-id``, ``webhook-timestamp``, ``webhook-signature: v1,<base64 HMAC-SHA256 of id.timestamp.body>`` with a
``whsec_<base64 key>`` secret, 5 minutes' tolerance.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import time
from dataclasses import dataclass
from typing import Any, ClassVar

from django.conf import settings
from django.http import HttpRequest

from receipts.normalized import MalformedReceipt, NormalizedReceipt, Outcome, parse_time
from receipts.providers.base import Capabilities, Provider, b64decode_unpadded, identifier, load_json, text
from receipts.status import Engagement, Status
from receipts.status import FailureCategory as C
from receipts.status import Provider as ProviderName

STATUS: dict[str, Outcome] = {
    "pending": Outcome(Status.PENDING),
    "accepted": Outcome(Status.QUEUED),
    "queued": Outcome(Status.QUEUED),
    "sending": Outcome(Status.SENT),
    "sent": Outcome(Status.SENT),
    "deferred": Outcome(Status.DEFERRED, C.TEMPORARY_NETWORK, retryable=True),
    "delivered": Outcome(Status.DELIVERED),
    "failed": Outcome(Status.FAILED, C.UNKNOWN),
    "undelivered": Outcome(Status.FAILED, C.UNKNOWN),
    "rejected": Outcome(Status.REJECTED, C.UNKNOWN),
    "expired": Outcome(Status.EXPIRED, C.TEMPORARY_NETWORK, retryable=True),
    "bounced": Outcome(Status.BOUNCED, C.INVALID_DESTINATION),
    "read": Outcome(engagement=Engagement.READ),
    "opened": Outcome(engagement=Engagement.READ),
    "clicked": Outcome(engagement=Engagement.CLICKED),
    "complained": Outcome(engagement=Engagement.COMPLAINED),
    "unsubscribed": Outcome(engagement=Engagement.UNSUBSCRIBED),
    "subscribed": Outcome(engagement=Engagement.SUBSCRIBED),
}
FAILURE_STATUSES = frozenset({"failed", "undelivered", "rejected"})
# errorCode -> (category, retryable). Our own category names are accepted as they are.
ERROR_CODE: dict[str, tuple[str, bool]] = {
    "carrier_rejected": (C.PERMANENT_BLOCK, False),
    "blocked": (C.PERMANENT_BLOCK, False),
    "spam": (C.CONTENT_REJECTED, False),
    "invalid_number": (C.INVALID_DESTINATION, False),
    "invalid_address": (C.INVALID_DESTINATION, False),
    "unreachable": (C.TEMPORARY_NETWORK, True),
    "network_error": (C.TEMPORARY_NETWORK, True),
    "timeout": (C.TEMPORARY_NETWORK, True),
    "throttled": (C.CARRIER_THROTTLE, True),
    "rate_limited": (C.CARRIER_THROTTLE, True),
    "opted_out": (C.OPTED_OUT, False),
    "unsubscribed": (C.OPTED_OUT, False),
    **{category.value: (category.value, category in (C.TEMPORARY_NETWORK, C.CARRIER_THROTTLE)) for category in C},
}


def outcome_for(status: str, error_code: str) -> Outcome:
    base = STATUS.get(status.lower())
    if base is None:
        return Outcome(unmapped=True)
    if status.lower() not in FAILURE_STATUSES or not error_code:
        return base
    mapped = ERROR_CODE.get(error_code.lower())
    if mapped is None:
        return Outcome(base.status, C.UNKNOWN, unmapped=True)
    return Outcome(base.status, mapped[0], mapped[1])


def parse_one(obj: Any) -> NormalizedReceipt:
    if not isinstance(obj, dict):
        raise MalformedReceipt("expected a JSON object")
    message_id = identifier(obj, "id")
    status = text(obj.get("status") or obj.get("deliveryStatus"))
    if not status:
        raise MalformedReceipt("body has neither 'status' nor 'deliveryStatus'")
    error_code = text(obj.get("errorCode"))
    metadata = obj.get("metadata")
    if metadata is not None and not isinstance(metadata, dict):
        raise MalformedReceipt("'metadata' must be an object")
    details: dict[str, Any] = {k: text(obj[k]) for k in ("url", "ip", "user_agent") if obj.get(k)}
    if obj.get("conversationId"):
        details["conversation_id"] = text(obj["conversationId"])
    return NormalizedReceipt(
        provider=ProviderName.GENERIC,
        provider_code=f"{status}/{error_code}" if error_code else status,
        outcome=outcome_for(status, error_code),
        provider_message_id=message_id,
        to=text(obj.get("to")),
        channel="email" if text(obj.get("type")).lower() == "email" else "sms",
        occurred_at=parse_time(obj.get("timestamp")),
        description=text(obj.get("errorMessage") or obj.get("description")),
        details=details,
        raw=obj,
    )


def whsec_key(secret: str) -> bytes | None:
    """A Standard Webhooks secret's key: ``whsec_`` and base64, padded or not (the reference library takes both)."""
    try:
        return b64decode_unpadded(secret.removeprefix("whsec_")) or None
    except ValueError:
        return None


def standard_webhooks_ok(msg_id: str, timestamp: str, signatures: str, body: bytes, secrets: list[str]) -> bool:
    if not (timestamp.isascii() and timestamp.isdigit() and len(timestamp) <= 20):
        return False
    sent_at = int(timestamp)
    if abs(time.time() - sent_at) > settings.WEBHOOK_TIMESTAMP_TOLERANCE:
        return False
    signed = f"{msg_id}.{timestamp}.".encode() + body
    given = [part.partition(",")[2] for part in signatures.split() if part.startswith("v1,")]
    for secret in secrets:
        key = whsec_key(secret)
        if key is None:
            continue
        expected = base64.b64encode(hmac.new(key, signed, hashlib.sha256).digest())
        # As bytes: compare_digest refuses a str with non-ASCII characters, and a header can carry any.
        if any([hmac.compare_digest(expected, g.encode("utf-8", "replace")) for g in given]):
            return True
    return False


@dataclass(frozen=True)
class Generic(Provider):
    name: str = ProviderName.GENERIC

    credential_headers: ClassVar[tuple[str, ...]] = ("webhook-signature",)

    def secrets(self) -> list[str]:
        return settings.WEBHOOK_SECRET_GENERIC

    def verify_signature(self, request: HttpRequest, body: bytes, secrets: list[str]) -> bool | None:
        signatures = request.headers.get("webhook-signature")
        if not signatures:
            return None
        msg_id = request.headers.get("webhook-id", "")
        timestamp = request.headers.get("webhook-timestamp", "")
        return standard_webhooks_ok(msg_id, timestamp, signatures, body, secrets)

    def parse(self, body: bytes, content_type: str) -> list[NormalizedReceipt]:
        data = load_json(body)
        items = data if isinstance(data, list) else [data]
        receipts = [parse_one(item) for item in items]
        if not receipts:
            raise MalformedReceipt("body carries no receipt")
        return receipts


# Receives only: any sender that relays receipts in the generic shape; nothing is sent through it.
CAPABILITIES = Capabilities(name=ProviderName.GENERIC, webhook="generic")
