"""``GET /api/v1/campaigns/``, ``GET /api/v1/campaigns/{id}/`` and ``GET /api/v1/campaigns/{id}/stats/``: the
campaigns and their delivery statistics, read from the delivery rollups (as fresh as ``ROLLUP_INTERVAL``).
``POST /api/v1/sends/``: one message sent now, once per ``Idempotency-Key`` (campaigns.dispatch)."""

from __future__ import annotations

import logging
from typing import Any

import django_filters
from celery import current_app
from django.db import transaction
from django.db.models import QuerySet
from drf_spectacular.utils import OpenApiParameter, extend_schema, extend_schema_field, extend_schema_view
from rest_framework import mixins, serializers, viewsets
from rest_framework.decorators import action
from rest_framework.exceptions import ValidationError
from rest_framework.request import Request
from rest_framework.response import Response

from campaigns import dispatch
from campaigns.contacts import MAX_CONTACTS, import_contacts
from campaigns.models import Campaign, Contact, Send
from campaigns.stats import campaign_stats, totals_for
from receipts.addresses import normalize_address
from receipts.db import check_json
from receipts.models import Priority
from receipts.status import Channel, Provider


class TotalsSerializer(serializers.Serializer):
    messages = serializers.IntegerField()
    by_status = serializers.DictField(child=serializers.IntegerField(), help_text="messages per status")
    delivered = serializers.IntegerField()
    failed = serializers.IntegerField(help_text="failed, rejected, expired or bounced")
    pending = serializers.IntegerField(help_text="not final yet: pending, queued, sent or deferred")
    assumed = serializers.IntegerField(help_text="delivered assumed: no final receipt in time")
    needs_review = serializers.IntegerField()
    read = serializers.IntegerField(help_text="messages read at least once")
    clicked = serializers.IntegerField(help_text="messages clicked at least once")
    delivery_rate = serializers.FloatField(allow_null=True, help_text="delivered / final; null with none final")
    failure_rate = serializers.FloatField(allow_null=True, help_text="failed / final; null with none final")


class LatencySerializer(serializers.Serializer):
    p50 = serializers.FloatField(allow_null=True, help_text="seconds (a histogram bucket's upper bound)")
    p95 = serializers.FloatField(allow_null=True, help_text="seconds; Infinity past the last bucket (1 day)")


class FailuresSerializer(serializers.Serializer):
    by_category = serializers.DictField(child=serializers.IntegerField())
    top_codes = serializers.ListField(
        child=serializers.ListField(), help_text="[[provider, provider code], messages], most first"
    )


class DaySerializer(serializers.Serializer):
    day = serializers.DateField()
    messages = serializers.IntegerField()
    by_status = serializers.DictField(child=serializers.IntegerField())


class StatsSerializer(TotalsSerializer):
    latency_seconds = LatencySerializer(help_text="receipt latency, sent to final status")
    by_provider = serializers.DictField(child=TotalsSerializer())
    by_channel = serializers.DictField(child=TotalsSerializer())
    failures = FailuresSerializer()
    first_day = serializers.DateTimeField(allow_null=True)
    last_day = serializers.DateTimeField(allow_null=True)
    over_time = DaySerializer(many=True, help_text="messages per day of creation, by status")


class CampaignSerializer(serializers.ModelSerializer):
    totals = serializers.SerializerMethodField()

    class Meta:
        model = Campaign
        fields = ["id", "name", "created_at", "totals"]

    @extend_schema_field(TotalsSerializer)
    def get_totals(self, campaign: Campaign) -> dict[str, Any]:
        totals = self.context.get("totals")
        return totals[campaign.pk] if totals is not None else totals_for([campaign.pk])[campaign.pk]


@extend_schema_view(
    list=extend_schema(summary="List campaigns with their delivery totals (cursor paginated)"),
    retrieve=extend_schema(summary="One campaign with its delivery totals"),
)
class CampaignViewSet(mixins.ListModelMixin, mixins.RetrieveModelMixin, viewsets.GenericViewSet):
    serializer_class = CampaignSerializer
    lookup_value_regex = "[^/]+"

    def get_queryset(self) -> QuerySet[Campaign]:
        return Campaign.objects.all()

    def list(self, request: Request, *args: Any, **kwargs: Any) -> Response:
        page = self.paginate_queryset(self.filter_queryset(self.get_queryset()))
        assert page is not None  # the API always paginates
        context = {**self.get_serializer_context(), "totals": totals_for([c.pk for c in page])}
        return self.get_paginated_response(CampaignSerializer(page, many=True, context=context).data)

    @extend_schema(summary="A campaign's delivery statistics", responses=StatsSerializer)
    @action(detail=True, methods=["get"])
    def stats(self, request: Request, pk: str | None = None) -> Response:
        campaign = self.get_object()
        return Response(StatsSerializer(campaign_stats(campaign.pk)).data)


class SendSerializer(serializers.ModelSerializer):
    class Meta:
        model = Send
        fields = [
            "id",
            "state",
            "channel",
            "provider",
            "to",
            "content",
            "crm_record_id",
            "priority",
            "metadata",
            "provider_message_id",
            "message_id",
            "error",
            "created_at",
            "sent_at",
        ]
        read_only_fields = ["id", "state", "provider_message_id", "message_id", "error", "created_at", "sent_at"]


