"""What every endpoint of the REST API shares: the error shape, cursor pagination that refuses forged cursors,
date filters that refuse offsets no database takes, and a ModelSerializer whose schema says "" and null where the
API sends them. (The JSON parser is ``receipts.api.parsers``.)"""

from __future__ import annotations

from datetime import datetime, timedelta
from typing import Any

import django_filters
from django import forms
from django.conf import settings
from django.core.exceptions import FieldDoesNotExist, RequestDataTooBig
from django.utils.dateparse import parse_datetime
from rest_framework import exceptions, pagination, serializers, status
from rest_framework.request import Request
from rest_framework.response import Response
from rest_framework.views import exception_handler as drf_exception_handler

from receipts.db import BIGINT_MAX, MAX_UTC_OFFSET


class ModelSerializer(serializers.ModelSerializer):
    """A ModelSerializer whose read-only fields say what they can hold: DRF drops ``allow_blank`` and
    ``allow_null`` from read-only fields, and the schema would then promise a choice (or an object) where the API
    sends "" (or null)."""

    def get_fields(self) -> dict[str, serializers.Field]:
        fields = super().get_fields()
        model: Any = self.Meta.model
        meta = model._meta
        for name, field in fields.items():
            if not field.read_only or not isinstance(field, serializers.ChoiceField | serializers.RelatedField):
                continue
            try:
                model_field = meta.get_field(field.source if field.source and field.source != "*" else name)
            except FieldDoesNotExist:
                continue
            if isinstance(field, serializers.ChoiceField) and getattr(model_field, "blank", False):
                field.allow_blank = True
            if getattr(model_field, "null", False):
                field.allow_null = True
        return fields


class PayloadTooLarge(exceptions.APIException):
    status_code = status.HTTP_413_REQUEST_ENTITY_TOO_LARGE
    default_detail = "request body too large"
    default_code = "too_large"


def exception_handler(exc: Exception, context: dict[str, Any]) -> Response | None:
    """Errors answer ``{"error": "...", "detail": ...}`` so every failure names its problem the same way."""
    if isinstance(exc, RequestDataTooBig):
        drain(context["request"])
        exc = PayloadTooLarge(f"request body over {settings.DATA_UPLOAD_MAX_MEMORY_SIZE} bytes")
    response = drf_exception_handler(exc, context)
    if response is not None:
        detail = response.data
        message = detail.get("detail") if isinstance(detail, dict) and "detail" in detail else "invalid request"
        response.data = {"error": str(message), "detail": detail}
    return response


def drain(request: Any) -> None:
    """Read the body that was refused for its size, so that the server answers 413 on a connection in a known
    state (granian behind the front closed it mid-body, and the client got a 502). The front bounds the body
    (FRONT_MAX_BODY)."""
    stream = request._request.META.get("wsgi.input")
    left = int(request._request.META.get("CONTENT_LENGTH") or 0)
    while stream is not None and left > 0:
        chunk = stream.read(min(left, 1 << 16))
        if not chunk:
            return
        left -= len(chunk)


class CursorPagination(pagination.CursorPagination):
    ordering = "-id"
    page_size_query_param = "page_size"
    max_page_size = 1000

    def decode_cursor(self, request: Request) -> pagination.Cursor | None:
        """DRF's cursor, checked: a position must be an id (the only ordering here), else 404 "Invalid cursor"
        as for any cursor DRF cannot read."""
        cursor = super().decode_cursor(request)
        if cursor is not None and cursor.position is not None:
            position = str(cursor.position)
            if not (position.isascii() and position.isdigit() and int(position) <= BIGINT_MAX):
                raise exceptions.NotFound(self.invalid_cursor_message)
        return cursor


class OffsetDateTimeField(forms.DateTimeField):
    """ISO 8601, with a UTC offset no wider than any zone uses (PostgreSQL refuses +16:00)."""

    def to_python(self, value: Any) -> datetime | None:
        if isinstance(value, str):
            parsed = parse_datetime(value.strip()) if value.strip() else None
            if parsed is None and value.strip():
                raise forms.ValidationError("Enter an ISO 8601 date and time, such as 2026-11-20T10:00:00Z.")
            if parsed is not None and parsed.utcoffset() is not None:
                offset = parsed.utcoffset() or timedelta(0)
                if abs(offset.total_seconds()) > MAX_UTC_OFFSET:
                    raise forms.ValidationError("The UTC offset is out of range (at most 14:00 either way).")
        return super().to_python(value)


class IsoDateTimeFilter(django_filters.IsoDateTimeFilter):
    field_class = OffsetDateTimeField
