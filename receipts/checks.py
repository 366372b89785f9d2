"""Misconfiguration fails at start with a message that says what to set."""

from typing import Any

from django.conf import settings
from django.core.checks import Error, Tags, Warning, register
from django.core.exceptions import ImproperlyConfigured

from receipts.providers.generic import whsec_key

WEBHOOK_SECRETS = [
    "WEBHOOK_SECRET_GENESYS_CLOUD",
    "WEBHOOK_SECRET_GENESYS_SMS",
    "WEBHOOK_SECRET_WEBEX_CONNECT",
    "WEBHOOK_SECRET_GENERIC",
]


@register(Tags.security, deploy=False)
def check_secrets(app_configs: Any, **kwargs: Any) -> list:
    problems: list = []
    try:
        has_key = bool(settings.SECRET_KEY)
    except ImproperlyConfigured:  # Django refuses an empty key; say how to set one
        has_key = False
    if not has_key:
        problems.append(
            Error(
                "SECRET_KEY is not set.",
                hint="Set SECRET_KEY in the environment or .env (`make run` writes one on first start).",
                id="receipts.E001",
            )
        )
    if not settings.DEBUG and not settings.WEBHOOK_BASIC_AUTH:
        missing = [name for name in WEBHOOK_SECRETS if not getattr(settings, name)]
        if missing:
            problems.append(
                Warning(
                    f"No credentials for these webhooks, which will refuse every request: {', '.join(missing)}.",
                    hint="Set the secrets, or WEBHOOK_BASIC_AUTH=user:password for senders that cannot sign.",
                    id="receipts.W001",
                )
            )
    for entry in settings.WEBHOOK_BASIC_AUTH:
        if ":" not in entry:
            problems.append(Error("WEBHOOK_BASIC_AUTH entries must read user:password.", id="receipts.E002"))
    for secret in settings.WEBHOOK_SECRET_GENERIC:
        if not secret.startswith("whsec_") or whsec_key(secret) is None:
            why = "its key is not base64" if secret.startswith("whsec_") else "it does not start with whsec_"
            problems.append(
                Error(
                    f"WEBHOOK_SECRET_GENERIC must be a Standard Webhooks secret, whsec_ and a base64 key: {why}.",
                    id="receipts.E003",
                )
            )
    return problems
