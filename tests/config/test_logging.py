"""Logs say what happened, once: Celery's line per task sent, received and finished is off unless LOG_TASKS is
set (an idle `make run` printed 80 beat lines and as many task lines a minute), and LOG_FORMAT=json writes one
JSON object a line, addresses masked as in the plain format."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

from tests.apprunner import READY_TIMEOUT

ROOT = Path(__file__).resolve().parents[2]
SCRIPT = """
import logging, django
django.setup()
for name in ("celery.beat", "celery.worker.strategy", "celery.app.trace"):
    print(name, logging.getLevelName(logging.getLogger(name).getEffectiveLevel()))
logging.getLogger("receipts.test").warning("suppressed sms +15551234567 (unsubscribe)")
"""


def run(**env: str) -> subprocess.CompletedProcess:
    environment = {**os.environ, "DJANGO_SETTINGS_MODULE": "config.settings", "SECRET_KEY": "x", **env}
    return subprocess.run(
        [sys.executable, "-c", SCRIPT],
        cwd=ROOT,
        env=environment,
        capture_output=True,
        text=True,
        timeout=READY_TIMEOUT,
        check=True,
    )


def test_celery_says_nothing_per_task_unless_asked() -> None:
    quiet = run(LOG_TASKS="false").stdout.split("\n")
    assert quiet[:3] == ["celery.beat WARNING", "celery.worker.strategy WARNING", "celery.app.trace WARNING"]
    chatty = run(LOG_TASKS="true").stdout.split("\n")
    assert chatty[:3] == ["celery.beat INFO", "celery.worker.strategy INFO", "celery.app.trace INFO"]


def test_json_logs_are_one_object_a_line_with_addresses_masked() -> None:
    lines = [line for line in run(LOG_FORMAT="json").stderr.splitlines() if line.startswith("{")]
    record = json.loads(lines[-1])
    assert (record["level"], record["logger"]) == ("WARNING", "receipts.test")
    assert record["message"].startswith("suppressed sms ")
    assert "5551234567" not in record["message"]
    assert "time" in record
