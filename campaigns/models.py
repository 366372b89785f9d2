from django.db import models
from django.utils import timezone

from receipts.status import Channel, Provider

# The order sends leave in: critical first (receipts.models.Priority's values).
PRIORITY_RANK = {"critical": 0, "high": 1, "normal": 2, "bulk": 3}
# Providers this product sends through; the generic JSON webhook only receives.
SENDING_PROVIDER_CHOICES = [choice for choice in Provider.choices if choice[0] != Provider.GENERIC]


class Campaign(models.Model):
    """A named send. A campaign only tracked (its messages sent elsewhere) has a name and no channel; one sent
    through this product has a channel, a provider, a sender, a template and an audience, and moves
    draft -> running <-> paused -> completed, or cancelled (``campaigns.lifecycle``)."""

    class State(models.TextChoices):
        DRAFT = "draft"
        RUNNING = "running"
        PAUSED = "paused"
        COMPLETED = "completed"
        CANCELLED = "cancelled"

    name = models.CharField(max_length=200, unique=True)
    created_at = models.DateTimeField(auto_now_add=True)
    channel = models.CharField(max_length=10, blank=True, help_text="sms or email; empty: tracked only")
    provider = models.CharField(max_length=20, blank=True)
    sender = models.CharField(
        max_length=320,
        blank=True,
        help_text="on the campaign's channel: an email from-address (email), a number or sender id (sms); "
        "SENDER_ALLOW_LIST; empty: the provider's",
    )
    sender_name = models.CharField(
        max_length=64, blank=True, help_text="email only: the sender's display name; empty: the provider's setting"
    )
    subject = models.CharField(max_length=500, blank=True, help_text="email subject template")
    body = models.TextField(blank=True, help_text="message template: {{ contact.field }} is replaced")
    audience = models.JSONField(
        default=dict,
        blank=True,
        help_text='{} every contact; {"crm_record_ids": [...]}; {"attributes": {"name": "value"}}',
    )
    priority = models.CharField(max_length=10, default="normal")
    start_at = models.DateTimeField(null=True, blank=True, help_text="nothing leaves before; empty: at start")
    quiet_start = models.TimeField(null=True, blank=True, help_text="no sending from (the contact's local time)")
    quiet_end = models.TimeField(null=True, blank=True, help_text="... until")
    time_zone = models.CharField(
        max_length=64, default="UTC", help_text="for quiet hours, unless the contact's time_zone attribute says"
    )
    use_existing_conversation = models.BooleanField(
        default=False, help_text="Genesys Cloud: reuse the contact's active conversation (threading)"
    )
    # A critical message that escalates (not delivered in time, or failed for good) goes again to the contact on
    # this channel, the body rendered again (campaigns.fallback).
    fallback_channel = models.CharField(
        max_length=10,
        blank=True,
        choices=Channel.choices,
        help_text="sms or email: where an escalated critical message goes again (not the campaign's channel); "
        "empty: nowhere",
    )
    fallback_provider = models.CharField(
        max_length=20, blank=True, choices=SENDING_PROVIDER_CHOICES, help_text="the provider that sends the fallback"
    )
    fallback_subject = models.CharField(max_length=500, blank=True, help_text="email subject template of the fallback")
    fallback_sender = models.CharField(
        max_length=320,
        blank=True,
        help_text="the fallback's own sender, on its channel (SENDER_ALLOW_LIST); empty: its provider's default",
    )
    fallback_sender_name = models.CharField(
        max_length=64, blank=True, help_text="email fallback only: the sender's display name"
    )
    state = models.CharField(max_length=10, choices=State.choices, default=State.DRAFT)
    state_reason = models.CharField(max_length=500, blank=True)
    audience_size = models.IntegerField(null=True, blank=True, help_text="contacts chosen when it started")
    planned = models.IntegerField(default=0, help_text="contacts planned so far")
    planned_through = models.BigIntegerField(default=0, help_text="the last contact id planned (resumable)")
    planning_done = models.BooleanField(default=False)
    started_at = models.DateTimeField(null=True, blank=True)
    finished_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        ordering = ["-created_at"]
        indexes = [
            models.Index(fields=["state"], name="campaign_active_idx", condition=models.Q(state="running")),
        ]

    def __str__(self) -> str:
        return self.name

    @property
    def sendable(self) -> bool:
        return bool(self.channel and self.provider)


