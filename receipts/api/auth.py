"""``Authorization: Token <key>`` for API clients; GET needs the read scope, anything else write."""

from __future__ import annotations

from datetime import timedelta

from django.utils import timezone
from drf_spectacular.extensions import OpenApiAuthenticationExtension
from rest_framework import authentication, exceptions, permissions
from rest_framework.request import Request

from receipts.models import ApiClient, hash_token

LAST_USED_RESOLUTION = timedelta(minutes=1)


class ApiClientTokenAuthentication(authentication.BaseAuthentication):
    keyword = "Token"

    def authenticate(self, request: Request) -> tuple[None, ApiClient] | None:
        scheme, _, token = request.headers.get("Authorization", "").partition(" ")
        if scheme != self.keyword:
            return None
        token = token.strip()
        if not token:
            raise exceptions.AuthenticationFailed("empty token")
        client = ApiClient.objects.filter(token_hash=hash_token(token)).first()
        if client is None or not client.is_active:
            raise exceptions.AuthenticationFailed("invalid or revoked token")
        now = timezone.now()
        if not client.last_used_at or now - client.last_used_at > LAST_USED_RESOLUTION:
            ApiClient.objects.filter(pk=client.pk).update(last_used_at=now)
        return None, client

    def authenticate_header(self, request: Request) -> str:
        return self.keyword


class HasScope(permissions.BasePermission):
    message = "this API client lacks the scope for this request"

    def has_permission(self, request: Request, view: object) -> bool:
        client = request.auth
        if not isinstance(client, ApiClient):
            return False
        needed = ApiClient.Scope.READ if request.method in permissions.SAFE_METHODS else ApiClient.Scope.WRITE
        return needed in client.scopes


class ApiClientTokenScheme(OpenApiAuthenticationExtension):
    target_class = ApiClientTokenAuthentication
    name = "ApiClientToken"

    def get_security_definition(self, auto_schema: object) -> dict:
        return {"type": "apiKey", "in": "header", "name": "Authorization", "description": "`Token <key>`"}
