"""The one place a status transition becomes row fields, and how a change of state is announced.

Every writer of a message's status (a receipt, the receipt timeout, an operator's settlement) asks the status
machine (``receipts.machine``, pure) for the next ``State`` and hands it to ``write``; ``status_changed`` is the
``status_changed`` event the CRM outbox gets for it, published in the same transaction.
"""

from __future__ import annotations

import hashlib
from datetime import datetime
from typing import Any

from receipts import machine
from receipts.events import DomainEvent, Kind, message_state
from receipts.models import Message


def state_of(message: Message) -> machine.State:
    return machine.State(
        message.status, message.status_at, message.assumed, message.failure_category, message.retryable
    )


def write(message: Message, state: machine.State) -> None:
    message.status, message.status_at, message.assumed = state.status, state.status_at, state.assumed
    message.failure_category, message.retryable = state.failure_category, state.retryable


def status_changed(message: Message, previous: str, source: str, now: datetime) -> DomainEvent:
    return DomainEvent(
        Kind.STATUS_CHANGED,
        occurred_at=now,
        payload={**message_state(message), "previous_status": previous, "source": source},
        message_id=message.pk,
        crm_record_id=message.crm_record_id,
    )


def timeline_key(*parts: Any) -> str:
    """The dedupe key of a timeline entry of our own making (no provider receipt behind it)."""
    return hashlib.sha256("\x1f".join(str(p) for p in parts).encode()).hexdigest()
