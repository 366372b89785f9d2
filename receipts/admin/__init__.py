"""The operators' admin, one module per thing they work on. Importing the package registers every ModelAdmin
(Django's admin autodiscovery imports ``receipts.admin``)."""

from receipts.admin import alerts, erasures, messages, provider_limits, retries, review, suppressions

__all__ = ["alerts", "erasures", "messages", "provider_limits", "retries", "review", "suppressions"]
