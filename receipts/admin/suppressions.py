"""Admin for the suppression list: its history, lifts, CSV import and export.

Every change goes through ``receipts.actions.suppression`` (audited, announced to the CRM).
"""

from __future__ import annotations

import csv
import io
from typing import Any, cast

from django import forms
from django.contrib import admin, messages
from django.db.models import Q, QuerySet
from django.http import HttpRequest, HttpResponse, StreamingHttpResponse
from django.template.response import TemplateResponse
from django.urls import URLPattern, path, reverse
from django.utils import timezone
from django.utils.html import format_html
from rangefilter.filters import DateRangeFilter

from receipts.actions import suppression
from receipts.addresses import normalize_address
from receipts.admin.export import csv_stream
from receipts.admin.scale import LargeTableAdmin
from receipts.models import Suppression, SuppressionChange, SuppressionReason, SuppressionSource
from receipts.status import Channel

IMPORT_MAX_BYTES = 20 * 1024 * 1024
IMPORT_MAX_ROWS = 200_000
REFUSED_SHOWN = 1000

# django-stubs' type for ModelAdmin.fields and get_fields(): a list of names or of groups of names. A list is
# invariant, so a list[str] (all plain names, valid at runtime) has to be cast to it.
FieldGroups = list[str | list[str] | tuple[str, ...]]


class HistoryInline(admin.TabularInline):
    model = SuppressionChange
    extra = 0
    can_delete = False
    fields = ["at", "action", "source", "actor", "note", "evidence"]
    readonly_fields = cast(list[str], fields)  # all plain names (see FieldGroups)
    verbose_name_plural = "history (who added or lifted it, when, why, on what evidence)"

    def has_add_permission(self, request: HttpRequest, obj: object = None) -> bool:
        return False

    def has_change_permission(self, request: HttpRequest, obj: object = None) -> bool:
        return False


class ExpiryFilter(admin.SimpleListFilter):
    title = "expiry"
    parameter_name = "expiry"

    def lookups(self, request: HttpRequest, model_admin: Any) -> list[tuple[str, str]]:
        return [
            ("permanent", "active, never expires"),
            ("expiring", "active, expires"),
            ("expired", "expired"),
            ("lifted", "lifted"),
        ]

    def queryset(self, request: HttpRequest, queryset: QuerySet[Suppression]) -> QuerySet[Suppression]:
        now = timezone.now()
        value = self.value()
        if value == "permanent":
            return queryset.filter(lifted_at=None, expires_at=None)
        if value == "expiring":
            return queryset.filter(lifted_at=None, expires_at__gt=now)
        if value == "expired":
            return queryset.filter(Q(lifted_at=None, expires_at__lte=now) | Q(lift_source=SuppressionSource.SYSTEM))
        if value == "lifted":
            return queryset.filter(lifted_at__isnull=False).exclude(lift_source=SuppressionSource.SYSTEM)
        return queryset


class AddForm(forms.ModelForm):
    class Meta:
        model = Suppression
        fields = ["channel", "address", "reason", "note", "expires_at"]

    def clean(self) -> dict[str, Any]:
        data = super().clean() or {}
        if data.get("channel") and data.get("address"):
            try:
                data["address"] = normalize_address(data["channel"], data["address"])
                self.instance.address = data["address"]
            except ValueError as exc:
                self.add_error("address", str(exc))
        if data.get("expires_at") and data["expires_at"] <= timezone.now():
            self.add_error("expires_at", "must be in the future")
        return data


class LiftForm(forms.Form):
    reason = forms.CharField(
        widget=forms.Textarea(attrs={"rows": 3, "cols": 60}),
        help_text="Why may these addresses be sent to again? Kept in each entry's history.",
    )


class ImportForm(forms.Form):
    file = forms.FileField(help_text="CSV with a header: channel, address, and optionally reason, note, expires_at.")


