from django.apps import AppConfig


class ReceiptsConfig(AppConfig):
    name = "receipts"
    default_auto_field = "django.db.models.BigAutoField"

    def ready(self) -> None:
        from receipts import checks  # noqa: F401 - registers the system checks
