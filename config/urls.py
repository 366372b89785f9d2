from django.contrib import admin
from django.http import HttpRequest, HttpResponse, JsonResponse
from django.urls import include, path
from django.views.defaults import page_not_found
from django.views.generic import RedirectView
from drf_spectacular.views import SpectacularAPIView, SpectacularSwaggerView

from config import dashboard, health, metrics
from receipts.admin import provider_limits

# Under /api/ and /webhooks/ a missing page answers in the API's error shape, elsewhere with Django's page.
handler404 = "config.urls.not_found"


def not_found(request: HttpRequest, exception: Exception) -> HttpResponse:
    if request.path.startswith(("/api/", "/webhooks/")):
        return JsonResponse({"error": "not found", "detail": {"path": request.path}}, status=404)
    return page_not_found(request, exception)


admin.site.site_header = "Delivery receipts"
admin.site.site_title = "Delivery receipts"
admin.site.index_title = "Operations"
admin.site.site_url = "/admin/dashboard/"  # "View site" leads to the dashboard
# No app list down the left of every page: it repeats the index and took ~300 px from the lists, which then hid
# columns in a sideways-scrolling box at 1440 px (the index, the breadcrumbs and the dashboard lead everywhere).
admin.site.enable_nav_sidebar = False

urlpatterns = [
    path("", RedirectView.as_view(url="/admin/dashboard/", permanent=False)),
    path("admin/dashboard/", dashboard.dashboard, name="dashboard"),
    path("admin/provider-limits/", provider_limits.provider_limits, name="provider-limits"),
    path("admin/", admin.site.urls),
    path("webhooks/", include("receipts.webhooks")),
    path("api/v1/", include("receipts.api.urls")),
    path("api/v1/", include("crm_sync.urls")),
    path("api/v1/", include("campaigns.urls")),
    path("api/schema/", SpectacularAPIView.as_view(), name="schema"),
    path("api/docs/", SpectacularSwaggerView.as_view(url_name="schema"), name="api-docs"),
    path("healthz", health.healthz, name="healthz"),
    path("readyz", health.readyz, name="readyz"),
    path("metrics", metrics.metrics, name="metrics"),
]
