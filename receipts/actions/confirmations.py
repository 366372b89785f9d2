"""Replies that confirm a message ("Reply YES to confirm").

An inbound reply (a Webex Connect ``MO`` parsed as the engagement ``replied``) whose text, trimmed and case-folded,
is one of ``CONFIRM_WORDS`` confirms the latest message to that address on that channel, if that message went out
within ``CONFIRMATION_WINDOW_HOURS`` before the reply. The message keeps when and the word, and the CRM hears of it
as a ``confirmation`` change, in the batch's transaction. Opt-out and opt-in words (STOP, START) are not replies:
they keep their meaning, whatever ``CONFIRM_WORDS`` says.

Called by ``receipts.actions.process.apply_events`` inside the batch transaction, with the batch's effects. A batch
with no confirmation word costs no query here. Processing the same inbound event again confirms nothing again: its
timeline entry is already there (``Effect.entry`` is None), and a message keeps its first confirmation.
"""

from __future__ import annotations

import logging
from datetime import datetime
from typing import Any

from django.conf import settings

from receipts.actions.effects import Effect
from receipts.db import update_rows
from receipts.events import DomainEvent, Kind, message_state
from receipts.logging import mask
from receipts.models import Message
from receipts.normalized import NormalizedReceipt
from receipts.status import Engagement

log = logging.getLogger(__name__)

CONFIRMATION_FIELDS = ["confirmed_at", "confirmation"]


def confirm_words() -> frozenset[str]:
    return frozenset(word.strip().casefold() for word in settings.CONFIRM_WORDS if word.strip())


def confirmation_word(receipt: NormalizedReceipt, words: frozenset[str]) -> str | None:
    """The reply's text (trimmed) when it is a confirmation word, else None."""
    if not receipt.is_inbound or receipt.outcome.engagement != Engagement.REPLIED:
        return None
    text = str(receipt.details.get("text") or "").strip()
    return text if text and text.casefold() in words else None


def within_window(message: Message, at: datetime) -> bool:
    sent = message.sent_at or message.created_at
    return sent >= at - settings.CONFIRMATION_WINDOW


def record_confirmations(effects: list[Effect], now: datetime) -> list[DomainEvent]:
    """Confirm the messages these replies confirm; answers the CRM changes to publish with the batch."""
    words = confirm_words()
    if not words:
        return []
    confirmed: dict[int, Message] = {}
    events = []
    for effect in effects:
        receipt = effect.receipt
        word = confirmation_word(receipt, words)
        if word is None:
            continue
        at = min(receipt.occurred_at or now, now)
        message = effect.message
        if message is None or not within_window(message, at):
            hours = settings.CONFIRMATION_WINDOW.total_seconds() / 3600
            log.info(
                "confirmation from %s: no %s message to it in the %g hours before; ignored",
                mask(receipt.address),
                receipt.channel or "sms",
                hours,
            )
            continue
        if effect.entry is None:  # this reply was processed before: it confirmed (or not) then
            continue
        if message.confirmed_at is not None:
            log.info("message %s was confirmed already (%s); a later confirmation is on its timeline", message.pk, at)
            continue
        message.confirmed_at, message.confirmation = at, word[:100]
        confirmed[message.pk] = message
        events.append(DomainEvent(Kind.CONFIRMATION, at, payload(message, receipt), message.pk, message.crm_record_id))
    if confirmed:
        update_rows(list(confirmed.values()), CONFIRMATION_FIELDS)
        log.info("confirmations: message(s) %s", ", ".join(str(pk) for pk in confirmed))
    return events


def payload(message: Message, receipt: NormalizedReceipt) -> dict[str, Any]:
    assert message.confirmed_at is not None
    return {
        **message_state(message),
        "confirmed_at": message.confirmed_at.isoformat(),
        "confirmation": message.confirmation,
        "reply_provider": receipt.provider,
        "reply_event_id": str(receipt.details.get("event_id") or ""),
    }
