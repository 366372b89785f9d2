"""An erasure on request reaches the outbox (``receipts.personal.erasing``): a suppression change for an address
with no CRM record carries the address itself; the erasure leaves its hash (``address_sha256``) in its place."""

from __future__ import annotations

from typing import Any

from crm_sync.models import OutboxMessage


def erase(channel: str, address: str, **_: Any) -> dict[str, int]:
    rows = list(OutboxMessage.objects.filter(payload__channel=channel, payload__address=address))
    for row in rows:
        row.payload.pop("address", None)
    OutboxMessage.objects.bulk_update(rows, ["payload"], batch_size=500)
    return {"crm_sync.OutboxMessage": len(rows)} if rows else {}
