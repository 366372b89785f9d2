"""The one status model every provider's codes are turned into (DESIGN.md, "Status model")."""

from django.db import models


class Status(models.TextChoices):
    PENDING = "pending"
    QUEUED = "queued"
    SENT = "sent"
    DEFERRED = "deferred"
    DELIVERED = "delivered"
    FAILED = "failed"
    REJECTED = "rejected"
    EXPIRED = "expired"
    BOUNCED = "bounced"


RANK: dict[str, int] = {
    Status.PENDING: 0,
    Status.QUEUED: 10,
    Status.SENT: 20,
    Status.DEFERRED: 25,
    Status.DELIVERED: 30,
    Status.FAILED: 30,
    Status.REJECTED: 30,
    Status.EXPIRED: 30,
    Status.BOUNCED: 30,
}
FINAL_RANK = 30
FINAL_STATUSES = frozenset(s for s, rank in RANK.items() if rank == FINAL_RANK)


def is_final(status: str) -> bool:
    return RANK.get(status, 0) == FINAL_RANK


class Engagement(models.TextChoices):
    READ = "read"
    CLICKED = "clicked"
    COMPLAINED = "complained"
    UNSUBSCRIBED = "unsubscribed"
    SUBSCRIBED = "subscribed"
    REPLIED = "replied"


class FailureCategory(models.TextChoices):
    TEMPORARY_NETWORK = "temporary_network"
    CARRIER_THROTTLE = "carrier_throttle"
    PERMANENT_BLOCK = "permanent_block"
    INVALID_DESTINATION = "invalid_destination"
    CONTENT_REJECTED = "content_rejected"
    SENDER_CONFIG = "sender_config"
    OPTED_OUT = "opted_out"
    SUPPRESSED = "suppressed"
    DUPLICATE = "duplicate"
    UNKNOWN = "unknown"


class ReviewReason(models.TextChoices):
    NO_RECEIPT = "no_receipt"
    CONFLICTING_RECEIPTS = "conflicting_receipts"
    PROVIDER_UNKNOWN = "provider_unknown"


class Provider(models.TextChoices):
    GENESYS_CLOUD = "genesys_cloud", "Genesys Cloud CX"
    GENESYS_SMS = "genesys_sms", "Genesys SMS Aggregation"
    WEBEX_CONNECT = "webex_connect", "Webex Connect"
    GENERIC = "generic", "Generic JSON"


class Channel(models.TextChoices):
    SMS = "sms"
    EMAIL = "email"


class Source(models.TextChoices):
    WEBHOOK = "webhook"
    POLL = "poll"
    OPERATOR = "operator"
    TIMEOUT = "timeout", "receipt timeout"  # no final receipt in time: delivery assumed (no provider behind it)
