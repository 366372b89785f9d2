"""A simulated message: who sent it where, and its whole future (when it is sent, when and how it ends).

The schedule is drawn once, when the message is accepted, from a random stream that depends only on the seed, the
provider and the message's sequence number; everything a provider answers or pushes later is read off it, so
polling and pushing always agree.
"""

from __future__ import annotations

import random
import time
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

# Failure reasons each provider reports, with how often (weights). Codes are the providers' own.
# Genesys Cloud: ConversationReason.code (platform SDK). The failed outcome picks one of these; expired is
# always MessageExpired.
GENESYS_FAILED: list[tuple[str, int]] = [
    ("InvalidDestination", 40),
    ("RecipientOptedOut", 15),
    ("RateLimited", 10),
    ("MessageNotAllowed", 10),
    ("GeneralError", 10),
    ("ServerError", 5),
    ("UnknownMessage", 5),
    ("DataFiltered", 5),
]
GENESYS_EXPIRED = "MessageExpired"
GENESYS_REASON_TEXT = {
    "MessageExpired": "The message expired before it could be delivered.",
    "RateLimited": "The carrier rate limited the message.",
    "MessageNotAllowed": "The message is not allowed by the carrier.",
    "GeneralError": "A general error occurred while delivering the message.",
    "UnsupportedMessage": "The message is not supported by the destination.",
    "UnknownMessage": "The message is unknown to the carrier.",
    "InvalidMessageStructure": "The message structure is invalid.",
    "InvalidDestination": "The destination address is not valid or not reachable.",
    "ServerError": "The carrier answered with a server error.",
    "MediaTypeNotAllowed": "The media type is not allowed.",
    "InvalidMediaContentLength": "The media content length is invalid.",
    "RecipientOptedOut": "The recipient has opted out of messages from this sender.",
    "DataFiltered": "The message was filtered by the carrier.",
}
# SMS Aggregation: "<message_state>:<result_code>" of the final receipt.
SMS_FAILED: list[tuple[str, int]] = [
    ("5:1", 30),  # undeliverable, rejected upstream
    ("5:3", 20),  # undeliverable, invalid carrier
    ("5:6", 10),  # undeliverable, throttled
    ("4:98", 10),  # deleted by the aggregator, internal error
    ("8:8", 10),  # rejected, body too long
    ("8:2", 5),  # rejected, authentication failure
    ("5:99", 10),  # undeliverable, unmapped
]
SMS_EXPIRED = "3:0"
SMS_RESULT_TEXT = {
    0: "Success.",
    1: "Rejected by the upstream provider.",
    2: "Authentication failure.",
    3: "Invalid carrier.",
    4: "Alphanumeric shortcode not permitted on this carrier.",
    5: "Shortcode not allowed for this carrier.",
    6: "Throttled; resubmit.",
    7: "Duplicate message.",
    8: "Message body too long.",
    98: "Internal service error.",
    99: "Unmapped error.",
}
# Webex Connect: deliveryInfo.code, and for 7520 bounces "7520:<subtype>".
WEBEX_SMS_FAILED: list[tuple[str, int]] = [("7102", 60), ("7101", 20), ("7107", 20)]
WEBEX_SMS_EXPIRED = "7208"
WEBEX_EMAIL_FAILED: list[tuple[str, int]] = [
    ("7520:Permanent_General", 30),
    ("7520:Permanent_NoEmail", 20),
    ("7523", 15),
    ("7524", 10),
    ("7240", 10),
    ("7241", 10),
    ("7522", 5),
]
# Email cannot expire at Webex Connect; an "expired" email is a soft bounce the provider gives up on.
WEBEX_EMAIL_EXPIRED = "7520:Transient_MailboxFull"
WEBEX_TEXT = {
    "7500": ("Delivered", "Delivered"),
    "7501": ("Submitted", "Submitted"),
    "7101": ("Failed", "Invalid sender id"),
    "7102": ("Failed", "Invalid address"),
    "7107": ("Failed", "Message length exceeded"),
    "7208": ("Failed", "Message expired"),
    "7520": ("Bounce", ""),
    "7522": ("Not Verified", "Account in sandbox mode. Destination email address is not verified"),
    "7523": ("Failed", "Invalid email address"),
    "7524": ("Failed", "Email address max length reached"),
    "7240": ("Failed", "already bounced : {to}"),
    "7241": ("Failed", "unsubscribed : {to}"),
}
WEBEX_BOUNCE_SMTP = {
    "Permanent_General": "5.1.1|failed|smtp; 550 5.1.1 The email account that you tried to reach does not exist.",
    "Permanent_NoEmail": "5.1.2|failed|smtp; 550 5.1.2 Host unknown: the domain has no mail server.",
    "Transient_MailboxFull": "4.2.2|failed|smtp; 452 4.2.2 The email account that you tried to reach is over quota.",
    "Transient_General": "4.0.0|failed|smtp; 451 4.0.0 Temporary local problem, please try again.",
}


