"""Webhook ingest: authenticate, check the format, store the raw body, answer. Nothing else happens here."""

from __future__ import annotations

import logging

from django.conf import settings
from django.core.exceptions import RequestDataTooBig
from django.views.decorators.csrf import csrf_exempt
from drf_spectacular.utils import OpenApiResponse, extend_schema, inline_serializer
from rest_framework import serializers
from rest_framework.request import Request
from rest_framework.response import Response
from rest_framework.views import APIView

from receipts import actions
from receipts.dispatch import request_drain
from receipts.normalized import MalformedReceipt
from receipts.providers import PROVIDERS, Unauthorized

log = logging.getLogger(__name__)

Accepted = inline_serializer(
    "WebhookAccepted", {"accepted": serializers.IntegerField(), "duplicates": serializers.IntegerField()}
)
Error = inline_serializer("WebhookError", {"error": serializers.CharField()})


class WebhookView(APIView):
    """POST a provider's receipt body as the provider sends it."""

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
    def post(self, request: Request) -> Response:
        django_request = request._request
        length = request.META.get("CONTENT_LENGTH") or "0"
        if length.isdigit() and int(length) > settings.WEBHOOK_MAX_BODY:
            return Response({"error": f"body over {settings.WEBHOOK_MAX_BODY} bytes"}, status=413)
        try:
            body = django_request.body
        except RequestDataTooBig:
            return Response({"error": f"body over {settings.WEBHOOK_MAX_BODY} bytes"}, status=413)
        provider = PROVIDERS[self.provider]
        try:
            provider.authenticate(django_request, body)
        except Unauthorized as exc:
            log.warning("webhook %s refused from %s: %s", self.provider, request.META.get("REMOTE_ADDR"), exc)
            return Response({"error": str(exc)}, status=401, headers={"WWW-Authenticate": 'Basic realm="webhooks"'})
        content_type = request.META.get("CONTENT_TYPE", "")
        try:
            result = actions.ingest(self.provider, body, content_type, request.META.get("REMOTE_ADDR"))
        except MalformedReceipt as exc:
            return Response({"error": str(exc)}, status=400)
        if result.accepted:
            request_drain()
        return Response({"accepted": result.accepted, "duplicates": result.duplicates})


def webhook(provider: str):
    return csrf_exempt(WebhookView.as_view(provider=provider))
