from __future__ import annotations

import hashlib
import secrets
from datetime import datetime

from django.db import models
from django.db.models import Case, F, Q, Value, When
from django.utils import timezone

from receipts.status import (
    FINAL_STATUSES,
    Channel,
    Engagement,
    FailureCategory,
    Provider,
    ReviewReason,
    Source,
    Status,
)

# Not final yet, written the one way the in-flight index's predicate is, so that PostgreSQL can use it.
NOT_FINAL = ~Q(status__in=sorted(FINAL_STATUSES))


class Priority(models.TextChoices):
    CRITICAL = "critical"
    HIGH = "high"
    NORMAL = "normal"
    BULK = "bulk"


# The review queue's order: critical first, then high, normal, bulk; oldest first within each (an index of it).
REVIEW_ORDER = Case(
    When(priority=Priority.CRITICAL, then=Value(0)),
    When(priority=Priority.HIGH, then=Value(1)),
    When(priority=Priority.NORMAL, then=Value(2)),
    default=Value(3),
    output_field=models.SmallIntegerField(),
)


def list_filter_indexes() -> list[models.Index]:
    """One partial index on -id per value of each filter of the message lists whose values are fixed: a filtered
    page is then the first rows of the smallest index that holds exactly them, in the page's order, a plan that
    costs less than any walk of the primary key whatever the planner believes about where the rows are."""
    filters = [
        ("ch", "channel", Channel.values),
        ("pv", "provider", Provider.values),
        ("pt", "priority", Priority.values),
        ("fc", "failure_category", FailureCategory.values),
        ("rr", "review_reason", ReviewReason.values),
    ]
    return [
        models.Index(fields=["-id"], name=f"msg_{short}_{value[:16]}_idx", condition=Q(**{field: value}))
        for short, field, values in filters
        for value in values
    ]


LIST_FILTER_INDEXES = list_filter_indexes()


class MessageQuerySet(models.QuerySet["Message"]):
    def needs_review(self) -> MessageQuerySet:
        return self.filter(needs_review=True)

    def for_receipt(self, provider: str, provider_message_id: str, to: str = "") -> MessageQuerySet:
        matches = self.filter(provider=provider, provider_message_id=provider_message_id)
        return matches.filter(to__iexact=to) if to else matches

    # Polling (receipts/polling.py, receipts/schedule.py): a message with ``next_poll_at`` is polled on its own
    # when that time comes; one without, not final yet, is left to the bulk reconciliation.
    def due_for_poll(self, now: datetime) -> MessageQuerySet:
        return self.filter(next_poll_at__lte=now)

    def awaiting_reconciliation(self, provider: str, since: datetime) -> MessageQuerySet:
        return self.filter(provider=provider, next_poll_at=None, created_at__gte=since).exclude(
            status__in=FINAL_STATUSES
        )


