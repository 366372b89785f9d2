"""The suppression list over the REST API: list, add, lift (audited, with a reason), and check in bulk."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import django_filters
from django.conf import settings
from django.db.models import QuerySet
from django.utils import timezone
from drf_spectacular.utils import (
    OpenApiExample,
    OpenApiParameter,
    extend_schema,
    extend_schema_field,
    extend_schema_view,
)
from rest_framework import mixins, serializers, status, viewsets
from rest_framework.decorators import action
from rest_framework.exceptions import NotFound, ValidationError
from rest_framework.request import Request
from rest_framework.response import Response

from receipts.actions import suppression
from receipts.addresses import normalize_address
from receipts.api.auth import HasScope
from receipts.api.support import NOT_BLANK, BooleanFilter, IsoDateTimeFilter, ModelSerializer, TextField
from receipts.models import ApiClient, Suppression, SuppressionChange, SuppressionReason, SuppressionSource
from receipts.status import Channel

if TYPE_CHECKING:
    from collections.abc import Sequence

    # drf-stubs' protocol for a permission object; composed permissions (A | B) are not BasePermission instances.
    from rest_framework.permissions import _SupportsHasPermission


class SuppressionChangeSerializer(ModelSerializer):
    class Meta:
        model = SuppressionChange
        fields = ["action", "at", "source", "actor", "note", "evidence"]


class SuppressionSerializer(ModelSerializer):
    active = serializers.SerializerMethodField()

    class Meta:
        model = Suppression
        fields = [
            "id",
            "channel",
            "address",
            "reason",
            "source",
            "active",
            "note",
            "evidence",
            "message",
            "created_at",
            "created_by",
            "expires_at",
            "lifted_at",
            "lifted_by",
            "lift_source",
            "lift_reason",
        ]
        read_only_fields = fields

    def get_active(self, obj: Suppression) -> bool:
        return obj.is_active()


class SuppressionDetailSerializer(SuppressionSerializer):
    history = SuppressionChangeSerializer(many=True, read_only=True)

    class Meta(SuppressionSerializer.Meta):
        fields = [*SuppressionSerializer.Meta.fields, "history"]
        read_only_fields = fields


@extend_schema_field(
    {
        "type": "string",
        "format": "date-time",
        "nullable": True,
        "description": "Later than now, with a UTC offset of at most 14:00; null: until lifted.",
    }
)
class FutureDateTimeField(serializers.DateTimeField):
    """A moment still to come. "Later than now" is no constraint a schema can state, and a pattern for the offset
    would have schemathesis draw its dates from the pattern (the year 0640) rather than the format."""


class AddSuppressionSerializer(serializers.Serializer):
    channel = serializers.ChoiceField(choices=Channel.choices)
    address = TextField(max_length=320, help_text="A phone number (sms) or an email address (email).")
    reason = serializers.ChoiceField(choices=SuppressionReason.choices, default=SuppressionReason.MANUAL)
    note = TextField(required=False, allow_blank=True, max_length=2000)
    expires_at = FutureDateTimeField(required=False, allow_null=True)

    def validate(self, attrs: dict[str, Any]) -> dict[str, Any]:
        try:
            normalize_address(attrs["channel"], attrs["address"])
        except ValueError as exc:
            raise ValidationError({"address": [str(exc)]}) from exc
        if attrs.get("expires_at") and attrs["expires_at"] <= timezone.now():
            raise ValidationError({"expires_at": ["must be in the future"]})
        return attrs


LIFT_REASON_MAX = 2000


class CheckRequestSerializer(serializers.Serializer):
    channel = serializers.ChoiceField(choices=Channel.choices)
    addresses = serializers.ListField(
        child=serializers.CharField(),
        min_length=1,
        max_length=settings.SUPPRESSION_CHECK_MAX,
        help_text="1 to SUPPRESSION_CHECK_MAX (10,000) addresses, each as typed: one that does not parse is reported.",
    )


class CheckResultSerializer(serializers.Serializer):
    address = serializers.CharField(help_text="As given.")
    normalized = serializers.CharField(allow_null=True)
    suppressed = serializers.BooleanField()
    reasons = serializers.ListField(child=serializers.CharField(), required=False)
    until = serializers.DateTimeField(required=False, allow_null=True, help_text="null: until lifted.")
    error = serializers.CharField(required=False, help_text="Not an address: do not send.")


class CheckResponseSerializer(serializers.Serializer):
    channel = serializers.CharField()
    checked = serializers.IntegerField()
    suppressed = serializers.IntegerField()
    invalid = serializers.IntegerField()
    results = CheckResultSerializer(many=True)


class SuppressionFilter(django_filters.FilterSet):
    channel = django_filters.ChoiceFilter(choices=Channel.choices)
    reason = django_filters.MultipleChoiceFilter(choices=SuppressionReason.choices)
    source = django_filters.ChoiceFilter(choices=SuppressionSource.choices)
    active = BooleanFilter(method="filter_active")
    address = django_filters.CharFilter(method="filter_address")
    created_after = IsoDateTimeFilter(field_name="created_at", lookup_expr="gt")

    class Meta:
        model = Suppression
        fields: list[str] = []

    def filter_active(self, queryset: QuerySet[Suppression], name: str, value: bool) -> QuerySet[Suppression]:
        active = Suppression.objects.active().values("pk")
        return queryset.filter(pk__in=active) if value else queryset.exclude(pk__in=active)

    def filter_address(self, queryset: QuerySet[Suppression], name: str, value: str) -> QuerySet[Suppression]:
        channel = self.data.get("channel") or ("email" if "@" in value else "sms")
        try:
            return queryset.filter(address=normalize_address(channel, value))
        except ValueError:
            return queryset.filter(address=value)


class CheckScope(HasScope):
    """A check only reads: the read scope is enough, although it is a POST (10,000 addresses fit no URL)."""

    def has_permission(self, request: Request, view: object) -> bool:
        client = request.auth
        return isinstance(client, ApiClient) and ApiClient.Scope.READ in client.scopes


def actor_of(request: Request) -> str:
    client = request.auth
    return f"api:{client.name}" if isinstance(client, ApiClient) else "api"


ADD_EXAMPLE = OpenApiExample(
    "Opt-out taken by phone",
    value={"channel": "sms", "address": "+15551234567", "reason": "unsubscribe", "note": "asked on a call"},
    request_only=True,
)
CHECK_EXAMPLE = OpenApiExample(
    "Before a campaign",
    value={"channel": "sms", "addresses": ["+15551234567", "(555) 765-4321"]},
    request_only=True,
)


@extend_schema_view(
    list=extend_schema(summary="List suppressions (cursor paginated, filterable)"),
    retrieve=extend_schema(summary="One suppression with its history", responses=SuppressionDetailSerializer),
    create=extend_schema(
        summary="Suppress an address (201 new, 200 when the same reason is already active)",
        request=AddSuppressionSerializer,
        responses={201: SuppressionDetailSerializer, 200: SuppressionDetailSerializer},
        examples=[ADD_EXAMPLE],
    ),
    destroy=extend_schema(
        summary="Lift a suppression (resubscribe); the reason is required and kept in the history",
        request=None,
        parameters=[
            OpenApiParameter(
                "reason",
                {"type": "string", "maxLength": LIFT_REASON_MAX, "pattern": NOT_BLANK},
                required=True,
                description='Why the address may be sent to again. (A JSON body {"reason": "..."} is taken too.)',
            )
        ],
        responses={200: SuppressionDetailSerializer},
    ),
)
class SuppressionViewSet(
    mixins.ListModelMixin,
    mixins.RetrieveModelMixin,
    mixins.CreateModelMixin,
    mixins.DestroyModelMixin,
    viewsets.GenericViewSet,
):
    filterset_class = SuppressionFilter
    # Any path segment reaches the view, which answers 404 in the error shape for an id that is not one.
    lookup_value_regex = "[^/]+"

    def get_queryset(self) -> QuerySet[Suppression]:
        queryset = Suppression.objects.all()
        if self.action == "retrieve":
            queryset = queryset.prefetch_related("history")
        return queryset

    def get_serializer_class(self) -> type[serializers.BaseSerializer]:
        if self.action == "retrieve":
            return SuppressionDetailSerializer
        if self.action == "create":
            return AddSuppressionSerializer
        if self.action == "check":
            return CheckRequestSerializer
        return SuppressionSerializer

    def get_permissions(self) -> Sequence[_SupportsHasPermission]:
        if self.action == "check":
            return [CheckScope()]
        return super().get_permissions()

    def create(self, request: Request, *args: Any, **kwargs: Any) -> Response:
        incoming = AddSuppressionSerializer(data=request.data)
        incoming.is_valid(raise_exception=True)
        data = incoming.validated_data
        row, created = suppression.suppress(
            data["channel"],
            data["address"],
            data["reason"],
            source=SuppressionSource.API,
            actor=actor_of(request),
            note=data.get("note", ""),
            expires_at=data.get("expires_at"),
            evidence={"api_client": actor_of(request)},
        )
        body = SuppressionDetailSerializer(Suppression.objects.prefetch_related("history").get(pk=row.pk)).data
        return Response(body, status=status.HTTP_201_CREATED if created else status.HTTP_200_OK)

    def destroy(self, request: Request, *args: Any, **kwargs: Any) -> Response:
        reason = request.query_params.get("reason") or (
            request.data.get("reason") if isinstance(request.data, dict) else None
        )
        if not isinstance(reason, str) or not reason.strip():
            raise ValidationError({"reason": ["a lift needs a reason (JSON body or ?reason=)"]})
        if len(reason) > LIFT_REASON_MAX:
            raise ValidationError({"reason": [f"at most {LIFT_REASON_MAX} characters"]})
        try:
            suppression.lift(int(kwargs["pk"]), reason=reason, source=SuppressionSource.API, actor=actor_of(request))
        except (Suppression.DoesNotExist, ValueError) as exc:
            raise NotFound("no such suppression") from exc
        except suppression.NotActive as exc:
            return Response({"error": str(exc), "detail": None}, status=status.HTTP_409_CONFLICT)
        row = Suppression.objects.prefetch_related("history").get(pk=kwargs["pk"])
        return Response(SuppressionDetailSerializer(row).data)

    @extend_schema(
        summary="Check up to 10,000 addresses of one channel against the list",
        request=CheckRequestSerializer,
        responses={200: CheckResponseSerializer},
        examples=[CHECK_EXAMPLE],
    )
    @action(detail=False, methods=["post"])
    def check(self, request: Request) -> Response:
        # Validated by hand: a serializer field per address costs more than the lookup itself.
        data = request.data if isinstance(request.data, dict) else {}
        channel, addresses = data.get("channel"), data.get("addresses")
        if channel not in Channel.values:
            raise ValidationError({"channel": [f"must be one of {', '.join(Channel.values)}"]})
        if not isinstance(addresses, list) or not addresses:
            raise ValidationError({"addresses": ["must be a non-empty list of addresses"]})
        if len(addresses) > settings.SUPPRESSION_CHECK_MAX:
            raise ValidationError({"addresses": [f"at most {settings.SUPPRESSION_CHECK_MAX} in one call"]})
        wrong = next((i for i, a in enumerate(addresses) if not isinstance(a, str)), None)
        if wrong is not None:
            raise ValidationError({"addresses": [f"item {wrong} is not a string"]})
        results = suppression.check(channel, addresses)
        return Response(
            {
                "channel": channel,
                "checked": len(results),
                "suppressed": sum(1 for r in results if r["suppressed"]),
                "invalid": sum(1 for r in results if r["normalized"] is None),
                "results": results,
            }
        )
