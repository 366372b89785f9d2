"""Where a recipient's personal data is held: one registry of every text field of every model, each either
personal (and then how an erasure removes it) or not (and why it cannot hold any).

``tests/receipts/actions/test_erasure_registry.py`` fails when a model gains a text, JSON or binary field this
registry does not name, so a new place for an address is decided on, not found later in a database dump. The
erasure (``receipts.actions.retention.erase_address``) removes what receipts holds itself and sends ``erasing``
for the rest: campaigns' contacts and sends, crm_sync's outbox payloads. Apps below receipts are named by label
only, so the registry imports none of them.
"""

from __future__ import annotations

import hashlib

from django.dispatch import Signal

DELETED = "the row is deleted"
WITH_MESSAGE = "deleted with its message"
CLEARED = "emptied, the row kept for the counts"
STRIPPED = "the address key removed from the JSON"

# model label -> {field: how an erasure removes it}
PERSONAL: dict[str, dict[str, str]] = {
    "receipts.Message": {
        "to": DELETED,
        "content": DELETED,  # the text sent, with the contact's attributes in it
        "metadata": DELETED,  # whatever the caller attached
        "crm_record_id": DELETED,
        "confirmation": DELETED,  # the word the recipient replied
    },
    "receipts.MessageEvent": {"description": WITH_MESSAGE, "details": WITH_MESSAGE, "raw": WITH_MESSAGE},
    "receipts.ReceiptEvent": {"body": DELETED, "error": DELETED, "ref": DELETED},
    "receipts.ReviewResolution": {"note": WITH_MESSAGE},
    "receipts.Retry": {"note": WITH_MESSAGE},
    "receipts.Escalation": {"reason": WITH_MESSAGE, "note": WITH_MESSAGE},
    "receipts.Suppression": {"address": DELETED, "note": DELETED, "evidence": DELETED, "lift_reason": DELETED},
    "receipts.SuppressionChange": {"note": DELETED, "evidence": DELETED},
    "receipts.SoftBounce": {"address": DELETED},
    "campaigns.Contact": {
        "crm_record_id": DELETED,
        "phone": DELETED,
        "email": DELETED,
        "attributes": DELETED,
        "external_contact_id": DELETED,
    },
    "campaigns.Send": {
        "to": CLEARED,
        "content": CLEARED,  # the rendered text ("hello Ann")
        "crm_record_id": CLEARED,
        "metadata": CLEARED,
        "error": CLEARED,
        "time_zone": CLEARED,  # the contact's, where it came from their attributes
        "idempotency_key": "becomes erased:<id> (a campaign's names the contact's CRM record)",
    },
    "crm_sync.OutboxMessage": {"payload": STRIPPED},  # a suppression with no CRM record carries the address
    "admin.LogEntry": {"object_repr": DELETED, "change_message": DELETED},  # an operator's edit of a row
}

# model label -> fields that cannot hold a recipient's personal data (each group says why)
NOT_PERSONAL: dict[str, frozenset[str]] = {
    # Codes, names and ids of our own or the provider's making.
    "receipts.Message": frozenset(
        {
            "channel",
            "provider",
            "provider_message_id",
            "status",
            "failure_category",
            "provider_code",
            "review_reason",
            "priority",
            "conversation_id",
            "correlation_id",
        }
    ),
    "receipts.MessageEvent": frozenset(
        {"source", "receipt_key", "provider_code", "status", "engagement", "failure_category"}
    ),
    "receipts.ReceiptEvent": frozenset({"provider", "source", "state", "dedupe_key", "content_type"}),
    "receipts.ReviewResolution": frozenset({"action", "review_reason", "failure_category"}),
    "receipts.Retry": frozenset({"state", "failure_category", "provider_message_id"}),
    "receipts.Escalation": frozenset({"status", "failure_category", "fallback"}),
    "receipts.Suppression": frozenset({"channel", "reason", "source", "created_by", "lifted_by", "lift_source"}),
    "receipts.SuppressionChange": frozenset({"action", "source", "actor", "receipt_key"}),
    "receipts.SoftBounce": frozenset({"channel", "receipt_key"}),
    "receipts.ApiClient": frozenset({"name", "token_prefix", "token_hash", "scopes"}),
    # The audit line: the address as a hash, the request's note masked when it is written.
    "receipts.Erasure": frozenset(
        {"channel", "address_sha256", "requested_by", "note", "suppressed_for", "others", "lifted_by", "lift_note"}
    ),
    # Aggregates and alerts: providers, campaigns, codes and counts.
    "receipts.DeliveryStats": frozenset(
        {"period", "provider", "channel", "status", "failure_category", "provider_code"}
    ),
    "receipts.Alert": frozenset({"key", "title", "detail", "link"}),
    # Counts by review reason, provider or send state (receipts.tallies).
    "receipts.Tally": frozenset({"kind", "key"}),
    # A campaign is templates and choices; its audience names record ids and attribute filters, not people.
    "campaigns.Campaign": frozenset(
        {
            "name",
            "channel",
            "provider",
            "sender",  # the organisation's own from-address or number, and its display name, never a contact's
            "sender_name",
            "subject",
            "body",
            "audience",
            "priority",
            "time_zone",
            "fallback_channel",
            "fallback_provider",
            "fallback_subject",
            "fallback_sender",
            "fallback_sender_name",
            "state",
            "state_reason",
        }
    ),
    "campaigns.Send": frozenset({"channel", "provider", "priority", "state", "provider_message_id"}),
    "campaigns.Fallback": frozenset({"reason"}),  # what was planned, never the address
    "crm_sync.OutboxMessage": frozenset({"idempotency_key", "kind", "crm_record_id", "stream", "state", "last_error"}),
    "crm_sync.RelayLease": frozenset({"name", "owner", "pause_reason", "usage"}),
    "admin.LogEntry": frozenset({"object_id"}),
}

# Sent inside the erasure's transaction with ``channel`` and ``address`` (normalised); each receiver erases what
# its app holds and returns ``{model label: rows}``. A receiver that fails rolls the whole erasure back.
erasing = Signal()


def address_digest(channel: str, address: str) -> str:
    """How an erasure's audit line names an address without holding it: sha256 of "channel:address" (the
    suppression changes the CRM gets hash the address alone, ``suppression.address_hash``)."""
    return hashlib.sha256(f"{channel}:{address}".encode()).hexdigest()