class Message(models.Model):
    """One outbound message to one recipient. Its status only ever changes through receipts.actions."""

    channel = models.CharField(max_length=10, choices=Channel.choices)
    provider = models.CharField(max_length=20, choices=Provider.choices)
    provider_message_id = models.CharField(max_length=255)
    to = models.CharField(max_length=320, help_text="Normalised: E.164 for SMS, lower-case for email.")
    status = models.CharField(max_length=12, choices=Status.choices, default=Status.PENDING)
    # Provider time of the receipt that set the status.
    status_at = models.DateTimeField(null=True, blank=True)
    assumed = models.BooleanField(default=False, help_text="Delivered assumed: no final receipt in time.")
    failure_category = models.CharField(max_length=24, choices=FailureCategory.choices, blank=True)
    retryable = models.BooleanField(default=False)
    provider_code = models.CharField(max_length=200, blank=True, help_text="Code of the last status receipt.")
    needs_review = models.BooleanField(default=False)
    review_reason = models.CharField(max_length=24, choices=ReviewReason.choices, blank=True)

    crm_record_id = models.CharField(max_length=255, blank=True)
    campaign = models.ForeignKey(
        "campaigns.Campaign",
        null=True,
        blank=True,
        on_delete=models.SET_NULL,
        related_name="messages",
        db_index=False,  # message_campaign_idx leads with it
    )
    priority = models.CharField(max_length=10, choices=Priority.choices, default=Priority.NORMAL)
    conversation_id = models.CharField(max_length=255, blank=True)
    correlation_id = models.CharField(max_length=255, blank=True)
    metadata = models.JSONField(default=dict, blank=True)
    # What was sent ({"text", "subject", "from"}), kept so that a retry has something to send.
    content = models.JSONField(default=dict, blank=True)

    # Polling (webhooks can be late or never come) and the receipt timeout.
    sent_at = models.DateTimeField(null=True, blank=True, help_text="When it first reached sent (or later).")
    next_poll_at = models.DateTimeField(null=True, blank=True, db_index=True)
    poll_count = models.PositiveIntegerField(default=0)
    last_polled_at = models.DateTimeField(null=True, blank=True)
    # A retry is a new message that links to the one it replaces.
    replaces = models.ForeignKey("self", null=True, blank=True, on_delete=models.SET_NULL, related_name="replaced_by")

    read_count = models.PositiveIntegerField(default=0)
    click_count = models.PositiveIntegerField(default=0)
    first_read_at = models.DateTimeField(null=True, blank=True)
    complained_at = models.DateTimeField(null=True, blank=True)
    unsubscribed_at = models.DateTimeField(null=True, blank=True)
    # A reply that confirms it ("Reply YES to confirm"): when, and the word (receipts.actions.confirmations).
    confirmed_at = models.DateTimeField(null=True, blank=True, help_text="When the recipient replied to confirm.")
    confirmation = models.CharField(max_length=100, blank=True, help_text="The reply that confirmed (a keyword).")

    created_at = models.DateTimeField(default=timezone.now, db_index=True)
    updated_at = models.DateTimeField(auto_now=True, db_index=True)

    objects = MessageQuerySet.as_manager()

    class Meta:
        constraints = [
            models.UniqueConstraint(
                fields=["provider", "provider_message_id", "to"], name="message_unique_per_recipient"
            )
        ]
        indexes = [
            # A filter of the lists (admin and API, newest first) has an index of its own value's rows in the lists'
            # order (LIST_FILTER_INDEXES). Given only the filter's column, PostgreSQL walked the primary key
            # backwards, expecting an email (35% of messages) every third row, and read a million rows of a big SMS
            # campaign at the end of the table to fill a page (issue 23, item 4); a (column, id) index does not
            # change that (its heap order is the column's, so the planner costs it as random reads).
            *LIST_FILTER_INDEXES,
            models.Index(fields=["status", "-id"], name="message_status_id_idx"),
            models.Index(fields=["-id"], name="message_needs_review_id_idx", condition=Q(needs_review=True)),
            models.Index(fields=["-id"], name="message_assumed_id_idx", condition=Q(assumed=True)),
            models.Index(fields=["crm_record_id"], name="message_crm_record_idx"),
            # A campaign's messages newest first (the API's and the admin's order): a range of this index.
            models.Index(fields=["campaign", "-id"], name="message_campaign_idx"),
            # An address's messages, and the list sorted by address (the admin adds -id to any order).
            models.Index(fields=["to", "-id"], name="message_to_id_idx"),
            # What the admin's search and the API look a message up by, without its provider.
            models.Index(fields=["provider_message_id"], name="message_provider_id_idx"),
            models.Index(fields=["conversation_id"], name="message_conversation_idx", condition=~Q(conversation_id="")),
            models.Index(fields=["correlation_id"], name="message_correlation_idx", condition=~Q(correlation_id="")),
            # The review queue (about 1% of messages): its list in age order, and its size and oldest item by
            # reason (index-only scans of these small partial indexes).
            models.Index(REVIEW_ORDER, F("created_at"), name="message_review_idx", condition=Q(needs_review=True)),
            models.Index(
                F("review_reason"),
                REVIEW_ORDER,
                F("created_at"),
                name="message_review_reason_idx",
                condition=Q(needs_review=True),
            ),
            # The dashboard's oldest item of each reason: the first entry of the reason's range.
            models.Index(
                fields=["review_reason", "created_at"], name="message_review_oldest_idx", condition=Q(needs_review=True)
            ),
            # The escalation sweep looks only at critical messages, by age.
            models.Index(fields=["created_at"], name="message_critical_created_idx", condition=Q(priority="critical")),
            # The receipt-timeout scan (every minute) looks only at messages not final yet: a few thousand in
            # flight, not the millions settled. The predicate is the scan's own `exclude(status__in=...)`.
            models.Index(
                fields=["sent_at", "created_at"],
                name="message_in_flight_idx",
                condition=NOT_FINAL,
            ),
        ]
        ordering = ["-id"]

    def __str__(self) -> str:
        return f"{self.get_provider_display()} {self.provider_message_id} ({self.status})"


