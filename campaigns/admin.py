"""Admin: campaigns, each with its delivery statistics from the rollups (the same as the API's stats)."""

from __future__ import annotations

from typing import Any

from django import forms
from django.contrib import admin, messages
from django.core.exceptions import PermissionDenied
from django.db import transaction
from django.db.models import OuterRef, QuerySet, Subquery, Sum
from django.http import HttpRequest, HttpResponse, HttpResponseRedirect, JsonResponse
from django.urls import URLPattern, path, reverse
from django.utils.html import format_html, format_html_join
from django.utils.http import url_has_allowed_host_and_scheme

from campaigns import contact_import, lifecycle, templating
from campaigns.api import SENDING_PROVIDERS, request_planning
from campaigns.models import Campaign, Contact, Send
from campaigns.stats import campaign_stats
from receipts.actions import rollups
from receipts.admin.charts import COLOURS, Segment, columns
from receipts.admin.scale import AddressSearch, LargeTableAdmin
from receipts.models import DeliveryStats, Priority
from receipts.status import Channel, Status


def rollup_sum(**filters: Any) -> Subquery:
    rows = DeliveryStats.objects.filter(period=DeliveryStats.Period.DAY, campaign_id=OuterRef("pk"), **filters)
    return Subquery(rows.order_by().values("campaign_id").annotate(n=Sum("messages")).values("n")[:1])


class CampaignForm(forms.ModelForm):
    """The sending settings are checked as the API checks them (sender allow-list, template, SMS length, ...)."""

    channel = forms.ChoiceField(choices=[("", "tracked only"), *Channel.choices], required=False)
    provider = forms.ChoiceField(choices=[("", "-"), *SENDING_PROVIDERS], required=False)
    priority = forms.ChoiceField(choices=Priority.choices, initial=Priority.NORMAL)

    class Meta:
        model = Campaign
        fields = ["name", *lifecycle.SENDING_FIELDS]

    def clean(self) -> dict[str, Any]:
        cleaned = super().clean() or {}
        if cleaned.get("channel") or cleaned.get("provider"):
            if not (cleaned.get("channel") and cleaned.get("provider")):
                raise forms.ValidationError("a campaign to send needs both a channel and a provider")
            for name, texts in lifecycle.problems(cleaned).items():
                self.add_error(name if name in self.fields else None, " ".join(texts))
        return cleaned


# The buttons on a campaign's page: (step, label, the states it applies to).
STEPS = [
    ("start", "Start", {Campaign.State.DRAFT}),
    ("pause", "Pause", {Campaign.State.RUNNING}),
    ("resume", "Resume", {Campaign.State.PAUSED}),
    ("cancel", "Cancel", {Campaign.State.DRAFT, Campaign.State.RUNNING, Campaign.State.PAUSED}),
]

# The buttons on a row of the campaigns list: stop or go on, never Start (that needs the campaign's page read).
ROW_STEPS = [s for s in STEPS if s[0] != "start"]


