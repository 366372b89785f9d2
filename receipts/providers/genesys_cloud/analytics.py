"""Genesys Cloud analytics, read as receipts: the conversation details job answers for a message.

``sessions[].deliveryStatus`` (the platform SDK's ``AnalyticsSession.deliveryStatus``) is mapped to MessageData's own
status words (``DELIVERY_STATUS``), and the answer is built as a MessageData body, so that the provider module's
parser and code tables (``receipts.providers.genesys_cloud.parser``) apply to it exactly as to a polled or pushed
message. The bulk polling tier (``receipts.polling.reconcile``) submits the query and feeds the answers here.

A failure's reason is what gives it its category (expired, opted out, invalid destination) and its effects
(a retry, a suppression). Analytics does not give it for SMS: ``extendedDeliveryStatus`` is documented only as an
"extended delivery status" and is an email matter. So a failed SMS session is not answered from analytics at all
(``needs_lookup``): the bulk tier looks the message up (the bulk message lookup, 1,000 ids a request), whose
``normalizedReceipts`` carry the reasons. An email session's extended status counts as a reason only when it is
a code the code tables know.
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any, Protocol

from receipts.normalized import MalformedReceipt, parse_time
from receipts.providers.genesys_cloud.client import AnalyticsConversation, AnalyticsSession
from receipts.providers.genesys_cloud.parser import REASON

# AnalyticsSession.deliveryStatus (platform SDK enum DeliveryStatusEnum) -> MessageData.status, which the
# Genesys Cloud provider module maps to our statuses. Values not here pass through as they are, and the provider
# module marks them unmapped (kept, shown in the admin, never raising).
DELIVERY_STATUS: dict[str, str] = {
    "Queued": "queued",
    "Sent": "sent",
    "Published": "published",
    # Handed on by a push mechanism: gone from the platform, not yet confirmed delivered.
    "DeliveryPushed": "sent",
    "DeliverySuccess": "delivery-success",
    "DeliveryFailed": "delivery-failed",
    "Failed": "failed",
    "Read": "read",
    # The status of an inbound message: says nothing about ours.
    "Received": "received",
}
FAILED_STATUSES = frozenset({"failed", "delivery-failed"})


class Addressed(Protocol):
    """What the answer needs of the message it is for."""

    @property
    def provider_message_id(self) -> str: ...

    @property
    def channel(self) -> str: ...


def iso(moment: datetime) -> str:
    return moment.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%S.") + f"{moment.microsecond // 1000:03d}Z"


def analytics_query(start: datetime, end: datetime) -> dict[str, Any]:
    """AsyncConversationQuery: outbound message and email conversations active in [start, end)."""

    def predicate(dimension: str, value: str) -> dict[str, str]:
        return {"type": "dimension", "dimension": dimension, "operator": "matches", "value": value}

    return {
        "interval": f"{iso(start)}/{iso(end)}",
        "order": "asc",
        "orderBy": "conversationStart",
        "segmentFilters": [
            {"type": "or", "predicates": [predicate("mediaType", "message"), predicate("mediaType", "email")]},
            {"type": "and", "predicates": [predicate("direction", "outbound")]},
        ],
    }


def _session_time(session: AnalyticsSession) -> datetime:
    try:
        return parse_time(session.delivery_status_change_date) or datetime.min.replace(tzinfo=UTC)
    except MalformedReceipt:
        return datetime.min.replace(tzinfo=UTC)


def delivery_session(conversation: AnalyticsConversation, channel: str) -> AnalyticsSession | None:
    """The session that tells the message's delivery: the latest delivery status of the right media type."""
    media = "email" if channel == "email" else "message"
    candidates = [s for s in conversation.sessions if s.delivery_status]
    preferred = [s for s in candidates if s.media_type == media] or candidates
    return max(preferred, key=_session_time, default=None)


def reason_given(message: Addressed, session: AnalyticsSession) -> str:
    """The failure reason analytics gives, or "": only an email session's extended status, and only a known code."""
    extended = session.extended_delivery_status
    return extended if message.channel == "email" and extended in REASON else ""


def needs_lookup(message: Addressed, session: AnalyticsSession) -> bool:
    """An SMS failure analytics gives no reason for: the message itself must be looked up for it. Never an email:
    the messaging lookups do not know emails, and analytics is all Genesys Cloud says of one."""
    if message.channel == "email":
        return False
    failed = DELIVERY_STATUS.get(session.delivery_status, session.delivery_status) in FAILED_STATUSES
    return failed and not reason_given(message, session)


def message_data_from_session(message: Addressed, conversation_id: str, session: AnalyticsSession) -> dict[str, Any]:
    """A MessageData-shaped body for the provider module's parser: the message's id, status and time."""
    status = DELIVERY_STATUS.get(session.delivery_status, session.delivery_status)
    body: dict[str, Any] = {
        "id": message.provider_message_id,
        "conversationId": conversation_id,
        "status": status,
        "timestamp": session.delivery_status_change_date or None,
        "messengerType": "email" if message.channel == "email" else "sms",
        "direction": "outbound",
        "analytics": {
            "deliveryStatus": session.delivery_status,
            **(
                {"extendedDeliveryStatus": session.extended_delivery_status} if session.extended_delivery_status else {}
            ),
            **({"sessionId": session.session_id} if session.session_id else {}),
        },
    }
    if status in FAILED_STATUSES and (reason := reason_given(message, session)):
        body["reasons"] = [{"code": reason, "message": session.error_code_description}]
    return body
