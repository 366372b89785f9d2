"""The CRM outbox: one row per change, written in the transaction that made the change.

A row is both a message for the relay to push (``state``, ``attempts``, ``next_attempt_at``) and an entry of
the change feed the CRM can pull (ordered by the position ``FeedEntry`` gives a committed change, see
docs/design.md, "Change feed without gaps").
"""

from __future__ import annotations

import uuid
from datetime import datetime
from typing import Any

from django.core.serializers.json import DjangoJSONEncoder
from django.db import models
from django.utils import timezone


def new_idempotency_key() -> str:
    return f"chg_{uuid.uuid4().hex}"


class PostgresOnly(models.Func):
    """A transaction id from PostgreSQL as a bigint; 0 on SQLite.

    SQLite has one writer at a time and ids are handed out under its lock, so id order there is commit order
    and a constant is enough.
    """

    output_field = models.BigIntegerField()
    postgres_sql = ""

    def __init__(self) -> None:
        super().__init__()

    # Func.as_sql's parameters, so that the override accepts what it does; the SQL is a constant either way.
    def as_sql(
        self,
        compiler: Any,
        connection: Any,
        function: str | None = None,
        template: str | None = None,
        arg_joiner: str | None = None,
        **extra_context: Any,
    ) -> tuple[str, list]:
        return "0", []

    def as_postgresql(self, compiler: Any, connection: Any, **extra: Any) -> tuple[str, list]:
        return self.postgres_sql, []


class CurrentTxid(PostgresOnly):
    """The id of the writing transaction."""

    postgres_sql = "(pg_current_xact_id()::text::bigint)"


class OutboxState(models.TextChoices):
    PENDING = "pending"
    SENT = "sent"
    SKIPPED = "skipped", "skipped (the CRM cannot take it)"
    DEAD = "dead", "dead (failed every attempt, or held behind a dead change)"


class OutboxQuerySet(models.QuerySet["OutboxMessage"]):
    def pending(self) -> OutboxQuerySet:
        return self.filter(state=OutboxState.PENDING)

    def due(self, now: datetime) -> OutboxQuerySet:
        return self.filter(state=OutboxState.PENDING, next_attempt_at__lte=now)

    def dead(self) -> OutboxQuerySet:
        return self.filter(state=OutboxState.DEAD)


class OutboxMessage(models.Model):
    """One change for the CRM: a status change, a review resolution, an escalation, a suppression change."""

    # Stable for the life of the change: every retry and every duplicate after a crash carries the same key.
    idempotency_key = models.CharField(max_length=64, unique=True, default=new_idempotency_key)
    kind = models.CharField(max_length=40)
    crm_record_id = models.CharField(max_length=255, blank=True)
    message_id = models.BigIntegerField(null=True, blank=True, help_text="receipts.Message id, if any.")
    # Changes of one stream go out in order (the CRM record, else the message, else the address).
    stream = models.CharField(max_length=300)
    payload = models.JSONField(default=dict, encoder=DjangoJSONEncoder)
    occurred_at = models.DateTimeField()
    created_at = models.DateTimeField(default=timezone.now)
    # The writing transaction (PostgreSQL). The change feed was ordered by (txid, id) until 0006; it is kept to
    # read the cursors the feed gave then (`<txid>.<id>`).
    txid = models.BigIntegerField(db_default=CurrentTxid(), editable=False)
    # Given when the relay first claims the row, in the order it claims them: the order changes became visible
    # (committed), not the order their ids were handed out. The CRM gets it as `sequence`, so a record's
    # sequence numbers rise in the order it receives them, whatever order the writers committed in.
    sequence = models.BigIntegerField(null=True, blank=True, unique=True, editable=False)

    state = models.CharField(max_length=10, choices=OutboxState.choices, default=OutboxState.PENDING)
    attempts = models.PositiveIntegerField(default=0)
    next_attempt_at = models.DateTimeField(default=timezone.now)
    sent_at = models.DateTimeField(null=True, blank=True)
    last_error = models.TextField(blank=True)

    objects = OutboxQuerySet.as_manager()

    class Meta:
        verbose_name = "outbox change"
        indexes = [
            models.Index(fields=["state", "next_attempt_at"], name="crm_outbox_due_idx"),
            models.Index(fields=["stream", "id"], name="crm_outbox_stream_idx"),
            models.Index(fields=["txid", "id"], name="crm_outbox_feed_idx"),
            models.Index(fields=["crm_record_id"], name="crm_outbox_record_idx"),
            models.Index(fields=["created_at"], name="crm_outbox_created_idx"),  # the admin's date range
        ]
        ordering = ["-id"]

    def __str__(self) -> str:
        return f"{self.kind} {self.crm_record_id or self.stream} ({self.state})"


class FeedEntry(models.Model):
    """A change's place in the change feed.

    A trigger adds one, with no position, in the transaction that inserts the change; ``crm_sync.feed.number``
    gives committed entries the next positions, one numbering at a time. Only committed changes get a number, and
    a numbering commits before the next one starts, so the feed's order is the order positions became visible:
    a reader that has seen position N never sees a lower one appear later.
    """

    change = models.OneToOneField(OutboxMessage, on_delete=models.CASCADE, primary_key=True, related_name="feed")
    position = models.BigIntegerField(null=True, blank=True, unique=True, editable=False)

    class Meta:
        verbose_name = "change feed entry"
        indexes = [
            # The committed entries still to number: few, however long the feed.
            models.Index(fields=["change"], name="crm_feed_unnumbered_idx", condition=models.Q(position__isnull=True)),
        ]

    def __str__(self) -> str:
        return f"#{self.position or '-'}: change {self.change_id}"


class RelayLease(models.Model):
    """Who relays now. One relay at a time keeps each stream in order; a dead relay's lease runs out.

    Each taking of the lease draws a higher ``token``; see crm_sync/actions.py, "the lease".

    It also holds the CRM's pause: after a batch the CRM refused as a whole (429, 5xx, unreachable), nothing is
    sent to it until ``paused_until``; then one change goes alone as a probe, and only its success resumes.
    """

    name = models.CharField(max_length=40, primary_key=True)
    owner = models.CharField(max_length=100, blank=True)
    expires_at = models.DateTimeField()
    # The fencing token: drawn afresh (higher than every one before) each time a relay takes the lease, kept while
    # it renews. Every write of the relay checks it in its transaction and every generic batch carries it, so a relay
    # that lost the lease can neither settle nor deliver.
    token = models.PositiveBigIntegerField(default=0, help_text="The holder's fencing token.")
    paused_until = models.DateTimeField(null=True, blank=True)
    pause_reason = models.TextField(blank=True)
    failures = models.PositiveIntegerField(default=0, help_text="Whole batches refused in a row.")
    usage = models.CharField(max_length=200, blank=True, help_text="The CRM's last word on its API limit.")

    def __str__(self) -> str:
        return f"{self.name}: {self.owner or '-'} until {self.expires_at:%H:%M:%S}"

    @property
    def probing(self) -> bool:
        """The CRM refused the last batch: the next one is a single change."""
        return self.failures > 0
