"""What every endpoint of the REST API shares: the error shape, cursor pagination that refuses forged cursors and
page sizes out of bounds, query filters that refuse what their schema refuses (an empty value where text is not
taken, one parameter given twice, a boolean that is neither), date filters that refuse offsets no database takes,
text fields that take text only, and a ModelSerializer whose schema says "" and null where the API sends them. (The
JSON parser is ``receipts.api.parsers``.)"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

import django_filters
from django import forms
from django.conf import settings
from django.core.exceptions import FieldDoesNotExist, RequestDataTooBig
from django.utils.dateparse import parse_datetime
from django_filters.rest_framework import DjangoFilterBackend
from drf_spectacular.extensions import OpenApiSerializerFieldExtension
from drf_spectacular.utils import extend_schema_field
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
    state (granian closed it mid-body, and the client got a 502). Caddy bounds the body (WEB_MAX_BODY)."""
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

    def get_page_size(self, request: Request) -> int | None:
        """The page size asked for, from 1 to 1000, else 400: DRF would answer a page of the default size to
        ``page_size=0``, ``=null`` or ``=5000`` as if it had been asked for."""
        given = request.query_params.getlist(self.page_size_query_param)
        if not given:
            return self.page_size
        value = given[0]
        if len(given) > 1 or not (value.isascii() and value.isdigit() and 1 <= int(value) <= self.max_page_size):
            raise exceptions.ValidationError({"page_size": [f"must be one number from 1 to {self.max_page_size}"]})
        return int(value)

    def get_schema_operation_parameters(self, view: Any) -> list[dict[str, Any]]:
        parameters = super().get_schema_operation_parameters(view)
        for parameter in parameters:
            if parameter["name"] == self.page_size_query_param:
                parameter["schema"] = {"type": "integer", "minimum": 1, "maximum": self.max_page_size}
        return parameters

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
            try:
                parsed = parse_datetime(value.strip()) if value.strip() else None
            except ValueError:  # the shape of a date that is none (day 0, year 0): Django raises, 500 before
                raise forms.ValidationError("Enter a date and time that exists.") from None
            if parsed is None and value.strip():
                raise forms.ValidationError("Enter an ISO 8601 date and time, such as 2026-11-20T10:00:00Z.")
            if parsed is not None and parsed.utcoffset() is not None:
                offset = parsed.utcoffset() or timedelta(0)
                if abs(offset.total_seconds()) > MAX_UTC_OFFSET:
                    raise forms.ValidationError("The UTC offset is out of range (at most 14:00 either way).")
                try:
                    parsed.astimezone(UTC)
                except OverflowError:  # 9999-12-31T23:00-14:00 is past the last day in UTC (500 before)
                    raise forms.ValidationError("In UTC this falls outside the years 1 to 9999.") from None
        return super().to_python(value)


# RFC 3339 as this API reads it: a UTC offset no wider than 14:00, seconds to the microsecond; a pattern cannot say
# how many days a month has.
DATE_TIME_PATTERN = (
    r"^(000[1-9]|00[1-9][0-9]|0[1-9][0-9]{2}|[1-9][0-9]{3})-(0[1-9]|1[0-2])-(0[1-9]|[12][0-9]|3[01])"
    r"T([01][0-9]|2[0-3]):[0-5][0-9]:[0-5][0-9](\.[0-9]{1,6})?(Z|[+-](0[0-9]|1[0-3]):[0-5][0-9]|[+-]14:00)$"
)
DATE_TIME = {"type": "string", "format": "date-time", "pattern": DATE_TIME_PATTERN}


@extend_schema_field(DATE_TIME)
class IsoDateTimeFilter(django_filters.IsoDateTimeFilter):
    field_class = OffsetDateTimeField


class StrictBooleanField(forms.Field):
    """true or false (1 or 0, any case), else 400: Django's NullBooleanField reads any other word as "not
    given", and the filter would then answer everything."""

    VALUES = {"true": True, "1": True, "false": False, "0": False}

    def to_python(self, value: Any) -> bool | None:
        if value in (None, ""):
            return None
        if isinstance(value, bool):
            return value
        if str(value).lower() not in self.VALUES:
            raise forms.ValidationError("Enter true or false.")
        return self.VALUES[str(value).lower()]


class BooleanFilter(django_filters.BooleanFilter):
    field_class = StrictBooleanField


class QueryFilterBackend(DjangoFilterBackend):
    """django-filter, as strict as the schema: a filter given twice that takes one value, or given empty where it
    takes no free text (a choice, a boolean, a date), answers 400 naming it; django-filter would read the last
    value, or no filter at all. Query parameters the API does not know are ignored, as DRF does."""

    def filter_queryset(self, request: Request, queryset: Any, view: Any) -> Any:
        filterset_class = self.get_filterset_class(view, queryset)
        if filterset_class is not None:
            refuse_ambiguous_query(request, filterset_class.base_filters)
        return super().filter_queryset(request, queryset, view)


def refuse_ambiguous_query(request: Request, filters: dict[str, django_filters.Filter]) -> None:
    problems: dict[str, list[str]] = {}
    for name, query_filter in filters.items():
        values = request.query_params.getlist(name)
        many = isinstance(query_filter, django_filters.MultipleChoiceFilter)
        if len(values) > 1 and not many:
            problems[name] = ["give it once"]
        elif "" in values and not isinstance(query_filter, django_filters.CharFilter):
            problems[name] = ["empty: give a value or leave the parameter out"]
    if problems:
        raise exceptions.ValidationError(problems)


# Not blank: at least one character str.strip() keeps. Python's whitespace listed one by one: a pattern's \s means
# ECMA-262's set to a client (it has \ufeff, lacks \x1c-\x1f and \x85), Python's to us. CI found "\x85".
NOT_BLANK = r"[^\t\n\x0b\x0c\r\x1c-\x20\x85\xa0\u1680\u2000-\u200a\u2028\u2029\u202f\u205f\u3000]"


class TextField(serializers.CharField):
    """A CharField that takes a JSON string only: DRF's turns 0 or 1.5 into "0" or "1.5", where the schema says
    string. Its schema says "not blank" (a pattern) when blank is refused: DRF trims the value before it checks."""

    def to_internal_value(self, data: Any) -> str:
        if not isinstance(data, str):
            self.fail("invalid")
        # The schema's maxLength counts the value as sent; DRF would count it trimmed and take 256 characters
        # that end in spaces (found by schemathesis in CI).
        if self.max_length is not None and len(data) > self.max_length:
            self.fail("max_length", max_length=self.max_length)
        return super().to_internal_value(data)


class TextFieldSchema(OpenApiSerializerFieldExtension):
    target_class = TextField

    def map_serializer_field(self, auto_schema: Any, direction: Any) -> dict[str, Any]:
        schema = auto_schema._map_serializer_field(self.target, direction, bypass_extensions=True)
        if not self.target.allow_blank:
            schema["pattern"] = NOT_BLANK
        return schema
