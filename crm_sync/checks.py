"""CRM sync misconfiguration fails at start with a message that says what to set."""

from typing import Any

from django.conf import settings
from django.core.checks import Error, Warning, register

from crm_sync.adapters.field_map import field_map, validate

BACKENDS = ("none", "generic", "salesforce")


@register()
def check_crm_settings(app_configs: Any, **kwargs: Any) -> list:
    problems: list = []
    backend = settings.CRM_BACKEND
    if backend not in BACKENDS:
        problems.append(
            Error(f"CRM_BACKEND is {backend!r}.", hint="Use none, generic or salesforce.", id="crm_sync.E001")
        )
    if backend == "generic":
        if not settings.CRM_URL.startswith(("http://", "https://")):
            problems.append(Error("CRM_BACKEND=generic needs CRM_URL (http:// or https://).", id="crm_sync.E002"))
        if not settings.CRM_SIGNING_SECRET:
            problems.append(
                Error(
                    "CRM_BACKEND=generic needs CRM_SIGNING_SECRET: every batch is signed with it.",
                    hint="Set the same secret on the CRM side to check X-Signature-256.",
                    id="crm_sync.E003",
                )
            )
    if backend == "salesforce":
        missing = [
            name
            for name in ("SALESFORCE_TOKEN_URL", "SALESFORCE_CLIENT_ID", "SALESFORCE_CLIENT_SECRET")
            if not getattr(settings, name)
        ]
        if missing:
            problems.append(Error(f"CRM_BACKEND=salesforce needs {', '.join(missing)}.", id="crm_sync.E004"))
        if not 1 <= settings.SALESFORCE_BATCH_SIZE <= 200:
            problems.append(Error("SALESFORCE_BATCH_SIZE must be 1 to 200 (the API's limit).", id="crm_sync.E005"))
        for problem in validate(field_map()):
            problems.append(Error(problem, hint="See docs/crm-sync.md, field mapping.", id="crm_sync.E006"))
    if settings.CRM_MAX_ATTEMPTS < 1 or settings.CRM_BATCH_SIZE < 1:
        problems.append(Error("CRM_MAX_ATTEMPTS and CRM_BATCH_SIZE must be at least 1.", id="crm_sync.E007"))
    if backend != "none" and settings.CRM_RELAY_LEASE.total_seconds() < 2:
        problems.append(
            Warning(
                "CRM_RELAY_LEASE is under 2 s: the relay's heartbeat (every quarter lease) may not renew it in time "
                "on a busy database, and a second relay could then send a stream's later changes first.",
                id="crm_sync.W001",
            )
        )
    return problems
