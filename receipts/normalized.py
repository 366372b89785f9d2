"""What every provider parser produces: one provider-neutral fact about one message (or one address)."""

from __future__ import annotations

import hashlib
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any


class MalformedReceipt(ValueError):
    """The body is not this provider's format; the message names what is wrong."""


class NothingToTrack(Exception):
    """The body is the provider's, well formed, and carries no receipt (Genesys Cloud's open messaging webhook also
    posts the outbound messages themselves): answered 200, nothing stored."""

    def __init__(self, what: str, count: int = 1) -> None:
        super().__init__(what)
        self.count = count


@dataclass(frozen=True)
class Outcome:
    """One row of a provider code table: what a provider signal means in our model.

    ``status`` None means the signal does not move the status (an engagement fact, an unknown state).
    """

    status: str | None = None
    category: str = ""
    retryable: bool = False
    engagement: str = ""
    review: str = ""
    soft_bounce: bool = False
    unmapped: bool = False


@dataclass(frozen=True)
class NormalizedReceipt:
    provider: str
    provider_code: str
    outcome: Outcome
    provider_message_id: str = ""
    # The recipient, when the provider names it: tells apart the recipients of one email (Webex Connect).
    to: str = ""
    channel: str = ""
    occurred_at: datetime | None = None
    description: str = ""
    # Engagement details (url, ip, user_agent), bounce subtype, inbound text, conversation id...
    details: dict[str, Any] = field(default_factory=dict)
    # The slice of the raw body this receipt came from, kept on the timeline.
    raw: dict[str, Any] = field(default_factory=dict)
    # For inbound events that concern an address rather than a message (opt-out, opt-in, reply).
    address: str = ""

    @property
    def key(self) -> str:
        """Identity of this fact: the same receipt delivered twice has the same key."""
        when = self.occurred_at.isoformat() if self.occurred_at else ""
        parts = [
            self.provider,
            self.provider_message_id,
            self.to.lower(),
            self.address.lower(),
            self.provider_code,
            when,
            str(self.details.get("url", "")),
            str(self.details.get("event_id", "")),
        ]
        return hashlib.sha256("\x1f".join(parts).encode()).hexdigest()

    @property
    def is_inbound(self) -> bool:
        return not self.provider_message_id and bool(self.address)


def dedupe_key(receipts: list[NormalizedReceipt]) -> str:
    """One key for a whole webhook body: the set of facts it carries, whatever its envelope."""
    return hashlib.sha256("|".join(sorted(r.key for r in receipts)).encode()).hexdigest()


def parse_time(value: Any) -> datetime | None:
    """Provider timestamps: ISO 8601 with or without offset (naive means UTC), or epoch seconds/millis."""
    if value in (None, ""):
        return None
    if isinstance(value, int | float) and not isinstance(value, bool):
        seconds = value / 1000 if value > 10**11 else value
        try:
            return datetime.fromtimestamp(seconds, tz=UTC)
        except (OverflowError, OSError, ValueError) as exc:  # NaN, or outside the years a datetime holds
            raise MalformedReceipt(f"timestamp {str(value)[:40]} is out of range") from exc
    if not isinstance(value, str):
        raise MalformedReceipt(f"timestamp {str(value)[:40]!r} is not a string")
    text = value.strip()
    if text.isascii() and text.isdigit():
        if len(text) > 20:
            raise MalformedReceipt(f"timestamp {text[:40]}... is out of range")
        return parse_time(int(text))
    try:
        parsed = datetime.fromisoformat(text.replace("Z", "+00:00"))
    except ValueError as exc:
        raise MalformedReceipt(f"timestamp {value[:60]!r} is not ISO 8601") from exc
    return parsed if parsed.tzinfo else parsed.replace(tzinfo=UTC)