class Tally(models.Model):
    """Deltas of a count (receipts.tallies), written by triggers in the transaction of the change; a count is the sum
    of its rows, folded into one row per key by ``receipts.tallies.compact``."""

    kind = models.CharField(max_length=20)
    scope = models.BigIntegerField(default=0, help_text="what the count is of (a campaign's id); 0: everything")
    key = models.CharField(max_length=40)
    n = models.BigIntegerField()

    class Meta:
        indexes = [models.Index(fields=["kind", "scope", "key"], include=["n"], name="tally_key_idx")]

    def __str__(self) -> str:
        return f"{self.kind} {self.scope} {self.key}: {self.n:+d}"


class InboxState(models.TextChoices):
    RECEIVED = "received"
    PROCESSED = "processed"
    ORPHAN = "orphan", "orphan (message not registered yet)"
    UNMATCHED = "unmatched", "unmatched (orphan window passed)"
    REJECTED = "rejected", "rejected (malformed)"
    DEAD = "dead", "dead (failed every attempt)"


REPLAYABLE_STATES = (InboxState.DEAD, InboxState.REJECTED, InboxState.UNMATCHED)


class ReceiptEventQuerySet(models.QuerySet["ReceiptEvent"]):
    def due(self, now: datetime) -> ReceiptEventQuerySet:
        return self.filter(state=InboxState.RECEIVED, next_attempt_at__lte=now)


class ReceiptEvent(models.Model):
    """The inbox: one webhook body exactly as it came, written before the provider gets its 200."""

    provider = models.CharField(max_length=20, choices=Provider.choices)
    source = models.CharField(max_length=10, choices=Source.choices, default=Source.WEBHOOK)
    state = models.CharField(max_length=10, choices=InboxState.choices, default=InboxState.RECEIVED)
    # The facts the body carries, hashed: a retried webhook has the same key and is stored once.
    # Rejected bodies have none (NULL escapes the unique constraint), so every one of them is kept.
    dedupe_key = models.CharField(max_length=64, null=True, blank=True)  # noqa: DJ001 - NULL for rejected rows
    body = models.TextField()
    content_type = models.CharField(max_length=200, blank=True)
    remote_addr = models.GenericIPAddressField(null=True, blank=True)
    # The provider message id still waiting for its message (orphans), for matching on registration.
    ref = models.CharField(max_length=255, blank=True, db_index=True)
    error = models.TextField(blank=True)
    attempts = models.PositiveSmallIntegerField(default=0)
    received_at = models.DateTimeField(default=timezone.now, db_index=True)
    next_attempt_at = models.DateTimeField(default=timezone.now)
    orphan_until = models.DateTimeField(null=True, blank=True)
    processed_at = models.DateTimeField(null=True, blank=True)

    objects = ReceiptEventQuerySet.as_manager()

    class Meta:
        constraints = [
            models.UniqueConstraint(fields=["provider", "dedupe_key"], name="receipt_event_dedupe"),
        ]
        indexes = [
            models.Index(fields=["state", "next_attempt_at"], name="receipt_event_due_idx"),
            # The dashboard's "last receipt from this provider", found at once even for a provider long silent.
            models.Index(fields=["provider", "received_at"], name="receipt_event_provider_idx"),
        ]
        ordering = ["-id"]

    def __str__(self) -> str:
        return f"{self.get_provider_display()} event {self.pk} ({self.state})"


