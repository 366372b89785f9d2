"""Webhook ingest: authenticate, check the format, store the raw body, answer. Nothing else happens here."""

from __future__ import annotations

import logging
import time
from collections.abc import Callable

from django.conf import settings
from django.core.exceptions import RequestDataTooBig
from django.core.handlers.exception import convert_exception_to_response
from django.core.handlers.wsgi import WSGIHandler
from django.db import InterfaceError, OperationalError, connection
from django.http import HttpRequest, HttpResponse, JsonResponse
from django.urls import path
from django.views.decorators.csrf import csrf_exempt
from drf_spectacular.utils import OpenApiResponse, extend_schema, inline_serializer
from rest_framework import serializers
from rest_framework.request import Request
from rest_framework.views import APIView

from receipts.actions import ingest
from receipts.kicks import request_drain
from receipts.metrics import WEBHOOK_ANSWER_SECONDS, WEBHOOK_ANSWERS
from receipts.normalized import MalformedReceipt
from receipts.providers.base import Unauthorized
from receipts.providers.registry import CAPABILITIES, PROVIDERS

log = logging.getLogger(__name__)

Accepted = inline_serializer(
    "WebhookAccepted",
    {
        "accepted": serializers.IntegerField(),
        "duplicates": serializers.IntegerField(),
        "ignored": serializers.IntegerField(
            required=False, help_text="Well-formed objects that are no receipt (open messaging messages): not stored."
        ),
    },
)
Error = inline_serializer("WebhookError", {"error": serializers.CharField()})
Ready = inline_serializer(
    "WebhookReady",
    {
        "status": serializers.ChoiceField(choices=["ready"]),
        "provider": serializers.CharField(help_text="The provider this URL takes receipts from."),
        "post": serializers.CharField(help_text="What to POST here."),
    },
)


def receive(request: HttpRequest, provider_name: str) -> JsonResponse:
    """Authenticate, check the format, store the raw body, answer: the whole of a webhook request.

    A plain Django view: DRF's request wrapping, content negotiation and rendering cost more than the rest of
    the request's Python together, and a webhook needs none of them (it parses its own body and always answers
    JSON). ``WebhookView`` below only documents the endpoint in the OpenAPI schema.
    """
    request.get_host()  # DisallowedHost (400) unless ALLOWED_HOSTS has it
    provider = PROVIDERS[provider_name]
    if not provider.offers_credentials(request):
        return refused(request, provider_name, Unauthorized("missing credentials"))
    length = request.META.get("CONTENT_LENGTH") or ""
    if not length and "chunked" in request.META.get("HTTP_TRANSFER_ENCODING", "").lower():
        error = "send the body with a Content-Length header; chunked bodies are not read"
        return JsonResponse({"error": error}, status=411)
    if length.isdigit() and int(length) > settings.WEBHOOK_MAX_BODY:
        return JsonResponse({"error": f"body over {settings.WEBHOOK_MAX_BODY} bytes"}, status=413)
    try:
        body = request.body
    except RequestDataTooBig:
        return JsonResponse({"error": f"body over {settings.WEBHOOK_MAX_BODY} bytes"}, status=413)
    try:
        provider.authenticate(request, body)
    except Unauthorized as exc:
        return refused(request, provider_name, exc)
    body, content_type = provider.received(request, body)
    try:
        result = ingest_once_more_on_a_dead_connection(provider_name, body, content_type, request)
    except MalformedReceipt as exc:
        return JsonResponse({"error": str(exc)}, status=400)
    if result.accepted:
        request_drain()
    answer = {"accepted": result.accepted, "duplicates": result.duplicates}
    if result.ignored:
        answer["ignored"] = result.ignored
    return JsonResponse(answer)


def refused(request: HttpRequest, provider_name: str, problem: Unauthorized) -> JsonResponse:
    log.warning("webhook %s refused from %s: %s", provider_name, request.META.get("REMOTE_ADDR"), problem)
    response = JsonResponse({"error": str(problem)}, status=401)
    response["WWW-Authenticate"] = 'Basic realm="webhooks"'
    return response


