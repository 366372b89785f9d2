"""A busy database answers 503 with ``Retry-After``, never 500: SQLite's one writer lock held past its
busy_timeout (30 s) under load, or a PostgreSQL deadlock, serialization failure or lock wait. Nothing was
acknowledged, so the caller (a provider's webhook, the CRM, an operator) sends it again; providers retry a 503.

The API and the webhooks answer in the API's error shape, ``{"error": ..., "detail": null}``; the admin answers
a short page."""

from __future__ import annotations

import logging
from collections.abc import Callable

from django.http import HttpRequest, HttpResponse, JsonResponse

from receipts.db import database_busy

log = logging.getLogger(__name__)

RETRY_AFTER_SECONDS = 2


class DatabaseBusyMiddleware:
    def __init__(self, get_response: Callable[[HttpRequest], HttpResponse]) -> None:
        self.get_response = get_response

    def __call__(self, request: HttpRequest) -> HttpResponse:
        return self.get_response(request)

    def process_exception(self, request: HttpRequest, exception: Exception) -> HttpResponse | None:
        if not database_busy(exception):
            return None
        log.warning("database busy on %s %s: answered 503 (%s)", request.method, request.path, exception)
        response: HttpResponse
        if request.path.startswith("/admin/"):
            response = HttpResponse(
                "The database is busy. Try again in a moment.", status=503, content_type="text/plain"
            )
        else:
            response = JsonResponse({"error": "the database is busy; try again", "detail": None}, status=503)
        response["Retry-After"] = str(RETRY_AFTER_SECONDS)
        return response
