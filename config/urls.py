from django.contrib import admin
from django.urls import include, path
from drf_spectacular.views import SpectacularAPIView, SpectacularSwaggerView

from receipts import health, polling_views

urlpatterns = [
    path("admin/provider-limits/", polling_views.provider_limits, name="provider-limits"),
    path("admin/", admin.site.urls),
    path("webhooks/", include("receipts.webhook_urls")),
    path("api/v1/", include("receipts.api_urls")),
    path("api/v1/", include("crm_sync.urls")),
    path("api/schema/", SpectacularAPIView.as_view(), name="schema"),
    path("api/docs/", SpectacularSwaggerView.as_view(url_name="schema"), name="api-docs"),
    path("healthz", health.healthz, name="healthz"),
    path("readyz", health.readyz, name="readyz"),
    path("metrics", polling_views.metrics, name="metrics"),
]