class MessageEvent(models.Model):
    """One receipt on a message's timeline, raw and normalised, whether or not it moved the status."""

    message = models.ForeignKey(Message, on_delete=models.CASCADE, related_name="events")
    receipt_event = models.ForeignKey(
        ReceiptEvent, null=True, blank=True, on_delete=models.SET_NULL, related_name="message_events"
    )
    source = models.CharField(max_length=10, choices=Source.choices, default=Source.WEBHOOK)
    receipt_key = models.CharField(max_length=64)
    provider_code = models.CharField(max_length=200, blank=True)
    status = models.CharField(max_length=12, choices=Status.choices, blank=True)
    engagement = models.CharField(max_length=14, choices=Engagement.choices, blank=True)
    failure_category = models.CharField(max_length=24, choices=FailureCategory.choices, blank=True)
    retryable = models.BooleanField(default=False)
    unmapped = models.BooleanField(default=False, help_text="The provider code is not in our tables.")
    applied = models.BooleanField(default=False, help_text="This receipt changed the message's status.")
    description = models.TextField(blank=True)
    details = models.JSONField(default=dict, blank=True)
    raw = models.JSONField(default=dict, blank=True)
    occurred_at = models.DateTimeField(null=True, blank=True)
    received_at = models.DateTimeField(default=timezone.now)

    class Meta:
        constraints = [models.UniqueConstraint(fields=["message", "receipt_key"], name="message_event_once")]
        indexes = [
            models.Index(fields=["unmapped"], name="message_event_unmapped_idx", condition=Q(unmapped=True)),
            # The timeline list's filters, newest first, each a range of its index (a rare value, such as a
            # pending status or an unsubscribe, was a walk of 25 million entries).
            models.Index(fields=["status", "-id"], name="message_event_status_idx"),
            models.Index(
                fields=["engagement", "-id"], name="message_event_engagement_idx", condition=~Q(engagement="")
            ),
            models.Index(
                fields=["failure_category", "-id"], name="message_event_category_idx", condition=~Q(failure_category="")
            ),
            models.Index(fields=["source", "-id"], name="message_event_source_idx", condition=~Q(source="webhook")),
        ]
        ordering = ["occurred_at", "id"]

    def __str__(self) -> str:
        return f"{self.provider_code} -> {self.status or self.engagement or '-'}"


class ReviewQueue(Message):
    """The messages that need review, as the operators' queue in the admin."""

    class Meta:
        proxy = True
        verbose_name = "review item"
        verbose_name_plural = "review queue"


class ReviewResolution(models.Model):
    """Who settled a message that needed review, how, when and why."""

    class Action(models.TextChoices):
        CONFIRM_DELIVERED = "confirm_delivered", "confirmed delivered"
        MARK_FAILED = "mark_failed", "marked failed"
        POLL_AGAIN = "poll_again", "polled again"
        RESOLVE = "resolve", "resolved with a note"

    message = models.ForeignKey(Message, on_delete=models.CASCADE, related_name="resolutions")
    action = models.CharField(max_length=20, choices=Action.choices)
    review_reason = models.CharField(max_length=24, choices=ReviewReason.choices, blank=True)
    failure_category = models.CharField(max_length=24, choices=FailureCategory.choices, blank=True)
    note = models.TextField(blank=True)
    user = models.ForeignKey("auth.User", null=True, blank=True, on_delete=models.SET_NULL, related_name="+")
    created_at = models.DateTimeField(default=timezone.now)

    class Meta:
        ordering = ["created_at", "id"]

    def __str__(self) -> str:
        return f"{self.get_action_display()} by {self.user or 'system'}"


def hash_token(token: str) -> str:
    return hashlib.sha256(token.encode()).hexdigest()


