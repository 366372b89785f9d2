"""Starts supervisord for `make run` and `make demo` with .env's settings in its environment.

The processes of config/supervisord/programs.conf take their settings from the environment (``${WEB_PORT:-8000}``
in their command lines, Caddy's ``{$WEB_PORT}``), not from .env as Django does. This reads .env (or ``ENV_FILE``)
the way config/settings.py does, without overwriting what is exported (the environment wins), then becomes
supervisord with the arguments given: every process sees the same settings.

Run: ``python config/supervise.py -c config/supervisord/run.conf``.
"""

from __future__ import annotations

import os
import sys
from pathlib import Path

import environ

ROOT = Path(__file__).resolve().parent.parent


def main(argv: list[str]) -> None:
    environ.Env.read_env(os.environ.get("ENV_FILE") or ROOT / ".env", overwrite=False)
    os.environ.setdefault("SUPERVISOR_PIDFILE", f"{os.environ.get('VAR_DIR') or 'var'}/supervisord.pid")
    supervisord = Path(sys.executable).parent / "supervisord"
    os.execv(supervisord, [str(supervisord), *argv])  # noqa: S606 - becomes supervisord, no shell wanted


if __name__ == "__main__":
    main(sys.argv[1:])