# Providers this product sends through; the generic JSON webhook only receives.
SENDING_PROVIDERS = [choice for choice in Provider.choices if choice[0] != Provider.GENERIC]


class SendContentSerializer(serializers.Serializer):
    text = serializers.CharField(max_length=4000)
    subject = serializers.CharField(max_length=500, required=False, allow_blank=True)


class NewSendSerializer(serializers.Serializer):
    channel = serializers.ChoiceField(choices=Channel.choices)
    provider = serializers.ChoiceField(choices=SENDING_PROVIDERS)
    to = serializers.CharField(max_length=320)
    content = SendContentSerializer()
    crm_record_id = serializers.CharField(max_length=255, required=False, allow_blank=True, default="")
    priority = serializers.ChoiceField(choices=Priority.choices, default=Priority.NORMAL)
    metadata = serializers.DictField(required=False, default=dict)

    def validate(self, attrs: dict[str, Any]) -> dict[str, Any]:
        try:
            normalize_address(attrs["channel"], attrs["to"])
        except ValueError as exc:
            raise ValidationError({"to": [str(exc)]}) from exc
        check_json(attrs, "the body")
        return attrs


IDEMPOTENCY_KEY = OpenApiParameter(
    "Idempotency-Key",
    str,
    OpenApiParameter.HEADER,
    required=True,
    description="Your key for this message (up to 200 characters): the same key twice sends once.",
)


@extend_schema_view(
    create=extend_schema(
        summary="Send one message now (a transactional reminder); the same Idempotency-Key sends once",
        parameters=[IDEMPOTENCY_KEY],
        request=NewSendSerializer,
        responses={202: SendSerializer, 200: SendSerializer, 409: None},
    ),
    retrieve=extend_schema(summary="One send: where it is (planned, sent, suppressed, failed, unknown)"),
)
class SendViewSet(mixins.CreateModelMixin, mixins.RetrieveModelMixin, viewsets.GenericViewSet):
    serializer_class = SendSerializer
    queryset = Send.objects.all()
    lookup_value_regex = "[^/]+"

    def create(self, request: Request, *args: Any, **kwargs: Any) -> Response:
        key = request.headers.get("Idempotency-Key", "")
        if not key or len(key) > 200 or not key.isprintable():
            raise ValidationError(
                {"Idempotency-Key": ["send a header Idempotency-Key of 1 to 200 printable characters"]}
            )
        incoming = NewSendSerializer(data=request.data)
        incoming.is_valid(raise_exception=True)
        try:
            send, created = dispatch.plan(incoming.validated_data, key)
        except dispatch.IdempotencyConflict as exc:
            return Response({"error": str(exc), "detail": {"Idempotency-Key": key}}, status=409)
        if created:
            transaction.on_commit(request_dispatch)
        return Response(SendSerializer(send).data, status=202 if created else 200)


def request_dispatch() -> None:
    """Ask a worker to send now; beat sends what a lost request leaves."""
    try:
        current_app.send_task("campaigns.dispatch_sends")
    except Exception:  # the broker is down: beat's dispatch finds it
        logging.getLogger(__name__).warning("dispatch request not published; beat will send", exc_info=True)


class ContactSerializer(serializers.ModelSerializer):
    class Meta:
        model = Contact
        fields = [
            "id",
            "crm_record_id",
            "phone",
            "email",
            "external_contact_id",
            "attributes",
            "created_at",
            "updated_at",
        ]
        read_only_fields = fields


class ContactImportSerializer(serializers.Serializer):
    contacts = serializers.ListField(
        child=serializers.DictField(),
        min_length=1,
        max_length=MAX_CONTACTS,
        help_text="Each: crm_record_id, and phone and/or email; optionally external_contact_id and attributes.",
    )


class ContactImportAnswer(serializers.Serializer):
    added = serializers.IntegerField()
    updated = serializers.IntegerField()
    refused = serializers.ListField(
        child=serializers.DictField(), help_text='[{"index": position in the list, "error": why}]'
    )


class ContactFilter(django_filters.FilterSet):
    crm_record_id = django_filters.CharFilter()
    phone = django_filters.CharFilter(method="by_address")
    email = django_filters.CharFilter(method="by_address")

    class Meta:
        model = Contact
        fields: list[str] = []

    def by_address(self, queryset: QuerySet[Contact], name: str, value: str) -> QuerySet[Contact]:
        try:
            return queryset.filter(**{name: normalize_address("sms" if name == "phone" else "email", value)})
        except ValueError:
            return queryset.none()


@extend_schema_view(
    list=extend_schema(summary="List contacts (cursor paginated; by crm_record_id, phone or email)"),
    create=extend_schema(
        summary="Add or update contacts (by crm_record_id); each one that cannot be stored is refused with why",
        request=ContactImportSerializer,
        responses={200: ContactImportAnswer},
    ),
)
class ContactViewSet(mixins.ListModelMixin, mixins.CreateModelMixin, viewsets.GenericViewSet):
    serializer_class = ContactSerializer
    queryset = Contact.objects.all()
    filterset_class = ContactFilter

    def create(self, request: Request, *args: Any, **kwargs: Any) -> Response:
        incoming = ContactImportSerializer(data=request.data)
        incoming.is_valid(raise_exception=True)
        report = import_contacts(enumerate(incoming.validated_data["contacts"]))
        refused = [{"index": index, "error": error} for index, error in report.refused]
        return Response({"added": report.added, "updated": report.updated, "refused": refused})
