"""Every setting the environment can give is on the configuration page (docs/configuration.md), by its exact name."""

from __future__ import annotations

import re
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]


def environment_settings() -> set[str]:
    source = (ROOT / "config" / "settings.py").read_text()
    names = set(re.findall(r'env(?:\.[a-z]+)?\(\s*"([A-Z][A-Z0-9_]*)"', source))
    # Caddy reads {$NAME:default} in config/Caddyfile; the processes of `make run` take ${NAME:-default} in their
    # command lines.
    names |= set(re.findall(r"\{\$([A-Z][A-Z0-9_]*)", (ROOT / "config" / "Caddyfile").read_text()))
    for conf in (ROOT / "config" / "supervisord").glob("*.conf"):
        names |= set(re.findall(r"\$\{([A-Z][A-Z0-9_]*):-", conf.read_text()))
        names |= set(re.findall(r"%\(ENV_([A-Z][A-Z0-9_]*)\)s", conf.read_text()))
    return names


def test_every_environment_setting_is_documented_on_the_configuration_page() -> None:
    names = environment_settings()
    page = (ROOT / "docs" / "configuration.md").read_text()

    assert len(names) > 50  # the pattern still finds the settings
    assert {"DATABASE_URL", "INBOX_LINGER", "CONN_HEALTH_CHECKS", "POLL_NOT_FOUND_GRACE_MINUTES"} <= names
    assert {"WEB_READ_TIMEOUT", "WEB_PORT", "WORKER_CONCURRENCY", "SUPERVISOR_PIDFILE"} <= names
    assert sorted(name for name in names if f"`{name}`" not in page) == []
