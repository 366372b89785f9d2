"""An erasure on request reaches campaigns (``receipts.personal.erasing``): the contacts with the address go, and
the sends to it keep only what the campaign's counts need (their state); a send not yet out is cancelled."""

from __future__ import annotations

from typing import Any

from django.db.models import CharField, Q, Value
from django.db.models.functions import Cast, Concat

from campaigns.models import Contact, Send

ERASED = "erased on request"
WAITING = (Send.State.PLANNED, Send.State.CLAIMED)


def erase(channel: str, address: str, **_: Any) -> dict[str, int]:
    contacts = Contact.objects.filter(Q(phone=address) if channel == "sms" else Q(email=address)).delete()[0]
    sends = Send.objects.filter(channel=channel, to=address)
    cancelled = sends.filter(state__in=WAITING).update(state=Send.State.CANCELLED)
    # The key of a campaign's send names the contact's CRM record: it becomes the send's own id.
    cleared = sends.update(
        to="",
        content={},
        crm_record_id="",
        metadata={},
        error=ERASED,
        time_zone="",
        idempotency_key=Concat(Value("erased:"), Cast("id", CharField())),
    )
    counts = {"campaigns.Contact": contacts, "campaigns.Send": cleared, "campaigns.Send (cancelled)": cancelled}
    return {label: rows for label, rows in counts.items() if rows}
