"""What happened to a message or an address, announced to whoever keeps a record of it (the CRM outbox).

Dependencies point one way (crm_sync -> receipts), so receipts does not write outbox rows itself: its actions
publish ``DomainEvent``s on the ``changes`` signal *inside the transaction that made the change*, and a receiver
that writes rows there commits or rolls back with the change.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from django.dispatch import Signal


class Kind:
    STATUS_CHANGED = "status_changed"  # status, or review flag, of a message
    REVIEW_RESOLVED = "review_resolved"
    ESCALATION = "escalation"
    SUPPRESSION_ADDED = "suppression_added"
    SUPPRESSION_LIFTED = "suppression_lifted"
    CONFIRMATION = "confirmation"  # the recipient replied to confirm a message ("Reply YES")
    ALL = (STATUS_CHANGED, REVIEW_RESOLVED, ESCALATION, SUPPRESSION_ADDED, SUPPRESSION_LIFTED, CONFIRMATION)


@dataclass(frozen=True)
class DomainEvent:
    kind: str
    occurred_at: datetime
    payload: dict[str, Any] = field(default_factory=dict)
    message_id: int | None = None
    crm_record_id: str = ""


# Sent with ``events=[DomainEvent, ...]``, synchronously, inside the writing transaction.
changes = Signal()


def publish(events: list[DomainEvent]) -> None:
    if events:
        changes.send(sender=DomainEvent, events=events)


def message_state(message: Any) -> dict[str, Any]:
    """The message as the CRM sees it: no addresses, only ids and state."""
    return {
        "message_id": message.pk,
        "provider": message.provider,
        "provider_message_id": message.provider_message_id,
        "channel": message.channel,
        "status": message.status,
        "status_at": message.status_at.isoformat() if message.status_at else None,
        "assumed": message.assumed,
        "failure_category": message.failure_category,
        "retryable": message.retryable,
        "provider_code": message.provider_code,
        "needs_review": message.needs_review,
        "review_reason": message.review_reason,
        "campaign": message.campaign.name if message.campaign_id and message.campaign else None,
        "crm_record_id": message.crm_record_id,
    }
