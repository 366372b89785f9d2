"""Beat's tasks that read across the apps: the alerts (config/alerts.py)."""

from __future__ import annotations

from celery import shared_task

from config import alerts


@shared_task(name="config.evaluate_alerts", time_limit=120, soft_time_limit=100)
def evaluate_alerts() -> dict[str, list[str]]:
    """Beat, every ALERT_INTERVAL: fire what is newly found, resolve what cleared, send the notices due."""
    return alerts.evaluate()
