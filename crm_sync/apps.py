from django.apps import AppConfig


class CrmSyncConfig(AppConfig):
    """The CRM outbox, its relay and adapters, and the change feed. Depends on receipts, never the reverse."""

    name = "crm_sync"
    verbose_name = "CRM sync"
    default_auto_field = "django.db.models.BigAutoField"

    def ready(self) -> None:
        # Imported once the apps are ready: these modules import models, which cannot load before ready().
        from crm_sync import (
            checks,  # noqa: F401 - registers the system checks
            erasure,
        )
        from crm_sync.actions import on_changes
        from receipts.events import DomainEvent, changes
        from receipts.models import Erasure
        from receipts.personal import erasing

        changes.connect(on_changes, sender=DomainEvent, dispatch_uid="crm_sync.outbox")
        erasing.connect(erasure.erase, sender=Erasure, dispatch_uid="crm_sync.erasure")