class ApiClient(models.Model):
    """A caller of the REST API (the CRM, a sender). Only the token's hash is stored."""

    class Scope(models.TextChoices):
        READ = "read"
        WRITE = "write"

    name = models.CharField(max_length=100, unique=True)
    token_prefix = models.CharField(max_length=8, help_text="First characters of the token, to recognise it.")
    token_hash = models.CharField(max_length=64, unique=True)
    scopes = models.JSONField(default=list)
    created_at = models.DateTimeField(auto_now_add=True)
    revoked_at = models.DateTimeField(null=True, blank=True)
    last_used_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        verbose_name = "API client"

    def __str__(self) -> str:
        return self.name

    @classmethod
    def issue(cls, name: str, scopes: list[str]) -> tuple[ApiClient, str]:
        token = secrets.token_urlsafe(32)
        client = cls.objects.create(name=name, token_prefix=token[:8], token_hash=hash_token(token), scopes=scopes)
        return client, token

    @property
    def is_active(self) -> bool:
        return self.revoked_at is None


# --- suppression list, retries and escalations (receipts/actions/suppression.py, retries.py, escalation.py)


class SuppressionReason(models.TextChoices):
    HARD_BOUNCE = "hard_bounce", "hard bounce"
    SOFT_BOUNCE_THRESHOLD = "soft_bounce_threshold", "soft bounces over the threshold"
    COMPLAINT = "complaint"
    UNSUBSCRIBE = "unsubscribe", "unsubscribed (opt-out)"
    INVALID_DESTINATION = "invalid_destination", "invalid destination"
    MANUAL = "manual"


class SuppressionSource(models.TextChoices):
    RECEIPT = "receipt", "receipt event"
    OPERATOR = "operator"
    API = "api", "API"
    IMPORT = "import", "CSV import"
    SYSTEM = "system", "system (expiry)"


class SuppressionQuerySet(models.QuerySet["Suppression"]):
    def unlifted(self) -> SuppressionQuerySet:
        return self.filter(lifted_at=None)

    def active(self, now: datetime | None = None) -> SuppressionQuerySet:
        now = now or timezone.now()
        return self.filter(Q(expires_at=None) | Q(expires_at__gt=now), lifted_at=None)

    def expired(self, now: datetime | None = None) -> SuppressionQuerySet:
        return self.filter(lifted_at=None, expires_at__lte=now or timezone.now())


class Suppression(models.Model):
    """One reason not to send to one address on one channel, from when it was added until it is lifted.

    An address can carry several at once (an opt-out and a hard bounce); a `Subscribe` lifts only the opt-out.
    Rows are never deleted: a lift (or an expiry) closes the row, and ``SuppressionChange`` keeps the history.
    """

    channel = models.CharField(max_length=10, choices=Channel.choices)
    address = models.CharField(max_length=320, help_text="Normalised: E.164 for SMS, lower-case for email.")
    reason = models.CharField(max_length=24, choices=SuppressionReason.choices)
    source = models.CharField(max_length=10, choices=SuppressionSource.choices)
    note = models.TextField(blank=True, help_text="Why, in words.")
    evidence = models.JSONField(default=dict, blank=True, help_text="The receipt(s) or request behind it.")
    message = models.ForeignKey(Message, null=True, blank=True, on_delete=models.SET_NULL, related_name="suppressions")
    created_at = models.DateTimeField(default=timezone.now, db_index=True)
    created_by = models.CharField(max_length=200, blank=True, help_text="operator, API client, or receipt")
    user = models.ForeignKey("auth.User", null=True, blank=True, on_delete=models.SET_NULL, related_name="+")
    expires_at = models.DateTimeField(null=True, blank=True)
    lifted_at = models.DateTimeField(null=True, blank=True)
    lifted_by = models.CharField(max_length=200, blank=True)
    lift_source = models.CharField(max_length=10, choices=SuppressionSource.choices, blank=True)
    lift_reason = models.TextField(blank=True)

    objects = SuppressionQuerySet.as_manager()

    class Meta:
        constraints = [
            # One open row per reason; its index is also the (channel, address) lookup of the check endpoint.
            models.UniqueConstraint(
                fields=["channel", "address", "reason"],
                condition=Q(lifted_at=None),
                name="suppression_open_once_per_reason",
            ),
        ]
        indexes = [
            models.Index(fields=["address"], name="suppression_address_idx"),
            models.Index(fields=["expires_at"], name="suppression_expires_idx"),  # the admin's date range
            models.Index(
                fields=["expires_at"],
                name="suppression_expiry_idx",
                condition=Q(lifted_at=None, expires_at__isnull=False),
            ),
        ]
        ordering = ["-id"]

    def __str__(self) -> str:
        return f"{self.channel} {self.address} ({self.reason})"

    def is_active(self, now: datetime | None = None) -> bool:
        now = now or timezone.now()
        return self.lifted_at is None and (self.expires_at is None or self.expires_at > now)


