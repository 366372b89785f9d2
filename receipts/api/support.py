"""Pagination and error shape for the REST API (kept apart from the views DRF settings import them by)."""

from typing import Any

from rest_framework import pagination
from rest_framework.response import Response
from rest_framework.views import exception_handler as drf_exception_handler


def exception_handler(exc: Exception, context: dict[str, Any]) -> Response | None:
    """Errors answer ``{"error": "...", "detail": ...}`` so every failure names its problem the same way."""
    response = drf_exception_handler(exc, context)
    if response is not None:
        detail = response.data
        message = detail.get("detail") if isinstance(detail, dict) and "detail" in detail else "invalid request"
        response.data = {"error": str(message), "detail": detail}
    return response


class CursorPagination(pagination.CursorPagination):
    ordering = "-id"
    page_size_query_param = "page_size"
    max_page_size = 1000
