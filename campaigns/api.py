"""``GET /api/v1/campaigns/``, ``GET /api/v1/campaigns/{id}/`` and ``GET /api/v1/campaigns/{id}/stats/``: the
campaigns and their delivery statistics, read from the delivery rollups (as fresh as ``ROLLUP_INTERVAL``).
``POST /api/v1/sends/``: one message sent now, once per ``Idempotency-Key`` (campaigns.dispatch)."""

from __future__ import annotations

import logging
import re
import zoneinfo
from typing import Any

import django_filters
from celery import current_app
from django.db import IntegrityError, models, transaction
from django.db.models import QuerySet
from drf_spectacular.utils import OpenApiParameter, extend_schema, extend_schema_field, extend_schema_view
from rest_framework import mixins, serializers, viewsets
from rest_framework.decorators import action
from rest_framework.exceptions import ValidationError
from rest_framework.request import Request
from rest_framework.response import Response

from campaigns import dispatch, lifecycle
from campaigns.contacts import ERASED, MAX_CONTACTS, import_contacts
from campaigns.models import SENDING_PROVIDER_CHOICES, Campaign, Contact, Send
from campaigns.stats import campaign_stats, totals_for
from receipts.actions.suppression import erased
from receipts.addresses import normalize_address
from receipts.api.parsers import ItemwiseJSONParser
from receipts.api.schema import EMAIL, PHONE
from receipts.api.support import TextField
from receipts.db import check_json
from receipts.models import Priority
from receipts.status import Channel


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


SENDING_PROVIDERS = SENDING_PROVIDER_CHOICES


class ProgressSerializer(serializers.Serializer):
    audience = serializers.IntegerField(help_text="contacts with an address on the channel, when it started")
    planned_contacts = serializers.IntegerField(help_text="contacts planned so far")
    planned = serializers.IntegerField(help_text="sends waiting their turn (schedule, quiet hours, the limits)")
    queued = serializers.IntegerField(help_text="sends a worker holds now")
    sent = serializers.IntegerField()
    suppressed = serializers.IntegerField(help_text="refused at send: the address is on the suppression list")
    failed = serializers.IntegerField(help_text="failed to send: refused by the provider, or a template field missing")
    unknown = serializers.IntegerField(help_text="may have been sent: for an operator to check")
    cancelled = serializers.IntegerField()


SENDING_FIELDS = lifecycle.SENDING_FIELDS


# A wall-clock time in the contact's own zone: no offset. OpenAPI's format "time" is RFC 3339's, which requires
# one ("21:00:00Z"), so the schema says this pattern instead, and the API refuses an offset it would ignore.
LOCAL_TIME = re.compile(r"([01][0-9]|2[0-3]):[0-5][0-9](:[0-5][0-9])?")


@extend_schema_field({"type": "string", "pattern": f"^{LOCAL_TIME.pattern}$", "example": "21:00"})
class LocalTimeField(serializers.TimeField):
    def to_internal_value(self, value: Any) -> Any:
        if not isinstance(value, str) or not LOCAL_TIME.fullmatch(value):
            self.fail("invalid", format="HH:MM or HH:MM:SS, no offset (the contact's local time)")
        return super().to_internal_value(value)

    def to_representation(self, value: Any) -> Any:
        return value.strftime("%H:%M:%S") if value is not None else None


# Every name ZoneInfo takes on this machine (the system's and the tzdata package's): the schema lists them.
TIME_ZONES = sorted(zoneinfo.available_timezones())
TIME_FIELDS = {**serializers.ModelSerializer.serializer_field_mapping, models.TimeField: LocalTimeField}


class CampaignSerializer(serializers.ModelSerializer):
    serializer_field_mapping = TIME_FIELDS
    totals = serializers.SerializerMethodField()
    progress = serializers.SerializerMethodField()

    class Meta:
        model = Campaign
        fields = [
            "id",
            "name",
            "created_at",
            *SENDING_FIELDS,
            "state",
            "state_reason",
            "started_at",
            "finished_at",
            "progress",
            "totals",
        ]
        read_only_fields = ["id", "created_at", "state", "state_reason", "started_at", "finished_at"]

    @extend_schema_field(TotalsSerializer)
    def get_totals(self, campaign: Campaign) -> dict[str, Any]:
        totals = self.context.get("totals")
        return totals[campaign.pk] if totals is not None else totals_for([campaign.pk])[campaign.pk]

    @extend_schema_field(ProgressSerializer(allow_null=True))
    def get_progress(self, campaign: Campaign) -> dict[str, int] | None:
        return lifecycle.progress(campaign) if campaign.sendable and campaign.state != Campaign.State.DRAFT else None