class SuppressionChange(models.Model):
    """The history of one suppression: who added, renewed or lifted it, when, why, and on what evidence."""

    class Action(models.TextChoices):
        ADDED = "added"
        LIFTED = "lifted"
        EXPIRED = "expired"

    suppression = models.ForeignKey(Suppression, on_delete=models.CASCADE, related_name="history")
    action = models.CharField(max_length=10, choices=Action.choices)
    source = models.CharField(max_length=10, choices=SuppressionSource.choices)
    actor = models.CharField(max_length=200, blank=True)
    user = models.ForeignKey("auth.User", null=True, blank=True, on_delete=models.SET_NULL, related_name="+")
    note = models.TextField(blank=True)
    evidence = models.JSONField(default=dict, blank=True)
    # The receipt that caused the change, so that the same receipt processed again changes nothing.
    receipt_key = models.CharField(max_length=64, blank=True, db_index=True)
    at = models.DateTimeField(default=timezone.now)

    class Meta:
        ordering = ["at", "id"]

    def __str__(self) -> str:
        return f"{self.action} by {self.actor or self.source}"


class SoftBounce(models.Model):
    """One soft bounce, counted toward the soft-bounce threshold of its address (once, whatever the repeats)."""

    channel = models.CharField(max_length=10, choices=Channel.choices)
    address = models.CharField(max_length=320)
    receipt_key = models.CharField(max_length=64, unique=True)
    message = models.ForeignKey(Message, null=True, blank=True, on_delete=models.SET_NULL, related_name="+")
    bounced_at = models.DateTimeField()

    class Meta:
        indexes = [models.Index(fields=["channel", "address", "bounced_at"], name="soft_bounce_window_idx")]

    def __str__(self) -> str:
        return f"soft bounce {self.channel} at {self.bounced_at}"


class Retry(models.Model):
    """The decision to send a failed SMS again (or not, and why), and what came of it."""

    class State(models.TextChoices):
        SCHEDULED = "scheduled"
        SENDING = "sending"
        SENT = "sent"
        SKIPPED = "skipped", "skipped (policy says no)"
        CANCELLED = "cancelled", "cancelled before sending"
        FAILED = "failed", "send failed"

    # The failed message: one decision per message.
    message = models.OneToOneField(Message, on_delete=models.CASCADE, related_name="retry")
    # The first message of the chain (the one the CRM asked for), for escalations and limits.
    root = models.ForeignKey(Message, on_delete=models.CASCADE, related_name="+")
    number = models.PositiveSmallIntegerField(help_text="1 for the first retry of the root message.")
    state = models.CharField(max_length=10, choices=State.choices)
    failure_category = models.CharField(max_length=24, blank=True)
    note = models.TextField(blank=True, help_text="Why skipped, cancelled or failed.")
    due_at = models.DateTimeField(null=True, blank=True)
    attempts = models.PositiveSmallIntegerField(default=0)
    claimed_at = models.DateTimeField(null=True, blank=True)
    # What the provider answered, written the moment the send returns, before the new message is registered: a
    # send the provider took is never forgotten, even if registering fails (the sweeper finishes it).
    provider_message_id = models.CharField(max_length=255, blank=True)
    new_message = models.OneToOneField(
        Message, null=True, blank=True, on_delete=models.SET_NULL, related_name="retry_of"
    )
    created_at = models.DateTimeField(default=timezone.now)
    updated_at = models.DateTimeField(default=timezone.now)

    class Meta:
        verbose_name_plural = "retries"
        indexes = [
            models.Index(fields=["due_at"], name="retry_due_idx", condition=Q(state="scheduled")),
            models.Index(fields=["claimed_at"], name="retry_sending_idx", condition=Q(state="sending")),
        ]
        ordering = ["-id"]

    def __str__(self) -> str:
        return f"retry {self.number} of message {self.message_id} ({self.state})"


