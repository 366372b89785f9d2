"""The simulator reads the webhook secrets the app reads, so its pushes authenticate out of the box."""

from __future__ import annotations

from typing import Any

from simulator.config import SimConfig, secrets_from_settings


def test_secrets_default_to_the_first_entry_of_the_apps_settings(settings: Any) -> None:
    settings.WEBHOOK_SECRET_GENESYS_CLOUD = ["current-gc", "previous-gc"]
    settings.WEBHOOK_SECRET_GENESYS_SMS = ["sms-token"]
    settings.WEBHOOK_SECRET_WEBEX_CONNECT = []
    settings.WEBHOOK_BASIC_AUTH = ["user:pass", "old:pass"]

    secrets, basic = secrets_from_settings()

    assert secrets == {"genesys_cloud": "current-gc", "genesys_sms": "sms-token"}
    assert basic == "user:pass"


def test_webhook_urls_are_the_app_url_plus_the_webhook_path_unless_overridden() -> None:
    config = SimConfig(app_url="http://127.0.0.1:8000/", webhook_urls={"webex_connect": "http://127.0.0.1:9/x"})

    assert config.webhook_url("genesys_cloud") == "http://127.0.0.1:8000/webhooks/genesys-cloud/"
    assert config.webhook_url("genesys_sms") == "http://127.0.0.1:8000/webhooks/genesys-sms/"
    assert config.webhook_url("webex_connect") == "http://127.0.0.1:9/x"
