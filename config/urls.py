from django.contrib import admin
from django.urls import include, path
from drf_spectacular.views import SpectacularAPIView, SpectacularSwaggerView

from config import health
from receipts import metrics
from receipts.admin import provider_limits

urlpatterns = [
    path("admin/provider-limits/", provider_limits.provider_limits, name="provider-limits"),
    path("admin/", admin.site.urls),
    path("webhooks/", include("receipts.webhooks")),
    path("api/v1/", include("receipts.api.urls")),
    path("api/v1/", include("crm_sync.urls")),
    path("api/schema/", SpectacularAPIView.as_view(), name="schema"),
    path("api/docs/", SpectacularSwaggerView.as_view(url_name="schema"), name="api-docs"),
    path("healthz", health.healthz, name="healthz"),
    path("readyz", health.readyz, name="readyz"),
    path("metrics", metrics.metrics, name="metrics"),
]