class Escalation(models.Model):
    """A critical message not delivered in time: someone (or something) should fall back, e.g. call."""

    message = models.OneToOneField(Message, on_delete=models.CASCADE, related_name="escalation")
    raised_at = models.DateTimeField(default=timezone.now, db_index=True)
    deadline = models.DateTimeField()
    status = models.CharField(max_length=12, choices=Status.choices, help_text="Message status when raised.")
    failure_category = models.CharField(max_length=24, blank=True)
    reason = models.TextField()
    acknowledged_at = models.DateTimeField(null=True, blank=True)
    acknowledged_by = models.ForeignKey("auth.User", null=True, blank=True, on_delete=models.SET_NULL, related_name="+")
    note = models.TextField(blank=True)
    fallback = models.CharField(
        max_length=500, blank=True, help_text="A fallback planned for it on its own (another channel), if any."
    )

    class Meta:
        ordering = ["-raised_at", "-id"]

    def __str__(self) -> str:
        return f"escalation for message {self.message_id}"


class Erasure(models.Model):
    """The audit line of one erasure on request (receipts.actions.retention.erase_address): who asked, when, what
    went. It names the address by its hash only, so that the audit keeps nothing of what was erased."""

    channel = models.CharField(max_length=10, choices=Channel.choices)
    address_sha256 = models.CharField(max_length=64, db_index=True, help_text="sha256 of 'channel:address'")
    requested_by = models.CharField(max_length=200)
    note = models.TextField(blank=True)
    messages = models.PositiveIntegerField(default=0, help_text="messages deleted, with their timelines")
    inbox_rows = models.PositiveIntegerField(default=0, help_text="raw inbox bodies deleted")
    soft_bounces = models.PositiveIntegerField(default=0)
    suppressions = models.PositiveIntegerField(default=0, help_text="suppressions deleted, with their history")
    suppressed_for = models.JSONField(
        default=list, blank=True, help_text="the reasons it was suppressed for, restored if it is allowed again"
    )
    others = models.JSONField(default=dict, blank=True, help_text="rows other apps erased, by model")
    created_at = models.DateTimeField(default=timezone.now)
    # Until lifted, nothing is sent to the address and it cannot be added as a contact: the erasure is its block.
    lifted_at = models.DateTimeField(null=True, blank=True, help_text="allowed again on purpose")
    lifted_by = models.CharField(max_length=200, blank=True)
    lift_note = models.TextField(blank=True)

    class Meta:
        ordering = ["-id"]
        indexes = [
            models.Index(fields=["channel", "address_sha256"], name="erasure_active_idx", condition=Q(lifted_at=None)),
        ]

    def __str__(self) -> str:
        return f"erasure {self.pk} ({self.channel}, {self.created_at:%Y-%m-%d})"


# Receipt latency (sent -> final status) is kept as a histogram: the upper bounds of its buckets, in seconds; the
# last bucket holds everything slower.
LATENCY_BOUNDS = (5, 15, 30, 60, 120, 300, 600, 1800, 3600, 7200, 21600, 86400)