def reason_table(provider: str, channel: str, outcome: str) -> list[tuple[str, int]]:
    if outcome == "expired":
        code = {
            "genesys_cloud": GENESYS_EXPIRED,
            "genesys_sms": SMS_EXPIRED,
            "webex_connect": WEBEX_EMAIL_EXPIRED if channel == "email" else WEBEX_SMS_EXPIRED,
        }[provider]
        return [(code, 1)]
    if outcome == "failed":
        if provider == "genesys_cloud":
            return GENESYS_FAILED
        if provider == "genesys_sms":
            return SMS_FAILED
        return WEBEX_EMAIL_FAILED if channel == "email" else WEBEX_SMS_FAILED
    return []


def check_reason(provider: str, channel: str, outcome: str, reason: str) -> str:
    """A forced reason must be one this provider can report for this outcome; empty picks the usual one."""
    if outcome in ("delivered", "silent"):
        return ""
    if not reason:
        return reason_table(provider, channel, outcome)[0][0]
    if provider == "genesys_cloud":
        if reason not in GENESYS_REASON_TEXT:
            raise ValueError(f"unknown Genesys Cloud reason {reason!r}; choose from {sorted(GENESYS_REASON_TEXT)}")
    elif provider == "genesys_sms":
        state, _, result = reason.partition(":")
        if not (state.isdigit() and result.isdigit() and int(state) in range(1, 9)):
            raise ValueError(f"SMS Aggregation reason {reason!r} must be '<message_state>:<result_code>'")
    else:
        code = reason.partition(":")[0]
        if not (code.isdigit() and len(code) == 4):
            raise ValueError(f"Webex Connect reason {reason!r} must be a 7xxx code (7520:<subtype> for bounces)")
    return reason


def pick(rng: random.Random, table: list[tuple[str, int]]) -> str:
    codes, weights = zip(*table, strict=True)
    return rng.choices(codes, weights)[0]


def iso(ts: float) -> str:
    """Genesys style: ``2026-11-20T10:15:02.114Z`` (time.strftime: three times faster than datetime's, and
    analytics pages format eight of these per conversation)."""
    seconds = int(ts)
    return time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(seconds)) + f".{int((ts - seconds) * 1000):03d}Z"


def iso_offset(ts: float) -> str:
    """Webex Connect style: ``2023-02-07T03:51:04.662+00:00``."""
    return datetime.fromtimestamp(ts, tz=UTC).isoformat(timespec="milliseconds")


@dataclass(slots=True, eq=False)
class SimMessage:
    seq: int
    provider: str
    channel: str  # sms | email
    id: str  # Genesys message id, SMS Aggregation message_id, Webex Connect transid
    conversation_id: str
    to: str
    from_: str
    body: str
    created: float  # wall clock, seconds
    sent_at: float
    final_at: float | None  # None: never reports (silent)
    outcome: str  # delivered | failed | expired | silent
    reason: str  # the provider's code for failed/expired, see the tables above
    push: bool  # whether receipts for it are pushed
    duplicate: bool = False  # its receipts are pushed twice
    out_of_order: bool = False  # its intermediate receipt is pushed after the final one
    extra: dict[str, Any] = field(default_factory=dict)  # app_id, correlationid, callbackData, subject, ...
    generation: int = 0  # bumped when an outcome is forced; stale scheduled pushes are dropped
    preloaded: bool = False

    def status_at(self, now: float) -> str:
        """queued, sent, or the outcome once its time has come (a silent message stays sent)."""
        if now < self.sent_at:
            return "queued"
        if self.final_at is None or now < self.final_at or self.outcome == "silent":
            return "sent"
        return self.outcome

    def is_final_at(self, now: float) -> bool:
        return self.status_at(now) in ("delivered", "failed", "expired")

    def changed_at(self, now: float) -> float:
        status = self.status_at(now)
        if status == "queued":
            return self.created
        if status == "sent":
            return self.sent_at
        return self.final_at or self.sent_at

    def describe(self, now: float | None = None) -> dict[str, Any]:
        now = time.time() if now is None else now
        return {
            "provider": self.provider,
            "channel": self.channel,
            "id": self.id,
            "conversationId": self.conversation_id,
            "to": self.to,
            "from": self.from_,
            "outcome": self.outcome,
            "reason": self.reason,
            "status": self.status_at(now),
            "created": iso(self.created),
            "sentAt": iso(self.sent_at),
            "finalAt": iso(self.final_at) if self.final_at is not None and self.outcome != "silent" else None,
            "push": self.push,
            "duplicate": self.duplicate,
            "outOfOrder": self.out_of_order,
            "preloaded": self.preloaded,
            "extra": dict(self.extra),  # what the send carried besides the message: correlationid, externalContactId
        }
