from django.urls import path

from crm_sync.api import ChangeFeedView

urlpatterns = [
    path("changes/", ChangeFeedView.as_view(), name="change-feed"),
]