class DeliveryStats(models.Model):
    """How many messages, created in one hour (or day), of one provider, channel and campaign, are in one status:
    the rollup the operators' dashboard and the campaign statistics read, instead of counting 10 million
    messages. Kept by ``receipts.actions.rollups`` (beat): hours whose messages changed are counted again.

    A failure keeps its category and provider code (for "top failure codes"); other rows leave them empty.
    """

    class Period(models.TextChoices):
        HOUR = "hour"
        DAY = "day"

    period = models.CharField(max_length=4, choices=Period.choices)
    start = models.DateTimeField(help_text="start of the hour or day (UTC) the messages were created in")
    provider = models.CharField(max_length=20, choices=Provider.choices)
    channel = models.CharField(max_length=10, choices=Channel.choices)
    campaign_id = models.BigIntegerField(default=0, help_text="0: no campaign")
    status = models.CharField(max_length=12, choices=Status.choices)
    assumed = models.BooleanField(default=False)
    failure_category = models.CharField(max_length=24, choices=FailureCategory.choices, blank=True)
    provider_code = models.CharField(max_length=200, blank=True)
    messages = models.PositiveIntegerField(default=0)
    needs_review = models.PositiveIntegerField(default=0)
    read = models.PositiveIntegerField(default=0, help_text="messages read at least once")
    clicked = models.PositiveIntegerField(default=0, help_text="messages clicked at least once")
    complained = models.PositiveIntegerField(default=0, help_text="messages marked as spam by their recipient")
    # Final messages by receipt latency: latency_0 counts those within LATENCY_BOUNDS[0] seconds, ...,
    # latency_12 those slower than the last bound.
    latency_0 = models.PositiveIntegerField(default=0)
    latency_1 = models.PositiveIntegerField(default=0)
    latency_2 = models.PositiveIntegerField(default=0)
    latency_3 = models.PositiveIntegerField(default=0)
    latency_4 = models.PositiveIntegerField(default=0)
    latency_5 = models.PositiveIntegerField(default=0)
    latency_6 = models.PositiveIntegerField(default=0)
    latency_7 = models.PositiveIntegerField(default=0)
    latency_8 = models.PositiveIntegerField(default=0)
    latency_9 = models.PositiveIntegerField(default=0)
    latency_10 = models.PositiveIntegerField(default=0)
    latency_11 = models.PositiveIntegerField(default=0)
    latency_12 = models.PositiveIntegerField(default=0)

    class Meta:
        verbose_name_plural = "delivery stats"
        constraints = [
            models.UniqueConstraint(
                fields=[
                    "period",
                    "start",
                    "provider",
                    "channel",
                    "campaign_id",
                    "status",
                    "assumed",
                    "failure_category",
                    "provider_code",
                ],
                name="delivery_stats_once",
            )
        ]
        indexes = [
            models.Index(fields=["period", "start"], name="delivery_stats_window_idx"),
            models.Index(fields=["campaign_id", "period", "start"], name="delivery_stats_campaign_idx"),
        ]

    def __str__(self) -> str:
        return f"{self.period} of {self.start:%Y-%m-%d %H:00}: {self.messages} {self.provider} {self.status}"


LATENCY_FIELDS = [f"latency_{i}" for i in range(len(LATENCY_BOUNDS) + 1)]


class RollupMark(models.Model):
    """How far the rollups have read: messages updated after ``updated_before`` may be in hours not counted again
    yet. One row, which is also the lease of the one refresh that runs at a time (``leased_until``)."""

    updated_before = models.DateTimeField(null=True, blank=True, help_text="empty: nothing counted yet")
    leased_until = models.DateTimeField(null=True, blank=True)

    def __str__(self) -> str:
        return f"rollups counted up to {self.updated_before}"


class StaleHour(models.Model):
    """An hour to count again although none of its messages was updated: some were deleted (erasure)."""

    start = models.DateTimeField(unique=True)

    def __str__(self) -> str:
        return f"hour of {self.start:%Y-%m-%d %H:00} to count again"


class Alert(models.Model):
    """One condition that should wake someone (``config/alerts.py`` has the rules), from when it was found until it
    cleared. The admin shows the open ones as a banner; the webhook and mail hear of each one twice: fired, then
    resolved."""

    key = models.CharField(max_length=100, help_text="the rule and what it is about, e.g. delivery_rate:generic")
    title = models.CharField(max_length=300)
    detail = models.TextField(blank=True)
    link = models.CharField(max_length=500, blank=True, help_text="the admin page that shows it")
    fired_at = models.DateTimeField(default=timezone.now)
    resolved_at = models.DateTimeField(null=True, blank=True)
    notified = models.BooleanField(default=False, help_text="the firing was sent to the webhook and mail")

    class Meta:
        ordering = ["-fired_at", "-id"]
        constraints = [
            models.UniqueConstraint(fields=["key"], condition=Q(resolved_at=None), name="alert_open_once"),
        ]

    def __str__(self) -> str:
        return self.title
