"""The README's "Sending a campaign" commands, run as written (bash, curl) against the app: they start the
campaign they just made, whatever its id, not campaign 1."""

from __future__ import annotations

import os
import re
import shutil
import subprocess
from pathlib import Path
from typing import Any

import pytest

from campaigns.models import Campaign
from receipts.models import ApiClient
from tests.apprunner import READY_TIMEOUT

ROOT = Path(__file__).resolve().parents[2]

pytestmark = [
    pytest.mark.django_db(transaction=True),
    pytest.mark.skipif(shutil.which("curl") is None, reason="the README's commands use curl"),
]


def readme_block(heading: str) -> str:
    section = (ROOT / "README.md").read_text().split(f"## {heading}\n", 1)[1].split("\n## ", 1)[0]
    match = re.search(r"```sh\n(.*?)```", section, re.S)
    assert match, f"no sh block under {heading!r}"
    return match[1]


def test_the_readme_starts_the_campaign_it_made(live_server: Any, settings: Any) -> None:
    settings.GENESYS_SMS_SENDER = "+15559876543"
    settings.DEFAULT_PHONE_REGION = "US"
    earlier = Campaign.objects.create(name="an earlier one", channel="sms", provider="genesys_sms", body="hi")
    _, token = ApiClient.issue("readme", ["read", "write"])
    script = readme_block("Sending a campaign")
    assert "API=http://127.0.0.1:8000/api/v1;" in script
    script = script.replace("API=http://127.0.0.1:8000/api/v1;", f"API={live_server.url}/api/v1;")

    run = subprocess.run(
        ["bash", "-euo", "pipefail", "-c", script],
        cwd=ROOT,
        env={**os.environ, "TOKEN": token},
        capture_output=True,
        text=True,
        timeout=READY_TIMEOUT,
    )

    assert run.returncode == 0, run.stderr
    made = Campaign.objects.get(name="flu shots")
    assert made.pk != earlier.pk
    assert made.state == "running"
    assert Campaign.objects.get(pk=earlier.pk).state == "draft"
    assert '"state":"running"' in run.stdout.replace(" ", "")
