from django.db import models


class Campaign(models.Model):
    """A named send; messages point to it."""

    name = models.CharField(max_length=200, unique=True)
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        ordering = ["-created_at"]

    def __str__(self) -> str:
        return self.name


class Send(models.Model):
    """One message to send, planned before anything leaves (``campaigns.dispatch``): claimed once, sent once,
    then registered for tracking. A send whose outcome is not known (the worker died, the provider did not
    answer) is never sent again on its own: it waits as ``unknown`` for an operator."""

    class State(models.TextChoices):
        PLANNED = "planned"
        SENDING = "sending"
        SENT = "sent"
        SUPPRESSED = "suppressed", "suppressed (refused at send)"
        FAILED = "failed", "failed to send"
        UNKNOWN = "unknown", "unknown (may have been sent: check before sending again)"

    idempotency_key = models.CharField(max_length=200, unique=True, null=True, blank=True)
    channel = models.CharField(max_length=10)
    provider = models.CharField(max_length=20)
    to = models.CharField(max_length=320, help_text="Normalised: E.164 for SMS, lower-case for email.")
    content = models.JSONField(default=dict, help_text='{"text", "subject", "from"}')
    crm_record_id = models.CharField(max_length=255, blank=True)
    campaign = models.ForeignKey(Campaign, null=True, blank=True, on_delete=models.SET_NULL, related_name="sends")
    priority = models.CharField(max_length=10, default="normal")
    metadata = models.JSONField(default=dict, blank=True)
    state = models.CharField(max_length=10, choices=State.choices, default=State.PLANNED)
    attempts = models.PositiveSmallIntegerField(default=0)
    claimed_at = models.DateTimeField(null=True, blank=True)
    provider_message_id = models.CharField(max_length=255, blank=True)
    message_id = models.BigIntegerField(null=True, blank=True, help_text="receipts.Message tracking it, once sent")
    error = models.TextField(blank=True)
    created_at = models.DateTimeField(auto_now_add=True)
    sent_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        ordering = ["-id"]
        indexes = [
            models.Index(fields=["id"], name="send_planned_idx", condition=models.Q(state="planned")),
            models.Index(fields=["claimed_at"], name="send_sending_idx", condition=models.Q(state="sending")),
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
