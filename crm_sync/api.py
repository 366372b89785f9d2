"""The change feed: the CRM pulls every outbox change, in order, from a cursor it keeps.

``GET /api/v1/changes/?after=<cursor>`` answers changes after the cursor in feed-position order, and ``next``,
the cursor to ask from next time. A position is given only to a committed change, one numbering at a time
(crm_sync/feed.py), so a writer that commits late gets a later position and never lands behind a cursor a reader
has already passed, and no other transaction on the server holds the feed back. See docs/design.md, "Change
feed without gaps".
"""

from __future__ import annotations

import re
from typing import Any

from django.db.models import F, QuerySet
from drf_spectacular.utils import OpenApiExample, OpenApiParameter, extend_schema
from rest_framework import serializers
from rest_framework.exceptions import ValidationError
from rest_framework.generics import GenericAPIView
from rest_framework.request import Request
from rest_framework.response import Response

from crm_sync import feed as positions
from crm_sync.models import OutboxMessage
from receipts.db import check_text
from receipts.events import Kind

DEFAULT_PAGE_SIZE = 100
MAX_PAGE_SIZE = 1000
# `<position>`; before 0006 the feed gave `<txid>.<id>`, still read. 18 digits fit a bigint.
CURSOR_PATTERN = r"^([0-9]{1,18})(?:\.([0-9]{1,18}))?$"
CURSOR = re.compile(CURSOR_PATTERN)
NO_NUL = "^[^\\u0000]*$"  # text columns cannot hold NUL; the API answers 400 to one
KINDS = list(Kind.ALL)
SINGLE_VALUED = ("after", "page_size", "crm_record_id")  # `kind` repeats


class ChangeSerializer(serializers.ModelSerializer):
    cursor = serializers.CharField(
        source="position", read_only=True, help_text="Ask `?after=` this to continue after this change."
    )
    delivery_state = serializers.CharField(source="state", read_only=True, help_text="Where the push relay is.")

    class Meta:
        model = OutboxMessage
        fields = [
            "cursor",
            "idempotency_key",
            "kind",
            "crm_record_id",
            "message_id",
            "occurred_at",
            "created_at",
            "payload",
            "delivery_state",
        ]
        read_only_fields = fields


class ChangePageSerializer(serializers.Serializer):
    results = ChangeSerializer(many=True)
    next = serializers.CharField(help_text="The cursor to pass as `after` next time (the same position when empty).")
    has_more = serializers.BooleanField(help_text="More changes are ready now: ask again at once.")


FEED_EXAMPLE = OpenApiExample(
    "A page of changes",
    value={
        "results": [
            {
                "cursor": "1031",
                "idempotency_key": "chg_5f0c1a2b3c4d4e5f8a9b0c1d2e3f4a5b",
                "kind": "status_changed",
                "crm_record_id": "003XX000004TmiQ",
                "message_id": 812,
                "occurred_at": "2026-11-20T10:00:05.120000Z",
                "created_at": "2026-11-20T10:00:05.121000Z",
                "payload": {
                    "message_id": 812,
                    "provider": "genesys_sms",
                    "provider_message_id": "4f9c2b1e",
                    "channel": "sms",
                    "status": "delivered",
                    "previous_status": "sent",
                    "status_at": "2026-11-20T10:00:04Z",
                    "failure_category": "",
                    "needs_review": False,
                    "review_reason": "",
                    "crm_record_id": "003XX000004TmiQ",
                },
                "delivery_state": "sent",
            }
        ],
        "next": "1031",
        "has_more": False,
    },
    response_only=True,
)


def parse_cursor(value: str) -> int:
    """The feed position a cursor stands for (a cursor of the feed before 0006 is translated)."""
    match = CURSOR.fullmatch(value)
    if not match:
        raise ValidationError({"after": ["not a cursor from this feed (expected the `next` or a `cursor` value)"]})
    if match.group(2) is None:
        return int(match.group(1))
    return positions.legacy_position(int(match.group(1)), int(match.group(2)))


