from rest_framework.routers import SimpleRouter

from receipts.api import MessageViewSet
from receipts.suppression_api import SuppressionViewSet

router = SimpleRouter()
router.register("messages", MessageViewSet, basename="message")
router.register("suppressions", SuppressionViewSet, basename="suppression")

urlpatterns = router.urls
