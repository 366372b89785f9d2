"""The WSGI entry point (gunicorn, granian): Django, with a shorter road for the webhooks."""

import os

from django.core.wsgi import get_wsgi_application

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "config.settings")
# The settings give the web process's database connections a statement timeout (WEB_STATEMENT_TIMEOUT).
os.environ.setdefault("RECEIPTS_PROCESS", "web")
django_application = get_wsgi_application()

from receipts.webhooks import WebhookHandler  # noqa: E402 - needs the apps loaded by get_wsgi_application

webhook_application = WebhookHandler()


def application(environ: dict, start_response):
    """``/webhooks/...`` to Django without the browser middleware; everything else to Django as configured."""
    if environ.get("PATH_INFO", "").startswith("/webhooks/"):
        return webhook_application(environ, start_response)
    return django_application(environ, start_response)
