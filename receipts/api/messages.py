"""The REST API the CRM and senders call: register messages, read them with their timelines."""

from __future__ import annotations

from typing import Any

import django_filters
from django.db.models import QuerySet
from drf_spectacular.utils import OpenApiExample, extend_schema, extend_schema_field, extend_schema_view
from rest_framework import mixins, serializers, status, viewsets
from rest_framework.exceptions import ValidationError
from rest_framework.request import Request
from rest_framework.response import Response

from receipts.actions.messages import campaign_id_named, register_message
from receipts.addresses import normalize_address
from receipts.api.support import BooleanFilter, IsoDateTimeFilter, ModelSerializer, TextField
from receipts.db import snapshot
from receipts.models import Message, MessageEvent, Priority
from receipts.status import Channel, Provider, ReviewReason, Status


class MessageEventSerializer(ModelSerializer):
    class Meta:
        model = MessageEvent
        fields = [
            "id",
            "source",
            "provider_code",
            "status",
            "engagement",
            "failure_category",
            "retryable",
            "unmapped",
            "applied",
            "description",
            "details",
            "raw",
            "occurred_at",
            "received_at",
        ]


class MessageSerializer(ModelSerializer):
    campaign: serializers.SlugRelatedField[Any] = serializers.SlugRelatedField(slug_field="name", read_only=True)

    class Meta:
        model = Message
        fields = [
            "id",
            "channel",
            "provider",
            "provider_message_id",
            "to",
            "status",
            "status_at",
            "assumed",
            "needs_review",
            "review_reason",
            "failure_category",
            "retryable",
            "provider_code",
            "crm_record_id",
            "campaign",
            "priority",
            "conversation_id",
            "correlation_id",
            "metadata",
            "read_count",
            "click_count",
            "first_read_at",
            "complained_at",
            "unsubscribed_at",
            "confirmed_at",
            "confirmation",
            "created_at",
            "updated_at",
        ]
        read_only_fields = fields


class MessageDetailSerializer(MessageSerializer):
    events = MessageEventSerializer(many=True, read_only=True)

    class Meta(MessageSerializer.Meta):
        fields = [*MessageSerializer.Meta.fields, "events"]
        read_only_fields = fields


CONTENT_TEXT = {"type": "string", "maxLength": 100_000}


@extend_schema_field(
    {
        "type": "object",
        "properties": {"text": CONTENT_TEXT, "subject": CONTENT_TEXT, "from": CONTENT_TEXT},
        "additionalProperties": False,
    }
)
class ContentField(serializers.DictField):
    """What was sent: text, subject and from, nothing else (RegisterMessageSerializer.validate_content)."""


class RegisterMessageSerializer(serializers.Serializer):
    channel = serializers.ChoiceField(choices=Channel.choices)
    provider = serializers.ChoiceField(choices=Provider.choices)
    provider_message_id = TextField(max_length=255)
    to = TextField(max_length=320, help_text="A phone number (sms) or an email address (email).")
    crm_record_id = TextField(max_length=255, required=False, allow_blank=True)
    campaign = TextField(max_length=200, required=False, allow_blank=True)
    priority = serializers.ChoiceField(choices=Priority.choices, required=False)
    conversation_id = TextField(max_length=255, required=False, allow_blank=True)
    correlation_id = TextField(max_length=255, required=False, allow_blank=True)
    metadata = serializers.DictField(required=False)
    # What was sent ({"text", "subject", "from"}): without it a failed SMS cannot be sent again.
    content = ContentField(child=TextField(max_length=100_000, allow_blank=True, trim_whitespace=False), required=False)

    def validate_content(self, value: dict[str, str]) -> dict[str, str]:
        unknown = set(value) - {"text", "subject", "from"}
        if unknown:
            raise ValidationError(f"unknown content field(s): {', '.join(sorted(unknown))}; use text, subject, from")
        return value

    def validate(self, attrs: dict[str, Any]) -> dict[str, Any]:
        try:
            normalize_address(attrs["channel"], attrs["to"])
        except ValueError as exc:
            raise ValidationError({"to": [str(exc)]}) from exc
        return attrs