@extend_schema_field(
    {
        "type": "object",
        "description": "who gets the campaign: {} (every contact), crm_record_ids, or attributes to match; an "
        "attribute's name is a letter or _ then letters, digits or _ (at most 64)",
        "properties": {
            "crm_record_ids": {"type": "array", "items": {"type": "string", "minLength": 1}},
            "attributes": {
                "type": "object",
                "additionalProperties": {"anyOf": [{"type": "string"}, {"type": "number"}, {"type": "boolean"}]},
            },
        },
        "additionalProperties": False,
    }
)
class AudienceField(serializers.JSONField):
    """The audience as JSON; its content is checked with the rest of the campaign (lifecycle.problems)."""


class NewCampaignSerializer(serializers.ModelSerializer):
    """A campaign to send: checked here (sender allow-list, template, SMS length, time zone, audience), started
    with POST .../start/."""

    # Text takes a JSON string only, as the schema says (DRF's CharField turns 6178 into "6178").
    serializer_field_mapping = {**TIME_FIELDS, models.CharField: TextField, models.TextField: TextField}
    channel = serializers.ChoiceField(choices=Channel.choices)
    provider = serializers.ChoiceField(choices=SENDING_PROVIDERS)
    priority = serializers.ChoiceField(choices=Priority.choices, default=Priority.NORMAL)
    audience = AudienceField(required=False, default=dict)
    # Declared, so no unique validator: a name another campaign has is a conflict with what exists (409, see
    # save_named), not a bad request.
    name = TextField(max_length=200)
    body = TextField(
        help_text=Campaign._meta.get_field("body").help_text,
        error_messages={"blank": "the message needs a body", "required": "the message needs a body"},
    )
    time_zone = serializers.ChoiceField(
        choices=TIME_ZONES,
        required=False,
        help_text="an IANA name, for quiet hours, unless the contact's says",
        error_messages={"invalid_choice": "unknown time zone (use an IANA name such as Europe/Paris)"},
    )

    class Meta:
        model = Campaign
        fields = ["name", *SENDING_FIELDS]

    def validate(self, attrs: dict[str, Any]) -> dict[str, Any]:
        merged = {**(lifecycle.fields_of(self.instance) if self.instance else {}), **attrs}
        found = lifecycle.problems(merged)
        if found:
            raise ValidationError(found)
        check_json(attrs, "the body")
        return attrs


@extend_schema_field({"anyOf": [PHONE, EMAIL]})
class CampaignAddressField(TextField):
    """An address on the campaign's channel: a phone number for an sms campaign, an email address for an email
    one (which of the two only the campaign says, so the schema names both)."""


class TestSendSerializer(serializers.Serializer):
    to = CampaignAddressField(
        max_length=320, help_text="the address to send the test to: a phone number (sms) or an email address (email)"
    )
    contact = serializers.DictField(
        required=False, default=dict, help_text="values for the template's fields (else the contact at that address)"
    )


class ConflictSerializer(serializers.Serializer):
    error = serializers.CharField(help_text="why the campaign cannot do that in its state")
    detail = serializers.JSONField(allow_null=True)


STEP_ANSWERS = {200: CampaignSerializer, 409: ConflictSerializer}