@admin.register(Campaign)
class CampaignAdmin(admin.ModelAdmin):
    form = CampaignForm
    # Progress first, then the rate: what an operator looks for (the rate once sat past the right edge). Users who
    # may change campaigns also get the row's Pause, Resume and Cancel (get_list_display).
    list_display = [
        "name",
        "state",
        "progress",
        "delivery_rate",
        "messages",
        "delivered",
        "failed",
        "not_final",
        "created_at",
    ]
    change_list_template = "admin/campaigns/campaign/change_list.html"
    list_filter = ["state", "channel", "provider"]
    search_fields = ["name"]
    change_form_template = "admin/campaigns/campaign/change_form.html"
    fieldsets = [
        (None, {"fields": ["name", "state", "state_reason", "created_at", "started_at", "finished_at"]}),
        (
            "Sending",
            {"fields": ["channel", "provider", "sender", "sender_name", "priority", "use_existing_conversation"]},
        ),
        ("Message", {"fields": ["subject", "body"]}),
        ("Audience and schedule", {"fields": ["audience", "start_at", "quiet_start", "quiet_end", "time_zone"]}),
        (
            "Fallback (critical messages that escalate go again on this channel)",
            {
                "fields": [
                    "fallback_channel",
                    "fallback_provider",
                    "fallback_subject",
                    "fallback_sender",
                    "fallback_sender_name",
                ]
            },
        ),
    ]
    STATE_FIELDS = ["state", "state_reason", "created_at", "started_at", "finished_at"]

    def get_list_display(self, request: HttpRequest) -> list[Any]:
        steps = ["row_steps"] if self.has_change_permission(request) else []
        return [*self.list_display, *steps]

    @admin.display(description="progress (sent of audience)")
    def progress(self, obj: Any) -> str:
        """The messages sent (from the rollups, like the figures beside it) of the audience chosen at start."""
        sent = obj.total or 0
        if not obj.audience_size:
            return format_html('<span class="quiet">{}</span>', f"{sent:,} sent" if sent else "-")
        share = min(100.0, 100 * sent / obj.audience_size)
        return format_html(
            '<span class="row-progress" title="{}"><span style="width:{}%"></span></span>{}',
            f"{share:.0f}%",
            f"{share:.2f}",
            f"{sent:,} / {obj.audience_size:,}",
        )

    @admin.display(description="")
    def row_steps(self, obj: Campaign) -> str:
        # Each button names its own form (change_list.html renders them outside the list's form).
        return format_html_join(
            " ",
            '<input type="submit" form="step-{}-{}" value="{}" class="button">',
            ((obj.pk, step, label) for step, label, states in ROW_STEPS if obj.state in states),
        )

    def get_readonly_fields(self, request: HttpRequest, obj: Campaign | None = None) -> list[str]:
        if obj is not None and obj.state != Campaign.State.DRAFT:  # what was sent stays as it was sent
            return [*self.STATE_FIELDS, *CampaignForm.Meta.fields]
        return self.STATE_FIELDS

    def get_urls(self) -> list[URLPattern]:
        view = self.admin_site.admin_view(self.step_view)
        length = self.admin_site.admin_view(self.sms_length_view)
        return [
            path("<int:pk>/step/<str:step>/", view, name="campaigns_campaign_step"),
            path("sms-length/", length, name="campaigns_campaign_sms_length"),
            *super().get_urls(),
        ]

    def sms_length_view(self, request: HttpRequest) -> HttpResponse:
        """What an SMS body costs, asked by the campaign page as the operator types (POST: the text may be long).
        The count is templating's, the one the campaign is checked with, so the page never counts differently."""
        if request.method != "POST":
            return HttpResponse(status=405)
        if not (self.has_add_permission(request) or self.has_change_permission(request)):
            raise PermissionDenied
        text = request.POST.get("text", "")[:10_000]
        return JsonResponse({"text": sms_length_text(text)})

    def step_view(self, request: HttpRequest, pk: int, step: str) -> HttpResponse:
        """Start, pause, resume or cancel (POST, by a user who may change campaigns)."""
        campaign = Campaign.objects.filter(pk=pk).first()
        if request.method != "POST" or step not in {s[0] for s in STEPS} or campaign is None:
            return HttpResponse(status=405 if campaign is not None and step in {s[0] for s in STEPS} else 404)
        if not self.has_change_permission(request, campaign):
            raise PermissionDenied
        actions: dict[str, Any] = {
            "start": lifecycle.start,
            "pause": lambda c: lifecycle.pause(c, f"paused by {request.user}"),
            "resume": lifecycle.resume,
            "cancel": lifecycle.cancel,
        }
        try:
            actions[step](campaign)
        except lifecycle.LifecycleError as exc:
            self.message_user(request, str(exc), messages.ERROR)
        else:
            if step in ("start", "resume"):
                transaction.on_commit(request_planning)
            self.message_user(request, f"{campaign.name}: {step} done", messages.SUCCESS)
        back = request.POST.get("next", "")  # the list the row's button was pressed on
        if back and url_has_allowed_host_and_scheme(back, {request.get_host()}, request.is_secure()):
            return HttpResponseRedirect(back)
        return HttpResponseRedirect(reverse("admin:campaigns_campaign_change", args=[pk]))

    def get_queryset(self, request: HttpRequest) -> QuerySet[Campaign]:
        # Each figure is a sum over the campaign's daily rollup rows (an index range), never a count of messages.
        return (
            super()
            .get_queryset(request)
            .annotate(
                total=rollup_sum(),
                delivered_count=rollup_sum(status__in=[Status.DELIVERED]),
                failed_count=rollup_sum(status__in=sorted(rollups.FAILURES)),
                pending_count=rollup_sum(status__in=sorted(rollups.PENDING)),
            )
        )

    @admin.display(description="messages", ordering="total")
    def messages(self, obj: Any) -> str:
        url = f"{reverse('admin:receipts_message_changelist')}?campaign__id__exact={obj.pk}"
        return format_html('<a href="{}">{}</a>', url, obj.total or 0)

    @admin.display(description="delivered", ordering="delivered_count")
    def delivered(self, obj: Any) -> int:
        return obj.delivered_count or 0

    @admin.display(description="failed", ordering="failed_count")
    def failed(self, obj: Any) -> int:
        return obj.failed_count or 0

    @admin.display(description="not final yet")
    def not_final(self, obj: Any) -> int:
        return obj.pending_count or 0

    @admin.display(description="delivery rate")
    def delivery_rate(self, obj: Any) -> str:
        final = (obj.delivered_count or 0) + (obj.failed_count or 0)
        return "-" if not final else f"{(obj.delivered_count or 0) / final:.1%}"

    def change_view(
        self, request: HttpRequest, object_id: str, form_url: str = "", extra_context: dict[str, Any] | None = None
    ) -> Any:
        extra: dict[str, Any] = dict(extra_context or {})
        if object_id.isascii() and object_id.isdigit() and len(object_id) < 19:
            stats = campaign_stats(int(object_id))
            extra["stats"] = stats
            extra["rate_text"] = "-" if stats["delivery_rate"] is None else f"{stats['delivery_rate']:.1%}"
            extra["chart"] = columns(
                [
                    (day["day"][5:], [Segment(kind, n, COLOURS[kind]) for kind, n in day_kinds(day).items()])
                    for day in stats["over_time"]
                ],
                every=max(len(stats["over_time"]) // 8, 1),
            )
            extra["messages_url"] = f"{reverse('admin:receipts_message_changelist')}?campaign__id__exact={object_id}"
            campaign = Campaign.objects.filter(pk=int(object_id)).first()
            if campaign is not None and campaign.sendable:
                extra["progress"] = lifecycle.progress(campaign)
                extra["progress_bar"] = progress_bar(extra["progress"])
                # Only the buttons this user may press: a view-only user sees the state, not Start or Cancel.
                may_change = self.has_change_permission(request, campaign)
                extra["steps"] = [
                    (step, reverse("admin:campaigns_campaign_step", args=[campaign.pk, step]), label)
                    for step, label, states in STEPS
                    if may_change and campaign.state in states
                ]
                extra["sends_url"] = f"{reverse('admin:campaigns_send_changelist')}?campaign__id__exact={campaign.pk}"
        return super().change_view(request, object_id, form_url, extra)


def sms_length_text(text: str) -> str:
    """``2 segments, GSM-7, 185 characters``, of the template as written (placeholders as typed)."""
    if not text.strip():
        return "empty"
    return templating.describe(text)


PROGRESS_COLOURS = {
    "sent": COLOURS["delivered"],
    "suppressed": "#a0a0a0",
    "failed": COLOURS["failed"],
    "unknown": "#e0a030",
    "cancelled": "#d0d0d0",
    "queued": "#79aec8",
    "planned": "#eeeeee",
}


def progress_bar(progress: dict[str, int]) -> str:
    """The sends by state as one horizontal bar (widths in percent), with the figures beside it."""
    total = sum(progress[k] for k in PROGRESS_COLOURS) or 1
    parts = format_html_join(
        "",
        '<span title="{}: {}" style="display:inline-block;height:18px;width:{}%;background:{}"></span>',
        ((k, progress[k], f"{100 * progress[k] / total:.3f}", c) for k, c in PROGRESS_COLOURS.items() if progress[k]),
    )
    return format_html('<div class="progress-bar" style="width:100%;border:1px solid #ccc">{}</div>', parts)


def day_kinds(day: dict[str, Any]) -> dict[str, int]:
    kinds = {"delivered": 0, "failed": 0, "pending": 0, "other": 0}
    for status, n in day["by_status"].items():
        kind = "delivered" if status == Status.DELIVERED else "failed" if status in rollups.FAILURES else "pending"
        kinds[kind] += n
    return kinds


@admin.register(Send)
class SendAdmin(AddressSearch, LargeTableAdmin):
    """Sends, by state; read-only (the API plans them, the dispatcher moves them). A big table: no COUNT(*), pages
    by key, filters from fixed choices (not a DISTINCT over every send), indexed exact search."""

    list_display = ["id", "state", "provider", "channel", "to", "crm_record_id", "created_at", "sent_at", "message"]
    list_filter = ["state", "provider", "channel", "campaign"]  # the fields' choices: no DISTINCT over the table
    search_fields = ["to"]  # any: AddressSearch decides what a term means
    search_help_text = "An exact phone number (any format), email, CRM record id, provider message id or key."
    address_fields = (("to", Channel.SMS), ("to", Channel.EMAIL))
    exact_fields = ("crm_record_id", "provider_message_id", "idempotency_key")
    readonly_fields = [f.name for f in Send._meta.fields]

    @admin.display(description="tracked as")
    def message(self, obj: Send) -> str:
        if not obj.message_id:
            return "-"
        return format_html(
            '<a href="{}">message {}</a>',
            reverse("admin:receipts_message_change", args=[obj.message_id]),
            obj.message_id,
        )

    def has_add_permission(self, request: HttpRequest) -> bool:
        return False

    def has_change_permission(self, request: HttpRequest, obj: object = None) -> bool:
        return False

    def has_delete_permission(self, request: HttpRequest, obj: object = None) -> bool:
        return False


@admin.register(Contact)
class ContactAdmin(AddressSearch, LargeTableAdmin):
    list_display = ["crm_record_id", "phone", "email", "external_contact_id", "updated_at"]
    search_fields = ["crm_record_id"]  # any: AddressSearch decides what a term means
    search_help_text = "An exact CRM record id, phone number (any format) or email."
    address_fields = (("phone", Channel.SMS), ("email", Channel.EMAIL))
    exact_fields = ("crm_record_id",)
    readonly_fields = ["created_at", "updated_at"]
    change_list_template = "admin/campaigns/contact/change_list.html"

    def get_urls(self) -> list[URLPattern]:
        view = self.admin_site.admin_view(self.import_view)
        return [path("import/", view, name="campaigns_contact_import"), *super().get_urls()]

    def import_view(self, request: HttpRequest) -> HttpResponse:
        """Contacts from a CSV file: added or updated by crm_record_id, each line refused shown with why."""
        return contact_import.import_view(self, request)
