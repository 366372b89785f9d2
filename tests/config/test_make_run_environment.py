"""Under `make run` the environment wins over .env, as docs/configuration.md says: honcho, which would load .env
and override exported values with it, is started without an env file."""

from __future__ import annotations

import os
import re
import shlex
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]


def honcho_flags() -> list[str]:
    match = re.search(r"^HONCHO_FLAGS := (.*)$", (ROOT / "Makefile").read_text(), re.MULTILINE)
    assert match, "the Makefile names the flags it starts honcho with"
    return shlex.split(match.group(1))


def test_an_exported_setting_beats_the_one_in_dot_env(tmp_path: Path) -> None:
    (tmp_path / ".env").write_text("WEBHOOK_BASIC_AUTH=from-dot-env:x\n")
    (tmp_path / "Procfile").write_text('show: echo "seen=$WEBHOOK_BASIC_AUTH"\n')
    honcho = Path(sys.executable).with_name("honcho")
    env = {**os.environ, "WEBHOOK_BASIC_AUTH": "exported:y"}

    done = subprocess.run(
        [str(honcho), *honcho_flags(), "-f", "Procfile", "start"],
        cwd=tmp_path,
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
    )

    assert "seen=exported:y" in done.stdout, done.stdout + done.stderr