@extend_schema_view(
    list=extend_schema(summary="List campaigns with their progress and delivery totals (cursor paginated)"),
    retrieve=extend_schema(summary="One campaign with its progress and delivery totals"),
    create=extend_schema(
        summary="Create a campaign (a draft): channel, provider, sender, template, audience, schedule",
        request=NewCampaignSerializer,
        responses={201: CampaignSerializer, 409: ConflictSerializer},
    ),
    partial_update=extend_schema(
        summary="Change a draft campaign", request=NewCampaignSerializer, responses=STEP_ANSWERS
    ),
)
class CampaignViewSet(
    mixins.ListModelMixin,
    mixins.RetrieveModelMixin,
    mixins.CreateModelMixin,
    mixins.UpdateModelMixin,
    viewsets.GenericViewSet,
):
    serializer_class = CampaignSerializer
    lookup_value_regex = "[^/]+"
    http_method_names = ["get", "post", "patch", "head", "options"]

    def get_queryset(self) -> QuerySet[Campaign]:
        return Campaign.objects.all()

    def get_serializer_class(self) -> type[serializers.BaseSerializer[Any]]:
        return NewCampaignSerializer if self.action in ("create", "partial_update") else CampaignSerializer

    def create(self, request: Request, *args: Any, **kwargs: Any) -> Response:
        incoming = NewCampaignSerializer(data=request.data)
        incoming.is_valid(raise_exception=True)
        campaign = save_named(incoming)
        if campaign is None:
            return conflict("another campaign has this name")
        return Response(CampaignSerializer(campaign).data, status=201)

    def partial_update(self, request: Request, *args: Any, **kwargs: Any) -> Response:
        campaign = self.get_object()
        if campaign.state != Campaign.State.DRAFT:
            return conflict(f"only a draft changes; this campaign is {campaign.state}")
        incoming = NewCampaignSerializer(campaign, data=request.data, partial=True)
        incoming.is_valid(raise_exception=True)
        saved = save_named(incoming)
        if saved is None:
            return conflict("another campaign has this name")
        return Response(CampaignSerializer(saved).data)

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

    @extend_schema(summary="Start a draft (plan, then send)", request=None, responses=STEP_ANSWERS)
    @action(detail=True, methods=["post"])
    def start(self, request: Request, pk: str | None = None) -> Response:
        return self.change(lambda c: lifecycle.start(c), kick=True)

    @extend_schema(summary="Pause a running campaign", request=None, responses=STEP_ANSWERS)
    @action(detail=True, methods=["post"])
    def pause(self, request: Request, pk: str | None = None) -> Response:
        who = getattr(request.auth, "name", "") or "an API client"
        return self.change(lambda c: lifecycle.pause(c, f"paused by {who}"))

    @extend_schema(summary="Resume a paused campaign", request=None, responses=STEP_ANSWERS)
    @action(detail=True, methods=["post"])
    def resume(self, request: Request, pk: str | None = None) -> Response:
        return self.change(lambda c: lifecycle.resume(c), kick=True)

    @extend_schema(summary="Cancel a campaign: what is still planned is not sent", request=None, responses=STEP_ANSWERS)
    @action(detail=True, methods=["post"])
    def cancel(self, request: Request, pk: str | None = None) -> Response:
        return self.change(lambda c: lifecycle.cancel(c))

    @extend_schema(
        summary="Send the campaign's message to one address now (a test; not counted in the campaign)",
        request=TestSendSerializer,
        responses={202: SendSerializer},
    )
    @action(detail=True, methods=["post"], url_path="test-send")
    def test_send(self, request: Request, pk: str | None = None) -> Response:
        campaign = self.get_object()
        incoming = TestSendSerializer(data=request.data)
        incoming.is_valid(raise_exception=True)
        try:
            send = lifecycle.test_send(campaign, incoming.validated_data["to"], incoming.validated_data["contact"])
        except (lifecycle.LifecycleError, ValueError) as exc:
            raise ValidationError({"to": [str(exc)]}) from exc
        transaction.on_commit(request_dispatch)
        return Response(SendSerializer(send).data, status=202)

    def change(self, step: Any, kick: bool = False) -> Response:
        campaign = self.get_object()
        try:
            step(campaign)
        except lifecycle.LifecycleError as exc:
            return conflict(str(exc))
        if kick:
            transaction.on_commit(request_planning)
        campaign.refresh_from_db()
        return Response(CampaignSerializer(campaign).data)


def save_named(incoming: NewCampaignSerializer) -> Campaign | None:
    """The campaign saved, or None when another campaign has its name (the unique constraint decides, so two
    requests racing for one name cannot both have it)."""
    try:
        with transaction.atomic():
            return incoming.save()
    except IntegrityError:
        name = incoming.validated_data.get("name")
        others = Campaign.objects.filter(name=name)
        if incoming.instance is not None:
            others = others.exclude(pk=incoming.instance.pk)
        if name is not None and others.exists():
            return None
        raise


def conflict(text: str) -> Response:
    return Response({"error": text, "detail": None}, status=409)


class SendContentSerializer(serializers.Serializer):
    text = TextField(max_length=4000)
    subject = TextField(max_length=500, required=False, allow_blank=True)


