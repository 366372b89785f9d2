from django.apps import AppConfig


class CampaignsConfig(AppConfig):
    name = "campaigns"
    default_auto_field = "django.db.models.BigAutoField"

    def ready(self) -> None:
        # Imported once the apps are ready: these modules import models, which cannot load before ready().
        from campaigns import erasure
        from receipts.models import Erasure
        from receipts.personal import erasing

        erasing.connect(erasure.erase, sender=Erasure, dispatch_uid="campaigns.erasure")