@admin.register(Suppression)
class SuppressionAdmin(LargeTableAdmin):
    list_display = [
        "id",
        "channel",
        "address",
        "reason",
        "source",
        "state",
        "expires_at",
        "created_at",
        "created_by",
        "lifted_at",
    ]
    list_filter = [
        "reason",
        "channel",
        "source",
        ExpiryFilter,
        ("created_at", DateRangeFilter),
        ("expires_at", DateRangeFilter),
    ]
    search_fields = ["=address", "=created_by", "=lifted_by"]
    date_ordered = ("created_at", "expires_at")  # both indexed
    search_help_text = "An address (a phone number in any format, an email), or who added or lifted it, exactly."
    show_full_result_count = False
    actions = ["lift", "export_selected"]
    change_list_template = "admin/receipts/suppression/change_list.html"
    readonly_fields = [
        "channel",
        "address",
        "reason",
        "source",
        "note",
        "evidence",
        "message_link",
        "created_at",
        "created_by",
        "user",
        "expires_at",
        "lifted_at",
        "lifted_by",
        "lift_source",
        "lift_reason",
    ]

    # --- pages ---------------------------------------------------------------------------------------

    def get_inlines(self, request: HttpRequest, obj: Suppression | None = None) -> list[type]:
        return [HistoryInline] if obj else []

    def get_form(self, request: HttpRequest, obj: Suppression | None = None, change: bool = False, **kwargs: Any):
        if obj is None:
            kwargs["form"] = AddForm
        return super().get_form(request, obj, change=change, **kwargs)

    def get_readonly_fields(self, request: HttpRequest, obj: Suppression | None = None) -> list[str]:
        return self.readonly_fields if obj else []

    def get_fields(self, request: HttpRequest, obj: Suppression | None = None) -> FieldGroups:
        names = self.readonly_fields if obj else ["channel", "address", "reason", "note", "expires_at"]
        return cast(FieldGroups, names)

    def has_delete_permission(self, request: HttpRequest, obj: object = None) -> bool:
        return False  # an entry is lifted, never deleted: its history stays

    def changeform_view(
        self, request: HttpRequest, object_id: str | None = None, form_url: str = "", extra_context: Any = None
    ) -> HttpResponse:
        if object_id:  # an entry is evidence: read it, lift it from the list
            extra_context = {**(extra_context or {}), "show_save": False, "show_save_and_continue": False}
            extra_context["show_save_and_add_another"] = False
        return super().changeform_view(request, object_id, form_url, extra_context)

    def save_model(self, request: HttpRequest, obj: Suppression, form: forms.ModelForm, change: bool) -> None:
        if change:
            return
        row, created = suppression.suppress(
            obj.channel,
            obj.address,
            obj.reason,
            source=SuppressionSource.OPERATOR,
            actor=f"operator:{request.user.get_username()}",
            user=request.user,
            note=obj.note,
            expires_at=obj.expires_at,
            evidence={"operator": request.user.get_username()},
        )
        obj.pk = row.pk
        if not created:
            self.message_user(request, "That address already had this suppression; nothing added.", messages.WARNING)

    def save_related(self, request: HttpRequest, form: Any, formsets: Any, change: bool) -> None:
        return None  # nothing related is edited here

    @admin.display(description="state")
    def state(self, obj: Suppression) -> str:
        if obj.lifted_at:
            return "expired" if obj.lift_source == SuppressionSource.SYSTEM else "lifted"
        return "active" if obj.is_active() else "expired"

    @admin.display(description="evidence message")
    def message_link(self, obj: Suppression) -> str:
        if not obj.message_id:
            return "-"
        url = reverse("admin:receipts_message_change", args=[obj.message_id])
        return format_html('<a href="{}">message {}</a>', url, obj.message_id)

    def get_search_results(
        self, request: HttpRequest, queryset: QuerySet[Suppression], search_term: str
    ) -> tuple[QuerySet[Suppression], bool]:
        """An address is found however it is typed: the term is normalised first (exact, indexed)."""
        term = search_term.strip()
        for channel in (Channel.EMAIL, Channel.SMS) if "@" in term else (Channel.SMS,):
            try:
                return queryset.filter(address=normalize_address(channel, term)), False
            except ValueError:
                continue
        return super().get_search_results(request, queryset, search_term)

    # --- lift ----------------------------------------------------------------------------------------

    @admin.action(description="Lift selected suppressions (asks for a reason)", permissions=["change"])
    def lift(self, request: HttpRequest, queryset: QuerySet[Suppression]) -> TemplateResponse | None:
        form = LiftForm(request.POST if "apply" in request.POST else None)
        if not form.is_bound or not form.is_valid():
            context = {
                **self.admin_site.each_context(request),
                "title": "Lift suppressions",
                "queryset": queryset,
                "count": queryset.count(),
                "form": form,
                "opts": self.model._meta,
            }
            return TemplateResponse(request, "admin/receipts/suppression/lift.html", context)
        lifted, skipped = suppression.lift_many(
            list(queryset.values_list("pk", flat=True)),
            reason=form.cleaned_data["reason"],
            source=SuppressionSource.OPERATOR,
            actor=f"operator:{request.user.get_username()}",
            user=request.user,
        )
        self.message_user(request, f"{len(lifted)} suppression(s) lifted.", messages.SUCCESS)
        if skipped:
            self.message_user(request, f"{skipped} skipped: already lifted or expired.", messages.WARNING)
        return None

    # --- CSV -----------------------------------------------------------------------------------------

    @admin.action(description="Export selected as CSV")
    def export_selected(self, request: HttpRequest, queryset: QuerySet[Suppression]) -> StreamingHttpResponse:
        return csv_response(queryset)

    def get_urls(self) -> list[URLPattern]:
        own = [
            path("import/", self.admin_site.admin_view(self.import_view), name="receipts_suppression_import"),
            path("export/", self.admin_site.admin_view(self.export_view), name="receipts_suppression_export"),
        ]
        return own + super().get_urls()

    def export_view(self, request: HttpRequest) -> HttpResponse | StreamingHttpResponse:
        """The list as filtered on the page (same query string), as CSV."""
        if not self.has_view_permission(request):
            return HttpResponse(status=403)
        changelist = self.get_changelist_instance(request)
        return csv_response(changelist.get_queryset(request))

    def import_view(self, request: HttpRequest) -> HttpResponse:
        if not self.has_add_permission(request):
            return HttpResponse(status=403)
        form = ImportForm(request.POST or None, request.FILES or None)
        report = None
        if request.method == "POST" and form.is_valid():
            upload = form.cleaned_data["file"]
            if upload.size > IMPORT_MAX_BYTES:
                form.add_error("file", f"the file is over {IMPORT_MAX_BYTES // (1024 * 1024)} MiB; split it")
            else:
                try:
                    rows = read_csv(upload.read())
                except ValueError as exc:
                    form.add_error("file", str(exc))
                else:
                    report = suppression.import_rows(
                        rows, actor=f"import:{request.user.get_username()}", user=request.user
                    )
                    level = messages.WARNING if report.refused else messages.SUCCESS
                    self.message_user(
                        request,
                        f"{report.added} added, {report.already} already suppressed, {len(report.refused)} refused.",
                        level,
                    )
        context = {
            **self.admin_site.each_context(request),
            "title": "Import suppressions from CSV",
            "form": form,
            "report": report,
            "refused": report.refused[:REFUSED_SHOWN] if report else [],
            "refused_more": max(0, len(report.refused) - REFUSED_SHOWN) if report else 0,
            "columns": suppression.IMPORT_COLUMNS,
            "reasons": SuppressionReason.values,
            "opts": self.model._meta,
        }
        return TemplateResponse(request, "admin/receipts/suppression/import.html", context)


