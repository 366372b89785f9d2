"""The campaigns' routes under /api/v1/."""

from rest_framework.routers import SimpleRouter

from campaigns.api import CampaignViewSet, SendViewSet

router = SimpleRouter()
router.register("campaigns", CampaignViewSet, basename="campaign")
router.register("sends", SendViewSet, basename="send")

urlpatterns = router.urls