class SendState(models.TextChoices):
    PLANNED = "planned"
    CLAIMED = "claimed", "claimed (a worker holds it; nothing left yet)"
    SENDING = "sending"
    SENT = "sent"
    SUPPRESSED = "suppressed", "suppressed (refused at send)"
    FAILED = "failed", "failed to send"
    UNKNOWN = "unknown", "unknown (may have been sent: check before sending again)"
    CANCELLED = "cancelled"


def send_filter_indexes() -> list[models.Index]:
    """One partial index on -id per value of each fixed-choice filter of the sends list: a filtered page is the
    first rows of the index of exactly its rows, which PostgreSQL prefers to walking the primary key backwards
    through a million sends of another kind at the end of the table (issue 23, as receipts' message lists)."""
    filters = [
        ("st", "state", SendState.values),
        ("ch", "channel", Channel.values),
        ("pv", "provider", [value for value, _ in SENDING_PROVIDER_CHOICES]),
    ]
    return [
        models.Index(fields=["-id"], name=f"send_{short}_{value[:16]}_idx", condition=models.Q(**{field: value}))
        for short, field, values in filters
        for value in values
    ]


class Send(models.Model):
    """One message to send, planned before anything leaves (``campaigns.dispatch``): claimed once, sent once,
    then registered for tracking. A send whose outcome is not known (the worker died, the provider did not
    answer) is never sent again on its own: it waits as ``unknown`` for an operator."""

    State = SendState

    # A key is its API client's own: two clients may use the same one. Campaign sends have no client. The client
    # is kept by id, not as a foreign key: deleting a client must not move its keys into another's namespace.
    idempotency_key = models.CharField(max_length=200, null=True, blank=True)  # noqa: DJ001 - NULL: no key
    client = models.BigIntegerField(null=True, blank=True, help_text="the API client that asked for it (its id)")
    channel = models.CharField(max_length=10, choices=Channel.choices)
    provider = models.CharField(max_length=20, choices=SENDING_PROVIDER_CHOICES)
    to = models.CharField(max_length=320, help_text="Normalised: E.164 for SMS, lower-case for email.")
    content = models.JSONField(default=dict, help_text='{"text", "subject", "from", "from_name"}')
    crm_record_id = models.CharField(max_length=255, blank=True)
    campaign = models.ForeignKey(Campaign, null=True, blank=True, on_delete=models.SET_NULL, related_name="sends")
    priority = models.CharField(max_length=10, default="normal")
    rank = models.PositiveSmallIntegerField(default=2, help_text="0 critical .. 3 bulk: the order sends leave in")
    metadata = models.JSONField(default=dict, blank=True)
    not_before = models.DateTimeField(null=True, blank=True, help_text="schedule, quiet hours or a retry's wait")
    time_zone = models.CharField(max_length=64, blank=True, help_text="the contact's, for quiet hours")
    state = models.CharField(max_length=10, choices=State.choices, default=State.PLANNED)
    attempts = models.PositiveSmallIntegerField(default=0)
    claimed_at = models.DateTimeField(null=True, blank=True)
    provider_message_id = models.CharField(max_length=255, blank=True)
    message_id = models.BigIntegerField(null=True, blank=True, help_text="receipts.Message tracking it, once sent")
    error = models.TextField(blank=True)
    created_at = models.DateTimeField(auto_now_add=True)
    sent_at = models.DateTimeField(null=True, blank=True)
    finished_at = models.DateTimeField(null=True, blank=True, help_text="when the send ended: sent, refused, failed")

    class Meta:
        ordering = ["-id"]
        indexes = [
            # The queue: each provider's loop claims its own sends, critical first, without reading the others'.
            models.Index(
                fields=["provider", "rank", "id"], name="send_provider_queue_idx", condition=models.Q(state="planned")
            ),
            models.Index(
                fields=["claimed_at"], name="send_held_idx", condition=models.Q(state__in=["claimed", "sending"])
            ),
            models.Index(fields=["campaign", "state"], name="send_campaign_state_idx"),
            # The list filtered by campaign, newest first; and by each state, channel and provider.
            models.Index(fields=["campaign", "-id"], name="send_campaign_id_idx"),
            *send_filter_indexes(),
            # The fallback sweep finds the send an escalated message came from.
            models.Index(fields=["message_id"], name="send_message_idx", condition=models.Q(message_id__isnull=False)),
            # The admin's exact search: an address, a CRM record, a provider's id, a key.
            models.Index(fields=["to"], name="send_to_idx"),
            models.Index(fields=["crm_record_id"], name="send_record_idx", condition=~models.Q(crm_record_id="")),
            models.Index(
                fields=["provider_message_id"], name="send_provider_id_idx", condition=~models.Q(provider_message_id="")
            ),
            models.Index(fields=["idempotency_key"], name="send_key_idx"),
        ]
        constraints = [
            models.UniqueConstraint(
                fields=["client", "idempotency_key"],
                condition=models.Q(client__isnull=False),
                name="send_client_key_once",
            ),
            models.UniqueConstraint(
                fields=["idempotency_key"], condition=models.Q(client__isnull=True), name="send_own_key_once"
            ),
        ]

    def __str__(self) -> str:
        return f"send {self.pk} by {self.provider} ({self.state})"