class NewSendSerializer(serializers.Serializer):
    channel = serializers.ChoiceField(choices=Channel.choices)
    provider = serializers.ChoiceField(choices=SENDING_PROVIDERS)
    to = TextField(max_length=320, help_text="A phone number (sms) or an email address (email).")
    content = SendContentSerializer()
    crm_record_id = TextField(max_length=255, required=False, allow_blank=True, default="")
    priority = serializers.ChoiceField(choices=Priority.choices, default=Priority.NORMAL)
    metadata = serializers.DictField(required=False, default=dict)
    sender = TextField(
        max_length=320,
        required=False,
        allow_blank=True,
        default="",
        help_text="On the send's channel: an email from-address (email), a number or sender id (sms); allowed for "
        "the provider (SENDER_ALLOW_LIST). Empty: the provider's configured one.",
    )
    sender_name = TextField(
        max_length=64, required=False, allow_blank=True, default="", help_text="Email only: the sender's display name."
    )

    def validate(self, attrs: dict[str, Any]) -> dict[str, Any]:
        try:
            address = normalize_address(attrs["channel"], attrs["to"])
        except ValueError as exc:
            raise ValidationError({"to": [str(exc)]}) from exc
        if erased(attrs["channel"], [address]):
            raise ValidationError({"to": [ERASED]})
        sender, name = attrs.pop("sender", ""), attrs.pop("sender_name", "")
        found: dict[str, list[str]] = {}
        for which, text in lifecycle.sender_problems(attrs["channel"], attrs["provider"], sender, name):
            found.setdefault(which, []).append(text)
        if found:
            raise ValidationError(found)
        attrs["content"] = {**attrs["content"], **lifecycle.identity(sender, name)}
        check_json(attrs, "the body")
        return attrs


IDEMPOTENCY_KEY_MAX = 200
# 1 to 200 printable characters (str.isprintable over what a header carries, Latin-1), none blank at either end
# (a server may trim a header value).
PRINTABLE = r"[^\x00-\x1f\x7f-\xa0\xad]"
OUTER = r"[^\x00-\x20\x7f-\xa0\xad]"
IDEMPOTENCY_KEY_PATTERN = rf"^{OUTER}({PRINTABLE}{{0,{IDEMPOTENCY_KEY_MAX - 2}}}{OUTER})?$"
IDEMPOTENCY_KEY = OpenApiParameter(
    "Idempotency-Key",
    {"type": "string", "minLength": 1, "maxLength": IDEMPOTENCY_KEY_MAX, "pattern": IDEMPOTENCY_KEY_PATTERN},
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
        if not key or len(key) > IDEMPOTENCY_KEY_MAX or not key.isprintable():
            raise ValidationError(
                {"Idempotency-Key": ["send a header Idempotency-Key of 1 to 200 printable characters"]}
            )
        incoming = NewSendSerializer(data=request.data)
        incoming.is_valid(raise_exception=True)
        try:
            send, created = dispatch.plan(incoming.validated_data, key, client=getattr(request.auth, "pk", None))
        except dispatch.IdempotencyConflict as exc:
            return Response({"error": str(exc), "detail": {"Idempotency-Key": key}}, status=409)
        if created:
            transaction.on_commit(request_dispatch)
        return Response(SendSerializer(send).data, status=202 if created else 200)


def request_dispatch() -> None:
    """Ask a worker to send now; beat sends what a lost request leaves."""
    kick("campaigns.dispatch_sends")


def request_planning() -> None:
    kick("campaigns.plan_campaigns")
    kick("campaigns.dispatch_sends")


def kick(task: str) -> None:
    try:
        current_app.send_task(task)
    except Exception:  # the broker is down: beat runs it soon anyway
        logging.getLogger(__name__).warning("%s not published; beat will run it", task, exc_info=True)


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

    def get_parsers(self) -> list[Any]:
        # Each contact is checked on its own (campaigns.contacts.cleaned): one bad character refuses its contact.
        posting = getattr(self, "request", None) is not None and self.request.method == "POST"
        return [ItemwiseJSONParser()] if posting else super().get_parsers()

    def create(self, request: Request, *args: Any, **kwargs: Any) -> Response:
        data = request.data
        if isinstance(data, dict):
            try:  # everything but the contacts themselves must store as it is
                check_json({k: v for k, v in data.items() if k != "contacts"}, "the body")
            except ValueError as exc:
                raise ValidationError({"error": str(exc)}) from exc
        incoming = ContactImportSerializer(data=data)
        incoming.is_valid(raise_exception=True)
        report = import_contacts(enumerate(incoming.validated_data["contacts"]))
        refused = [{"index": index, "error": error} for index, error in report.refused]
        return Response({"added": report.added, "updated": report.updated, "refused": refused})
