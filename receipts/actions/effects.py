"""What a receipt means beyond the message's status: suppression effects and retries.

``apply_receipt_effects`` is called by ``receipts.actions.process.apply_events`` inside the batch transaction, once per
batch, with every receipt the batch applied (and every inbound address event, with or without a message).
A batch where no receipt calls for anything costs no query here; otherwise a fixed handful, whatever the batch
size (the suppressions of the addresses involved, history keys, soft-bounce rows, writes, the CRM lookup,
retry decisions).

The rules are data (``SUPPRESS``, ``LIFT``), each switched by a setting where one is named; an opt-out is
always honoured.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from django.conf import settings

from receipts.actions import retries, suppression
from receipts.addresses import normalize_address
from receipts.logging import mask
from receipts.models import Message, MessageEvent, SuppressionReason, SuppressionSource
from receipts.normalized import NormalizedReceipt
from receipts.status import Channel, Engagement, FailureCategory, Status

log = logging.getLogger(__name__)

Reason = SuppressionReason


@dataclass(frozen=True)
class Effect:
    receipt: NormalizedReceipt
    # None for an inbound event about an address that has no message here.
    message: Message | None
    # The timeline entry the receipt wrote (None when it was already on the timeline: apply effects once).
    entry: MessageEvent | None


@dataclass(frozen=True)
class Rule:
    """A receipt whose outcome has ``attribute`` == ``value`` (on ``channel``, when given) adds (or lifts)
    ``reason``, unless the setting named ``switch`` is off."""

    attribute: str  # an Outcome field: status, engagement, category
    value: str
    reason: str
    switch: str | None = None
    channel: str | None = None

    def matches(self, receipt: NormalizedReceipt, channel: str) -> bool:
        if self.channel and self.channel != channel:
            return False
        if self.switch and not getattr(settings, self.switch):
            return False
        return getattr(receipt.outcome, self.attribute) == self.value


# The first matching rule decides: one receipt, at most one suppression.
SUPPRESS: list[Rule] = [
    Rule("status", Status.BOUNCED, Reason.HARD_BOUNCE, "SUPPRESS_HARD_BOUNCE"),
    # Webex Connect 7240: the provider refuses an address it already saw bounce.
    Rule("category", FailureCategory.SUPPRESSED, Reason.HARD_BOUNCE, "SUPPRESS_HARD_BOUNCE", Channel.EMAIL),
    Rule("engagement", Engagement.COMPLAINED, Reason.COMPLAINT, "SUPPRESS_COMPLAINT"),
    # Webex Unsubscribe, SMS STOP and its synonyms (parsed to unsubscribed), Genesys RecipientOptedOut and
    # Webex 7241 (category opted_out): the law, so no switch.
    Rule("engagement", Engagement.UNSUBSCRIBED, Reason.UNSUBSCRIBE),
    Rule("category", FailureCategory.OPTED_OUT, Reason.UNSUBSCRIBE),
    Rule(
        "category",
        FailureCategory.INVALID_DESTINATION,
        Reason.INVALID_DESTINATION,
        "SUPPRESS_SMS_INVALID_DESTINATION",
        Channel.SMS,
    ),
]
# Webex Subscribe, SMS START/UNSTOP: lift an opt-out, never a bounce, a complaint or an operator's entry.
LIFT: list[Rule] = [Rule("engagement", Engagement.SUBSCRIBED, Reason.UNSUBSCRIBE)]
WATCHED = frozenset((rule.attribute, rule.value) for rule in (*SUPPRESS, *LIFT))


def apply_receipt_effects(effects: list[Effect], now: datetime) -> None:
    fresh = [e for e in effects if e.entry is not None or e.message is None]
    changes: list[tuple[datetime, int, suppression.Change]] = []
    bounces: list[suppression.Bounce] = []
    for index, effect in enumerate(fresh):
        receipt = effect.receipt
        if not (wants_suppression(receipt) or receipt.outcome.soft_bounce):
            continue
        pair = subject(effect)
        if pair is None:
            continue
        at = min(receipt.occurred_at or now, now)
        change = change_for(effect, pair)
        if change is not None:
            changes.append((at, index, change))
        elif receipt.outcome.soft_bounce:
            bounces.append(suppression.Bounce(pair[0], pair[1], receipt.key, at, effect.message))
    # A retry is decided when a receipt moves a message to a retryable failure (once: Retry is one per message).
    to_retry = {
        e.message.pk: e.message
        for e in fresh
        if e.message is not None and e.entry is not None and e.entry.applied and retries.wants_retry(e.message)
    }
    if not (changes or bounces or to_retry):
        return

    # Within a batch, one address's opt-out and opt-in take effect in the order they happened.
    ordered = [change for _, _, change in sorted(changes, key=lambda c: (c[0], c[1]))]
    pairs = {c.pair for c in ordered} | {(b.channel, b.address) for b in bounces}
    pairs |= {(m.channel, m.to) for m in to_retry.values()}
    book = suppression.Book.load(pairs)
    ordered += suppression.count_soft_bounces(bounces, now)
    suppression.apply(ordered, now, book)
    retries.plan_retries(list(to_retry.values()), book, now)


def wants_suppression(receipt: NormalizedReceipt) -> bool:
    return any((rule.attribute, getattr(receipt.outcome, rule.attribute)) in WATCHED for rule in (*SUPPRESS, *LIFT))


def subject(effect: Effect) -> suppression.Pair | None:
    """The (channel, normalised address) a receipt is about."""
    if effect.message is not None:
        return (effect.message.channel, effect.message.to)
    receipt = effect.receipt
    channel = receipt.channel or Channel.SMS
    try:
        return (channel, normalize_address(channel, receipt.address))
    except ValueError:
        log.warning("inbound %s from %s: not an address, ignored", receipt.provider_code, mask(receipt.address))
        return None


def change_for(effect: Effect, pair: suppression.Pair) -> suppression.Change | None:
    receipt = effect.receipt
    channel, address = pair
    common: dict[str, Any] = {
        "source": SuppressionSource.RECEIPT,
        "actor": f"receipt:{receipt.provider}",
        "evidence": evidence(effect),
        "receipt_key": receipt.key,
    }
    for rule in SUPPRESS:
        if rule.matches(receipt, channel):
            note = f"{receipt.provider} {receipt.provider_code}: {rule.attribute} {rule.value}"
            return suppression.Add(channel, address, rule.reason, message=effect.message, note=note, **common)
    lifted = frozenset(rule.reason for rule in LIFT if rule.matches(receipt, channel))
    if lifted:
        note = f"{receipt.provider} {receipt.provider_code}: the address opted in again"
        return suppression.Lift(channel, address, lifted, note=note, **common)
    return None


def evidence(effect: Effect) -> dict[str, Any]:
    receipt = effect.receipt
    found: dict[str, Any] = {
        "receipt_key": receipt.key,
        "provider": receipt.provider,
        "provider_code": receipt.provider_code,
        "occurred_at": receipt.occurred_at.isoformat() if receipt.occurred_at else None,
    }
    if effect.message is not None:
        found["message_id"] = effect.message.pk
        found["provider_message_id"] = effect.message.provider_message_id
    if effect.entry is not None:
        found["timeline_entry_id"] = effect.entry.pk
        found["receipt_event_id"] = effect.entry.receipt_event_id
    for name in ("bounce_type", "event_id", "text", "additional_info"):
        if receipt.details.get(name):
            found[name] = str(receipt.details[name])[:500]
    if receipt.description:
        found["description"] = receipt.description[:500]
    return found