class Contact(models.Model):
    """Someone a campaign can reach: the CRM's record, a phone number and/or an email (normalised as everywhere
    else), attributes for templates, and the Genesys external contact id where known (threading)."""

    crm_record_id = models.CharField(max_length=255, unique=True)
    phone = models.CharField(max_length=32, blank=True, help_text="E.164")
    email = models.CharField(max_length=320, blank=True, help_text="lower-case, IDNA domain")
    attributes = models.JSONField(default=dict, blank=True, help_text="{{ contact.<name> }} in templates")
    external_contact_id = models.CharField(max_length=255, blank=True, help_text="Genesys Cloud external contact")
    created_at = models.DateTimeField(auto_now_add=True)
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        ordering = ["-id"]
        indexes = [
            models.Index(fields=["phone"], name="contact_phone_idx", condition=~models.Q(phone="")),
            models.Index(fields=["email"], name="contact_email_idx", condition=~models.Q(email="")),
        ]

    def __str__(self) -> str:
        return f"contact {self.crm_record_id}"


class Fallback(models.Model):
    """What the fallback sweep decided for one escalation, once (``campaigns.fallback``): a fallback send planned,
    or why not. Escalations and messages are ``receipts``' rows, named here by id: retention deletes them without
    looking at this table."""

    escalation_id = models.BigIntegerField(unique=True)
    message_id = models.BigIntegerField(help_text="the escalated message (the first of its retry chain)")
    campaign = models.ForeignKey(Campaign, null=True, blank=True, on_delete=models.SET_NULL, related_name="fallbacks")
    send = models.ForeignKey(Send, null=True, blank=True, on_delete=models.SET_NULL, related_name="+")
    planned = models.BooleanField(default=False)
    reason = models.CharField(max_length=500, help_text="what was planned, or why nothing was (no address in it)")
    decided_at = models.DateTimeField(default=timezone.now)

    class Meta:
        ordering = ["-id"]

    def __str__(self) -> str:
        return f"fallback for escalation {self.escalation_id}: {'planned' if self.planned else 'none'}"
