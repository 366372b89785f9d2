"""The campaigns' routes under /api/v1/."""

from rest_framework.routers import SimpleRouter

from campaigns.api import CampaignViewSet, ContactViewSet, SendViewSet

router = SimpleRouter()
router.register("campaigns", CampaignViewSet, basename="campaign")
router.register("sends", SendViewSet, basename="send")
router.register("contacts", ContactViewSet, basename="contact")

urlpatterns = router.urls