class MessageFilter(django_filters.FilterSet):
    # One column of the table itself: no join can repeat a row, so no DISTINCT (a sort of every match at 10 M).
    status = django_filters.MultipleChoiceFilter(choices=Status.choices, distinct=False)
    channel = django_filters.ChoiceFilter(choices=Channel.choices)
    provider = django_filters.ChoiceFilter(choices=Provider.choices)
    campaign = django_filters.CharFilter(method="filter_campaign", help_text="The campaign's name, exactly.")
    crm_record_id = django_filters.CharFilter()
    provider_message_id = django_filters.CharFilter()
    to = django_filters.CharFilter(method="filter_to")
    needs_review = BooleanFilter()
    review_reason = django_filters.ChoiceFilter(choices=ReviewReason.choices)
    updated_after = IsoDateTimeFilter(field_name="updated_at", lookup_expr="gt")

    class Meta:
        model = Message
        fields: list[str] = []

    def filter_campaign(self, queryset: QuerySet[Message], name: str, value: str) -> QuerySet[Message]:
        # The name is looked up first, so that the list is a range of the (campaign, id) index. Joined to the
        # campaigns table instead, PostgreSQL walked every message newest first looking for the campaign's.
        campaign_id = campaign_id_named(value)
        return queryset.filter(campaign_id=campaign_id) if campaign_id is not None else queryset.none()

    def filter_to(self, queryset: QuerySet[Message], name: str, value: str) -> QuerySet[Message]:
        channel = self.data.get("channel") or ("email" if "@" in value else "sms")
        try:
            return queryset.filter(to=normalize_address(channel, value))
        except ValueError:
            return queryset.filter(to=value)


REGISTER_EXAMPLE = OpenApiExample(
    "SMS reminder",
    value={
        "channel": "sms",
        "provider": "genesys_sms",
        "provider_message_id": "4f9c2b1e-7a0d-4c1e-9a51-2d8f3e6b7c10",
        "to": "+15551234567",
        "crm_record_id": "003XX000004TmiQ",
        "campaign": "appt-reminder-q3",
        "priority": "high",
    },
    request_only=True,
)


@extend_schema_view(
    list=extend_schema(summary="List messages (cursor paginated, filterable)"),
    retrieve=extend_schema(summary="One message with its receipt timeline", responses=MessageDetailSerializer),
    create=extend_schema(
        summary="Register a message sent elsewhere (idempotent on provider, provider_message_id, to)",
        request=RegisterMessageSerializer,
        responses={201: MessageSerializer, 200: MessageSerializer},
        examples=[REGISTER_EXAMPLE],
    ),
)
class MessageViewSet(
    mixins.ListModelMixin, mixins.RetrieveModelMixin, mixins.CreateModelMixin, viewsets.GenericViewSet
):
    filterset_class = MessageFilter
    # Any path segment reaches the view, which answers 404 in the error shape for an id that is not one.
    lookup_value_regex = "[^/]+"

    def get_queryset(self) -> QuerySet[Message]:
        queryset = Message.objects.select_related("campaign")
        if self.action == "retrieve":
            queryset = queryset.prefetch_related("events")
        return queryset

    def get_serializer_class(self) -> type[serializers.BaseSerializer]:
        if self.action == "retrieve":
            return MessageDetailSerializer
        if self.action == "create":
            return RegisterMessageSerializer
        return MessageSerializer

    def retrieve(self, request: Request, *args: Any, **kwargs: Any) -> Response:
        # The status and the timeline come from one snapshot, never from either side of a batch's commit.
        with snapshot():
            return super().retrieve(request, *args, **kwargs)

    def create(self, request: Request, *args: Any, **kwargs: Any) -> Response:
        incoming = RegisterMessageSerializer(data=request.data)
        incoming.is_valid(raise_exception=True)
        message, created = register_message(incoming.validated_data)
        body = MessageSerializer(message).data
        return Response(body, status=status.HTTP_201_CREATED if created else status.HTTP_200_OK)
