"""The first `make run` writes .env with fresh secrets, once."""

from __future__ import annotations

from pathlib import Path

import pytest

from config import first_run


def test_first_run_writes_env_once_with_fresh_secrets(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    target = tmp_path / ".env"
    monkeypatch.setattr(first_run, "ENV_FILE", target)

    first_run.main()
    written = target.read_text()
    first_run.main()

    assert target.read_text() == written
    assert target.stat().st_mode & 0o777 == 0o600
    values = dict(line.split("=", 1) for line in written.splitlines() if "=" in line and not line.startswith("#"))
    assert len(values["SECRET_KEY"]) > 40
    assert values["WEBHOOK_SECRET_GENERIC"].startswith("whsec_")
    assert ":" in values["WEBHOOK_BASIC_AUTH"]


def test_first_run_protects_metrics_with_a_token(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    target = tmp_path / ".env"
    monkeypatch.setattr(first_run, "ENV_FILE", target)

    first_run.main()

    values = dict(line.split("=", 1) for line in target.read_text().splitlines() if "=" in line)
    assert len(values["METRICS_TOKEN"]) >= 32