def ingest_once_more_on_a_dead_connection(
    provider_name: str, body: bytes, content_type: str, request: HttpRequest
) -> ingest.IngestResult:
    """A reused database connection the server has closed (a restart, an idle timeout) fails on its first
    statement, before anything is stored. Rather than answer 500 and wait for the provider's retry, open a fresh
    connection and try once more; a second failure is a real outage and propagates (500)."""
    remote_addr = request.META.get("REMOTE_ADDR")
    try:
        return ingest.ingest(provider_name, body, content_type, remote_addr)
    except (OperationalError, InterfaceError) as exc:
        log.warning("webhook %s: database connection lost (%s); retrying once", provider_name, type(exc).__name__)
        connection.close()
        return ingest.ingest(provider_name, body, content_type, remote_addr)


class WebhookView(APIView):
    """POST a provider's receipt body as the provider sends it.

    For the OpenAPI schema only: the URLs serve ``receive`` (see ``webhook``).
    """

    provider = ""
    authentication_classes: list = []
    permission_classes: list = []
    parser_classes: list = []

    @extend_schema(
        request={"application/json": dict, "application/x-www-form-urlencoded": dict},
        responses={
            200: Accepted,
            400: OpenApiResponse(Error, description="Malformed body; kept as a rejected inbox row"),
            401: OpenApiResponse(Error, description="Bad or missing credentials; nothing stored"),
            413: OpenApiResponse(Error, description="Body over WEBHOOK_MAX_BODY"),
        },
    )
    def post(self, request: Request) -> HttpResponse:
        return receive(request._request, self.provider)

    @extend_schema(
        summary="Is this URL ready? (HEAD too: Webex Connect saves a webhook only when HEAD answers 200)",
        description="Answers without credentials, and reads and stores nothing.",
        request=None,
        responses={200: OpenApiResponse(Ready, description="Ready; nothing is read or stored.")},
    )
    def get(self, request: Request) -> HttpResponse:
        return webhook(self.provider)(request._request)


class WebhookHandler(WSGIHandler):
    """Django's WSGI handler with no middleware, for the ``/webhooks/`` URLs (``config/wsgi.py`` routes them here).

    Sessions, CSRF, authentication, messages, clickjacking headers and static files are for browsers; a webhook
    uses none of them, and passing through the eight of them cost a fifth of a webhook's CPU. What stays Django's
    own: URL resolution, the request signals (database connection upkeep), and exceptions turned into a logged 500.
    ``receive`` checks the Host header against ALLOWED_HOSTS itself, as CommonMiddleware would.
    """

    def load_middleware(self, is_async: bool = False) -> None:
        # What BaseHandler.load_middleware builds from an empty MIDDLEWARE list.
        # Django's private attributes and _get_response are not in django-stubs.
        self._view_middleware: list[Callable[..., HttpResponse | None]] = []
        self._template_response_middleware: list[Callable[..., HttpResponse]] = []
        self._exception_middleware: list[Callable[..., HttpResponse | None]] = []
        self._middleware_chain = convert_exception_to_response(self._get_response)  # type: ignore[attr-defined]


def webhook(provider: str) -> Callable[[HttpRequest], HttpResponse]:
    @csrf_exempt
    def view(request: HttpRequest) -> HttpResponse:
        if request.method in ("GET", "HEAD"):
            # Webex Connect saves a webhook only when its URL answers HEAD with 200; nothing is read or stored.
            return JsonResponse({"status": "ready", "provider": provider, "post": "a receipt body"})
        if request.method != "POST":
            response = JsonResponse({"error": f"method {request.method} not allowed; POST a receipt"}, status=405)
            response["Allow"] = "POST, GET, HEAD"
            return response
        started = time.perf_counter()
        try:
            response = receive(request, provider)
        except Exception:
            WEBHOOK_ANSWERS.labels(provider, "500").inc()  # Django turns it into a logged 500
            raise
        finally:
            WEBHOOK_ANSWER_SECONDS.labels(provider).observe(time.perf_counter() - started)
        WEBHOOK_ANSWERS.labels(provider, str(response.status_code)).inc()
        return response

    # drf-spectacular finds API endpoints by the attributes DRF's as_view() sets; these make it document this
    # URL from WebhookView.
    view.cls = WebhookView  # type: ignore[attr-defined]
    view.initkwargs = {"provider": provider}  # type: ignore[attr-defined]
    return view


# One URL a provider, at the path its capabilities declare: /webhooks/genesys-cloud/, genesys-sms, webex-connect,
# generic.
urlpatterns = [
    path(f"{declared.webhook}/", webhook(name), name=f"webhook-{declared.webhook}")
    for name, declared in CAPABILITIES.items()
]
