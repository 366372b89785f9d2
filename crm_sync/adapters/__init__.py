"""CRM adapters: ``base`` (what the relay hands an adapter and gets back), ``generic`` (signed JSON to any URL),
``salesforce`` (sObject Collections upsert), ``field_map`` (which CRM field gets which value)."""

from __future__ import annotations

from django.conf import settings

from crm_sync.adapters.base import Adapter
from crm_sync.adapters.generic import GenericAdapter
from crm_sync.adapters.salesforce import SalesforceAdapter


def get_adapter(backend: str | None = None) -> Adapter | None:
    """The configured adapter, or None for ``CRM_BACKEND=none`` (the outbox is kept, nothing is sent)."""
    backend = backend or settings.CRM_BACKEND
    if backend == "generic":
        return GenericAdapter()
    if backend == "salesforce":
        return SalesforceAdapter()
    if backend == "none":
        return None
    raise ValueError(f"unknown CRM_BACKEND {backend!r} (none, generic, salesforce)")