def plain_text(name: str, values: list[str]) -> list[str]:
    """Query values a text column can be compared with: no NUL, no lone surrogate."""
    try:
        for value in values:
            check_text(value, f"`{name}`")
    except ValueError as exc:
        raise ValidationError({name: [str(exc)]}) from exc
    return values


def page_size(value: str | None) -> int:
    if value is None:
        return DEFAULT_PAGE_SIZE
    try:
        size = int(value)
    except ValueError:
        size = 0
    if not 1 <= size <= MAX_PAGE_SIZE:
        raise ValidationError({"page_size": [f"must be a number from 1 to {MAX_PAGE_SIZE}"]})
    return size


def feed(after: int = 0) -> QuerySet[OutboxMessage]:
    """Every numbered change after the position ``after``, in feed order, each with its ``position``."""
    changes = OutboxMessage.objects.filter(feed__position__gt=after).annotate(position=F("feed__position"))
    return changes.order_by("feed__position")


class ChangeFeedView(GenericAPIView):
    serializer_class = ChangePageSerializer
    pagination_class = None
    filter_backends: list = []

    @extend_schema(
        summary="The change feed: every change for the CRM, in order, after a cursor",
        description=(
            "Start without `after`, then always pass the last answer's `next`. Every change appears once, in the "
            "order the CRM should apply it, and none is skipped when writers commit out of order. The feed keeps "
            "everything the outbox keeps (`CRM_OUTBOX_RETENTION_DAYS`), whatever the push relay did with it."
        ),
        parameters=[
            OpenApiParameter(
                "after",
                {"type": "string", "pattern": r"^([0-9]{1,18}(\.[0-9]{1,18})?)?$"},
                description="A cursor from a previous answer; none (or empty) starts at the beginning.",
            ),
            OpenApiParameter(
                "page_size",
                {"type": "integer", "minimum": 1, "maximum": MAX_PAGE_SIZE},
                description=f"1 to {MAX_PAGE_SIZE}, default 100.",
            ),
            OpenApiParameter(
                "crm_record_id",
                {"type": "string", "pattern": NO_NUL},
                description="Only this CRM record's changes.",
            ),
            OpenApiParameter(
                "kind",
                {"type": "array", "items": {"type": "string", "enum": KINDS}},
                explode=True,
                description="Only these kinds (repeatable).",
            ),
        ],
        responses=ChangePageSerializer,
        examples=[FEED_EXAMPLE],
    )
    def get(self, request: Request, *args: Any, **kwargs: Any) -> Response:
        if twice := [name for name in SINGLE_VALUED if len(request.query_params.getlist(name)) > 1]:
            raise ValidationError({name: ["give it once"] for name in twice})
        after_text = request.query_params.get("after", "")
        size = page_size(request.query_params.get("page_size"))
        # Number what has committed since the last read first: a change is served at the first read after its
        # commit, whatever else runs on the server.
        backlog = positions.number() == positions.BATCH  # more may wait to be numbered
        after = parse_cursor(after_text) if after_text else 0
        changes = feed(after)
        if record := request.query_params.get("crm_record_id"):
            changes = changes.filter(crm_record_id=plain_text("crm_record_id", [record])[0])
        if kinds := request.query_params.getlist("kind"):
            if unknown := sorted(set(plain_text("kind", kinds)) - set(KINDS)):
                raise ValidationError(
                    {"kind": [f"not a kind of change: {len(unknown)} value(s); use {', '.join(KINDS)}"]}
                )
            changes = changes.filter(kind__in=kinds)
        page = list(changes[: size + 1])
        has_more = len(page) > size or backlog
        page = page[:size]
        next_cursor = str(page[-1].position if page else after)  # type: ignore[attr-defined]  # annotated by feed()
        body = {"results": ChangeSerializer(page, many=True).data, "next": next_cursor, "has_more": has_more}
        return Response(body)
