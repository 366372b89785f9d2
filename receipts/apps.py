from django.apps import AppConfig
from django.db.models.signals import post_migrate


class ReceiptsConfig(AppConfig):
    name = "receipts"
    default_auto_field = "django.db.models.BigAutoField"

    def ready(self) -> None:
        # Imported once the apps are ready (Django's place for registering checks).
        from receipts import checks  # noqa: F401 - registers the system checks
        from receipts.tallies import recount_after_flush

        post_migrate.connect(recount_after_flush, sender=self)
