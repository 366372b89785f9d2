from django.urls import path

from receipts.webhooks import webhook

urlpatterns = [
    path("genesys-cloud/", webhook("genesys_cloud"), name="webhook-genesys-cloud"),
    path("genesys-sms/", webhook("genesys_sms"), name="webhook-genesys-sms"),
    path("webex-connect/", webhook("webex_connect"), name="webhook-webex-connect"),
    path("generic/", webhook("generic"), name="webhook-generic"),
]
