"""The REST API's routes under /api/v1/ (the CRM's change feed is crm_sync's, mounted beside them)."""

from rest_framework.routers import SimpleRouter

from receipts.api.messages import MessageViewSet
from receipts.api.suppressions import SuppressionViewSet

router = SimpleRouter()
router.register("messages", MessageViewSet, basename="message")
router.register("suppressions", SuppressionViewSet, basename="suppression")

urlpatterns = router.urls
