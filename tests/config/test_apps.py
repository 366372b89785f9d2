"""What the project's own app does at start-up, and what a deployment can leave out."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

from tests.apprunner import READY_TIMEOUT

ROOT = Path(__file__).resolve().parents[2]


def run(code_or_args: list[str], tmp_path: Path, **env: str) -> subprocess.CompletedProcess[str]:
    environment = {k: v for k, v in os.environ.items() if k not in {"DATABASE_URL", "CELERY_BROKER_URL", "REDIS_URL"}}
    environment.update({"VAR_DIR": str(tmp_path / "var"), "SECRET_KEY": "test-only", **env})
    return subprocess.run(
        [sys.executable, *code_or_args],
        cwd=ROOT,
        env=environment,
        capture_output=True,
        text=True,
        timeout=READY_TIMEOUT,
    )


def test_importing_the_settings_writes_nothing(tmp_path: Path) -> None:
    done = run(["-c", "import config.settings"], tmp_path)

    assert done.returncode == 0, done.stderr
    assert not (tmp_path / "var").exists()


def test_the_runtime_folders_are_made_once_django_is_set_up(tmp_path: Path) -> None:
    done = run(["manage.py", "check"], tmp_path)

    assert done.returncode == 0, done.stderr
    var = tmp_path / "var"
    assert {p.relative_to(var).as_posix() for p in var.rglob("*") if p.is_dir()} >= {
        "broker",
        "broker/queue",
        "broker/control",
        "static",
    }


def test_a_deployment_without_the_simulator_starts_and_has_no_simulator_commands(tmp_path: Path) -> None:
    checked = run(["manage.py", "check"], tmp_path, INSTALL_SIMULATOR="false")
    simulator = run(["manage.py", "simulate_providers", "--help"], tmp_path, INSTALL_SIMULATOR="false")
    product = run(["manage.py", "create_api_client", "--help"], tmp_path, INSTALL_SIMULATOR="false")

    assert checked.returncode == 0, checked.stderr
    assert simulator.returncode != 0 and "Unknown command: 'simulate_providers'" in simulator.stderr
    assert product.returncode == 0, product.stderr


def test_with_the_simulator_installed_its_commands_are_there(tmp_path: Path) -> None:
    done = run(["manage.py", "simulate_providers", "--help"], tmp_path)

    assert done.returncode == 0, done.stderr


def test_the_tests_keep_their_runtime_files_out_of_the_var_that_make_run_uses() -> None:
    """A developer's `make run` must not meet the drain tasks and limits the tests left behind."""
    from django.conf import settings

    assert Path(settings.VAR_DIR).resolve() != (ROOT / "var").resolve()
    assert (
        Path(settings.CELERY_BROKER_TRANSPORT_OPTIONS.get("data_folder_in", settings.VAR_DIR))
        .resolve()
        .is_relative_to(Path(settings.VAR_DIR).resolve())
    )
