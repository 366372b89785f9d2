"""Messages registered for tracking: sent elsewhere and reported by the CRM or a sender, or sent by us."""

from __future__ import annotations

import logging
from typing import Any, cast

from django.db import IntegrityError, models, transaction

from receipts.actions.ingest import requeue_orphans
from receipts.addresses import normalize_address
from receipts.kicks import request_drain
from receipts.models import Message, ReceiptEvent
from receipts.schedule import first_poll_at

log = logging.getLogger(__name__)


def register_message(data: dict[str, Any]) -> tuple[Message, bool]:
    """Record a message sent elsewhere. Idempotent on (provider, provider_message_id, to).

    Receipts that arrived before it (orphans) are queued to be matched again.
    """
    to = normalize_address(data["channel"], data["to"])
    if data.get("campaign_id"):  # a caller that holds the campaign (the dispatcher) saves the lookup
        campaign_ref: dict[str, Any] = {"campaign_id": data["campaign_id"]}
    else:
        campaign_ref = {"campaign": campaign_named(data["campaign"]) if data.get("campaign") else None}
    defaults = {
        "channel": data["channel"],
        "crm_record_id": data.get("crm_record_id", ""),
        **campaign_ref,
        "priority": data.get("priority") or "normal",
        "conversation_id": data.get("conversation_id", ""),
        "correlation_id": data.get("correlation_id", ""),
        "metadata": data.get("metadata") or {},
        "content": data.get("content") or {},
    }
    defaults["next_poll_at"] = first_poll_at(data["provider"], defaults["priority"], data.get("sent_at"))
    lookup = {"provider": data["provider"], "provider_message_id": data["provider_message_id"], "to": to}
    with transaction.atomic():
        try:
            with transaction.atomic():
                message = Message.objects.create(**lookup, **defaults)
            created = True
        except IntegrityError:
            message, created = Message.objects.get(**lookup), False
        if created:
            requeued = requeue_orphans(
                ReceiptEvent.objects.filter(provider=message.provider, ref=message.provider_message_id)
            )
            if requeued:
                log.info("message %s matched %d waiting receipt(s)", message.pk, requeued)
                transaction.on_commit(request_drain)
    return message, created


def campaign_named(name: str) -> models.Model:
    """The campaign of this name, created on first use."""
    return campaigns()._default_manager.get_or_create(name=name)[0]


def campaign_id_named(name: str) -> int | None:
    """The id of the campaign of this name, if there is one."""
    return campaigns()._default_manager.filter(name=name).values_list("pk", flat=True).first()


def campaigns() -> type[models.Model]:
    """The campaign model, reached through the foreign key: campaigns build on receipts, so receipts never
    imports them."""
    return cast(type[models.Model], Message._meta.get_field("campaign").related_model)
