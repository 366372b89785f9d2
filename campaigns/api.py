"""``GET /api/v1/campaigns/``, ``GET /api/v1/campaigns/{id}/`` and ``GET /api/v1/campaigns/{id}/stats/``: the
campaigns and their delivery statistics, read from the delivery rollups (as fresh as ``ROLLUP_INTERVAL``)."""

from __future__ import annotations

from typing import Any

from django.db.models import QuerySet
from drf_spectacular.utils import extend_schema, extend_schema_field, extend_schema_view
from rest_framework import mixins, serializers, viewsets
from rest_framework.decorators import action
from rest_framework.request import Request
from rest_framework.response import Response

from campaigns.models import Campaign
from campaigns.stats import campaign_stats, totals_for


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
