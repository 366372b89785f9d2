"""Genesys Cloud CX: MessageData (message details, bulk) and normalized receipts (open messaging push).

Field names follow the platform SDK (purecloudplatformclientv2): MessageData has ``id``, ``status``,
``timestamp``, ``normalizedReceipts``; a receipt has ``type: Receipt``, ``status``, ``reasons[].code``,
``channel.messageId``, ``channel.time``. Pushes are signed with ``X-Hub-Signature-256``.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, ClassVar

from django.conf import settings
from django.http import HttpRequest

from receipts.normalized import MalformedReceipt, NormalizedReceipt, NothingToTrack, Outcome, parse_time
from receipts.providers.base import Provider, hmac_signature_ok, identifier, load_json, require, text
from receipts.status import Engagement, FailureCategory, Status
from receipts.status import Provider as ProviderName

C = FailureCategory

# MessageData.status and receipt status -> outcome; "failed" family resolved by the reason below.
FAILED = "failed"
MESSAGE_STATUS: dict[str, Outcome | str] = {
    "queued": Outcome(Status.QUEUED),
    "sent": Outcome(Status.SENT),
    "published": Outcome(Status.SENT),
    "delivery-success": Outcome(Status.DELIVERED),
    "read": Outcome(engagement=Engagement.READ),
    "failed": FAILED,
    "delivery-failed": FAILED,
    "removed": FAILED,
    # An inbound message's own status; says nothing about an outbound one.
    "received": Outcome(),
}
RECEIPT_STATUS: dict[str, Outcome | str] = {
    "Sent": Outcome(Status.SENT),
    "Published": Outcome(Status.SENT),
    "Delivered": Outcome(Status.DELIVERED),
    "Read": Outcome(engagement=Engagement.READ),
    "Failed": FAILED,
    "Removed": FAILED,
}
REASON: dict[str, Outcome] = {
    "MessageExpired": Outcome(Status.EXPIRED, C.TEMPORARY_NETWORK, retryable=True),
    "RateLimited": Outcome(Status.FAILED, C.CARRIER_THROTTLE, retryable=True),
    "ServerError": Outcome(Status.FAILED, C.TEMPORARY_NETWORK, retryable=True),
    "InvalidDestination": Outcome(Status.FAILED, C.INVALID_DESTINATION),
    "RecipientOptedOut": Outcome(Status.REJECTED, C.OPTED_OUT),
    "MessageNotAllowed": Outcome(Status.REJECTED, C.PERMANENT_BLOCK),
    "UnsupportedMessage": Outcome(Status.REJECTED, C.CONTENT_REJECTED),
    "InvalidMessageStructure": Outcome(Status.REJECTED, C.CONTENT_REJECTED),
    "MediaTypeNotAllowed": Outcome(Status.REJECTED, C.CONTENT_REJECTED),
    "InvalidMediaContentLength": Outcome(Status.REJECTED, C.CONTENT_REJECTED),
    "DataFiltered": Outcome(Status.REJECTED, C.CONTENT_REJECTED),
    "GeneralError": Outcome(Status.FAILED, C.UNKNOWN),
    "UnknownMessage": Outcome(Status.FAILED, C.UNKNOWN),
}
UNKNOWN_FAILURE = Outcome(Status.FAILED, C.UNKNOWN, unmapped=True)
UNKNOWN_STATUS = Outcome(unmapped=True)


def outcome_for(status: str, table: dict[str, Outcome | str], reasons: list[dict[str, Any]]) -> Outcome:
    entry = table.get(status)
    if entry is None:
        return UNKNOWN_STATUS
    if entry != FAILED:
        return entry  # type: ignore[return-value]
    for reason in reasons:
        mapped = REASON.get(text(reason.get("code")))
        if mapped:
            return mapped
    return UNKNOWN_FAILURE


def code_of(status: str, reasons: list[dict[str, Any]]) -> str:
    codes = [text(r.get("code")) for r in reasons if r.get("code")]
    return "/".join([status, *codes])


def reasons_of(obj: dict[str, Any]) -> list[dict[str, Any]]:
    reasons = obj.get("reasons") or []
    if not isinstance(reasons, list) or not all(isinstance(r, dict) for r in reasons):
        raise MalformedReceipt("'reasons' must be a list of objects")
    return reasons


def parse_receipt(obj: dict[str, Any], parent: dict[str, Any] | None = None) -> NormalizedReceipt:
    """A normalized receipt (``type: Receipt``), pushed alone or inside a MessageData (its ``parent``)."""
    parent = parent or {}
    channel = obj.get("channel") or {}
    if not isinstance(channel, dict):
        raise MalformedReceipt("receipt 'channel' must be an object")
    status = text(require(obj, "status", "receipt"))
    message_id = (
        identifier(channel, "messageId", "receipt channel", required=False)
        or identifier(parent, "id", "MessageData", required=False)
        or identifier(obj, "id", "receipt", required=False)
    )
    if not message_id:
        raise MalformedReceipt("receipt has neither 'channel.messageId' nor 'id'")
    reasons = reasons_of(obj)
    to = channel.get("to") or {}
    return NormalizedReceipt(
        provider=ProviderName.GENESYS_CLOUD,
        provider_code=code_of(status, reasons),
        outcome=outcome_for(status, RECEIPT_STATUS, reasons),
        provider_message_id=message_id,
        to=text(to.get("id")) if isinstance(to, dict) and to.get("id") else text(parent.get("toAddress")),
        channel=channel_of(parent),
        occurred_at=parse_time(channel.get("time") or obj.get("timestamp")),
        description="; ".join(text(r.get("message")) for r in reasons if r.get("message")),
        raw=obj,
    )


def channel_of(message_data: dict[str, Any]) -> str:
    if not message_data.get("messengerType"):
        return ""
    return "email" if text(message_data["messengerType"]).lower() == "email" else "sms"


def parse_message_data(obj: dict[str, Any]) -> list[NormalizedReceipt]:
    message_id = identifier(obj, "id", "MessageData")
    status = text(require(obj, "status", "MessageData"))
    receipts_raw = obj.get("normalizedReceipts") or []
    if not isinstance(receipts_raw, list) or not all(isinstance(r, dict) for r in receipts_raw):
        raise MalformedReceipt("'normalizedReceipts' must be a list of objects")
    receipts = [parse_receipt(r, obj) for r in receipts_raw]
    # MessageData carries no reasons of its own: a failed status means what its receipts' reasons say.
    reasons = reasons_of(obj) or next((reasons_of(r) for r in reversed(receipts_raw) if r.get("reasons")), [])
    top = NormalizedReceipt(
        provider=ProviderName.GENESYS_CLOUD,
        provider_code=code_of(status, reasons),
        outcome=outcome_for(status, MESSAGE_STATUS, reasons),
        provider_message_id=message_id,
        to=text(obj.get("toAddress")),
        channel=channel_of(obj),
        occurred_at=parse_time(obj.get("timestamp")),
        details={"conversation_id": text(obj.get("conversationId"))} if obj.get("conversationId") else {},
        # The message's text (``textBody``, and ``normalizedMessage`` since SDK 269) is not a receipt: not kept.
        raw={k: v for k, v in obj.items() if k not in ("normalizedReceipts", "textBody", "normalizedMessage")},
    )
    # The top-level status repeats the latest receipt; keep it only when it says something they do not.
    covered = {(r.outcome.status, r.outcome.engagement) for r in receipts}
    if (top.outcome.status, top.outcome.engagement) not in covered:
        receipts.append(top)
    return receipts


# Fields only a MessageData carries: an object with a ``channel`` and none of these is a receipt.
MESSAGE_DATA_FIELDS = (
    "messengerType",
    "toAddress",
    "fromAddress",
    "normalizedReceipts",
    "textBody",
    "normalizedMessage",
)


def is_receipt(obj: dict[str, Any]) -> bool:
    """A normalized receipt: ``type: Receipt``, or the documented shape without it (``id``, ``channel``,
    ``status: "Delivered"``, ``direction``, ``isFinalReceipt``, ``reasons``), which a MessageData never is."""
    if obj.get("type") == "Receipt" or "isFinalReceipt" in obj:
        return True
    return isinstance(obj.get("channel"), dict) and not any(name in obj for name in MESSAGE_DATA_FIELDS)


# An open messaging message (not a receipt): what the integration's outbound webhook posts besides receipts.
MESSAGE_TYPES = ("Text", "Structured", "Event")


def is_message(obj: dict[str, Any]) -> bool:
    return obj.get("type") in MESSAGE_TYPES and "direction" in obj and "status" not in obj


def parse_object(obj: Any) -> list[NormalizedReceipt]:
    if not isinstance(obj, dict):
        raise MalformedReceipt("expected a JSON object (MessageData or receipt)")
    if isinstance(obj.get("entities"), list):
        return [r for entity in obj["entities"] for r in parse_object(entity)]
    if is_receipt(obj):
        return [parse_receipt(obj)]
    if "status" in obj and "id" in obj:
        return parse_message_data(obj)
    raise MalformedReceipt("not a Genesys Cloud MessageData, receipt or bulk answer (need 'id' and 'status')")


@dataclass(frozen=True)
class GenesysCloud(Provider):
    name: str = ProviderName.GENESYS_CLOUD

    credential_headers: ClassVar[tuple[str, ...]] = ("X-Hub-Signature-256",)

    def secrets(self) -> list[str]:
        return settings.WEBHOOK_SECRET_GENESYS_CLOUD

    def verify_signature(self, request: HttpRequest, body: bytes, secrets: list[str]) -> bool | None:
        header = request.headers.get("X-Hub-Signature-256")
        if not header:
            return None
        return header.lower().startswith("sha256=") and hmac_signature_ok(header, body, secrets)

    def parse(self, body: bytes, content_type: str) -> list[NormalizedReceipt]:
        data = load_json(body)
        items = data if isinstance(data, list) else [data]
        others = [item for item in items if not (isinstance(item, dict) and is_message(item))]
        if items and not others:
            raise NothingToTrack("open messaging messages, not receipts", len(items))
        receipts = [r for item in others for r in parse_object(item)]
        if not receipts:
            raise MalformedReceipt("body carries no receipt")
        return receipts