def read_csv(data: bytes) -> list[tuple[int, dict[str, str]]]:
    """(line number, row) for every data row; refuses files that are not UTF-8 CSV with the needed columns."""
    try:
        text = data.decode("utf-8-sig")
    except UnicodeDecodeError as exc:
        raise ValueError("the file is not UTF-8 text") from exc
    reader = csv.DictReader(io.StringIO(text, newline=""))
    header = [h.strip().lower() for h in reader.fieldnames or []]
    missing = {"channel", "address"} - set(header)
    if missing:
        raise ValueError(f"the header row needs the columns channel and address; missing: {', '.join(sorted(missing))}")
    reader.fieldnames = header
    rows: list[tuple[int, dict[str, str]]] = []
    for row in reader:
        if len(rows) >= IMPORT_MAX_ROWS:
            raise ValueError(f"more than {IMPORT_MAX_ROWS} rows; split the file")
        if not any((v or "").strip() for k, v in row.items() if k):
            continue  # blank line
        rows.append((reader.line_num, {k: (v or "") for k, v in row.items() if k}))
    return rows


def csv_response(queryset: QuerySet[Suppression]) -> StreamingHttpResponse:
    rows = iter(suppression.export_rows(queryset))
    header = next(rows)
    return csv_stream("suppressions", header, rows, raw=frozenset(header))  # export_rows guards its text itself
