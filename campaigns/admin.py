"""Admin: campaigns, each with its delivery statistics from the rollups (the same as the API's stats)."""

from __future__ import annotations

from typing import Any

from django.contrib import admin
from django.db.models import OuterRef, QuerySet, Subquery, Sum
from django.http import HttpRequest
from django.urls import reverse
from django.utils.html import format_html

from campaigns.models import Campaign, Contact, Send
from campaigns.stats import campaign_stats
from receipts.actions import rollups
from receipts.admin.charts import COLOURS, Segment, columns
from receipts.models import DeliveryStats
from receipts.status import Status


def rollup_sum(**filters: Any) -> Subquery:
    rows = DeliveryStats.objects.filter(period=DeliveryStats.Period.DAY, campaign_id=OuterRef("pk"), **filters)
    return Subquery(rows.order_by().values("campaign_id").annotate(n=Sum("messages")).values("n")[:1])


@admin.register(Campaign)
class CampaignAdmin(admin.ModelAdmin):
    list_display = ["name", "created_at", "messages", "delivered", "failed", "not_final", "delivery_rate"]
    search_fields = ["name"]
    readonly_fields = ["created_at"]
    change_form_template = "admin/campaigns/campaign/change_form.html"

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
        return super().change_view(request, object_id, form_url, extra)


def day_kinds(day: dict[str, Any]) -> dict[str, int]:
    kinds = {"delivered": 0, "failed": 0, "pending": 0, "other": 0}
    for status, n in day["by_status"].items():
        kind = "delivered" if status == Status.DELIVERED else "failed" if status in rollups.FAILURES else "pending"
        kinds[kind] += n
    return kinds


@admin.register(Send)
class SendAdmin(admin.ModelAdmin):
    """Sends, by state; read-only (the API plans them, the dispatcher moves them)."""

    list_display = ["id", "state", "provider", "channel", "to", "crm_record_id", "created_at", "sent_at", "message"]
    list_filter = ["state", "provider", "channel"]
    search_fields = ["=idempotency_key", "=to", "=crm_record_id", "=provider_message_id"]
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
class ContactAdmin(admin.ModelAdmin):
    list_display = ["crm_record_id", "phone", "email", "external_contact_id", "updated_at"]
    search_fields = ["=crm_record_id", "=phone", "=email"]
    readonly_fields = ["created_at", "updated_at"]
