"""The fallback channel: a critical campaign message that escalates goes again to the contact on another channel.

``receipts`` raises an ``Escalation`` for a critical message not delivered within ``FALLBACK_AFTER``, or failed
for good before (``receipts.actions.escalation``); it knows nothing of campaigns. Beat runs ``fall_back`` every
``FALLBACK_SWEEP_INTERVAL``: for each escalation raised within ``FALLBACK_MAX_AGE`` and not decided yet, when the
message was a campaign's send and the campaign names a fallback channel, and the contact has an address on that
channel that is not suppressed, it plans one ``Send`` (keyed ``fallback:<message id>``, critical, the campaign's
body rendered again for the contact, ``metadata.fallback_of``) that the dispatcher sends like any other, and says so
on the escalation. Each escalation is decided once: a ``Fallback`` row keeps what was decided, planned or why not.

Nothing is planned for a fallback that escalates in its turn, for an escalation an operator has acknowledged, or
for a message delivered meanwhile (itself or its retry). A completed campaign runs again until its fallbacks
are sent (the dispatcher sends only the sends of running campaigns; the planner completes it again after);
a paused one sends them when resumed; a cancelled one sends none.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from datetime import datetime

from django.conf import settings
from django.db import IntegrityError, transaction
from django.utils import timezone

from campaigns import lifecycle
from campaigns.models import Campaign, Contact, Fallback, Send
from receipts.actions import escalation as escalations
from receipts.actions import suppression
from receipts.models import Escalation, Message
from receipts.status import Status

log = logging.getLogger(__name__)

BATCH = 200


@dataclass(frozen=True)
class Decision:
    reason: str
    contact: Contact | None = None

    @property
    def go(self) -> bool:
        return self.contact is not None


def fall_back(now: datetime | None = None, batch: int = BATCH) -> int:
    """Decide every recent escalation not decided yet. Answers how many fallbacks were planned."""
    now = now or timezone.now()
    planned, after = 0, 0
    while True:
        due = list(
            Escalation.objects.filter(raised_at__gte=now - settings.FALLBACK_MAX_AGE, pk__gt=after)
            .exclude(pk__in=Fallback.objects.values("escalation_id"))
            .select_related("message")
            .order_by("pk")[:batch]
        )
        if not due:
            return planned
        after = due[-1].pk
        sends = {
            s.message_id: s
            for s in Send.objects.filter(message_id__in=[e.message_id for e in due]).select_related("campaign")
        }
        latest = escalations.latest_in_chain([e.message_id for e in due])
        for escalation in due:
            send = sends.get(escalation.message_id)
            try:
                planned += plan_one(escalation, send, latest.get(escalation.message_id), now)
            except Exception:  # one that fails is tried again by the next sweep; the others go on
                log.exception("escalation %s: deciding its fallback failed", escalation.pk)
        if len(due) < batch:
            return planned


def decide(escalation: Escalation, send: Send | None, retry: Message | None, now: datetime) -> Decision:
    """Whether a fallback goes, and to whom; or why not (never naming an address)."""
    campaign = send.campaign if send is not None else None
    if send is None or campaign is None:
        return Decision("not a campaign's message")
    if (send.metadata or {}).get("fallback_of"):
        return Decision("it was a fallback itself")
    if not campaign.fallback_channel:
        return Decision(f"campaign {campaign.pk} has no fallback channel")
    if campaign.state == Campaign.State.CANCELLED:
        return Decision(f"campaign {campaign.pk} was cancelled")
    if escalation.acknowledged_at is not None:
        return Decision("an operator acknowledged the escalation")
    if any(m.status == Status.DELIVERED and not m.assumed for m in filter(None, [escalation.message, retry])):
        return Decision("the message was delivered meanwhile")
    channel = campaign.fallback_channel
    contact = Contact.objects.filter(crm_record_id=send.crm_record_id).first() if send.crm_record_id else None
    if contact is None:
        return Decision(f"no contact {send.crm_record_id!r}")
    address = getattr(contact, lifecycle.address_field(channel))
    if not address:
        return Decision(f"contact {contact.crm_record_id} has no {channel} address")
    reasons = suppression.is_suppressed(channel, address, now)
    if reasons:
        return Decision(f"the contact's {channel} address is suppressed ({', '.join(reasons)})")
    return Decision(f"{channel} fallback through {campaign.fallback_provider}", contact)


def plan_one(escalation: Escalation, send: Send | None, retry: Message | None, now: datetime) -> int:
    """Decide one escalation, once (a concurrent sweep that decided it first wins). Answers 1 when planned."""
    decision = decide(escalation, send, retry, now)
    campaign = send.campaign if send is not None else None
    try:
        with transaction.atomic():
            marker = Fallback.objects.create(
                escalation_id=escalation.pk,
                message_id=escalation.message_id,
                campaign=campaign,
                reason=decision.reason[:500],
                decided_at=now,
            )
            if not decision.go:
                log.info("escalation %s: no fallback: %s", escalation.pk, decision.reason)
                return 0
            assert campaign is not None and decision.contact is not None
            planned = Send.objects.filter(idempotency_key=f"fallback:{escalation.message_id}").first()
            if planned is None:
                planned = lifecycle.planned_send(campaign, decision.contact, now, fallback_of=escalation.message_id)
                planned.save()
            marker.send = planned
            if planned.state == Send.State.FAILED:  # the template cannot be filled for this contact
                marker.reason = f"not planned: {planned.error}"[:500]
                marker.save(update_fields=["send", "reason"])
                log.warning("escalation %s: fallback send %s failed: %s", escalation.pk, planned.pk, planned.error)
                return 0
            marker.planned = True
            marker.reason = f"{decision.reason}: send {planned.pk}"[:500]
            marker.save(update_fields=["send", "planned", "reason"])
            escalations.record_fallback(
                escalation.pk,
                f"{planned.channel} fallback planned through {planned.provider}: send {planned.pk} "
                f"(campaign {campaign.name!r})",
            )
            # The dispatcher sends only a running campaign's sends; the planner completes it again after.
            Campaign.objects.filter(pk=campaign.pk, state=Campaign.State.COMPLETED).update(
                state=Campaign.State.RUNNING, finished_at=None
            )
    except IntegrityError:  # another sweep decided it meanwhile
        return 0
    log.warning(
        "escalation %s: %s fallback planned as send %s (campaign %s)",
        escalation.pk,
        planned.channel,
        planned.pk,
        campaign.pk,
    )
    return 1
