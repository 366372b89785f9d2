"""An exported setting beats the one in .env, in every process `make run` starts (supervisord passes the
environment on as it is; the settings read .env without overwriting), and .env fills in what is not exported."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

from tests.apprunner import READY_TIMEOUT, ROOT

SHOW = (
    "import django; django.setup(); from django.conf import settings; "
    "print(settings.WEBHOOK_BASIC_AUTH, settings.CRM_BATCH_SIZE)"
)


def test_an_exported_setting_beats_dot_env_which_fills_in_the_rest(tmp_path: Path) -> None:
    dot_env = tmp_path / ".env"
    dot_env.write_text("WEBHOOK_BASIC_AUTH=from-dot-env:x\nCRM_BATCH_SIZE=77\nSECRET_KEY=from-dot-env\n")
    environment = {k: v for k, v in os.environ.items() if k not in {"WEBHOOK_BASIC_AUTH", "CRM_BATCH_SIZE"}}
    environment |= {
        "ENV_FILE": str(dot_env),
        "WEBHOOK_BASIC_AUTH": "exported:y",
        "DJANGO_SETTINGS_MODULE": "config.settings",
    }

    # As the programs of config/supervisord/programs.conf run: through bash, with the exported environment.
    shown = subprocess.run(
        ["bash", "-c", f'exec "{sys.executable}" -c "{SHOW}"'],
        cwd=ROOT,
        env=environment,
        capture_output=True,
        text=True,
        timeout=READY_TIMEOUT,
        check=True,
    )

    assert shown.stdout.split() == ["['exported:y']", "77"], shown.stdout + shown.stderr
