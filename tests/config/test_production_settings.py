"""Production settings: behind a TLS proxy the site redirects to HTTPS (probes excepted), sends HSTS and secure
cookies, `check --deploy` has nothing to say; the admin login locks after repeated failures."""

from __future__ import annotations

import os
import re
import secrets
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
from django.contrib.auth import get_user_model

from tests.apprunner import READY_TIMEOUT

ROOT = Path(__file__).resolve().parents[2]


def production_env(tmp_path: Path) -> dict[str, str]:
    environment = {k: v for k, v in os.environ.items() if k not in {"DATABASE_URL", "CELERY_BROKER_URL", "REDIS_URL"}}
    return {
        **environment,
        "VAR_DIR": str(tmp_path / "var"),
        "DEBUG": "false",
        "SECRET_KEY": secrets.token_urlsafe(60),
        "ALLOWED_HOSTS": "receipts.example.com",
        "BEHIND_TLS_PROXY": "true",
        "WEBHOOK_BASIC_AUTH": "provider:" + secrets.token_urlsafe(16),
    }


def test_the_deploy_check_is_clean_behind_a_tls_proxy(tmp_path: Path) -> None:
    done = subprocess.run(
        [sys.executable, "manage.py", "check", "--deploy"],
        cwd=ROOT,
        env=production_env(tmp_path),
        capture_output=True,
        text=True,
        timeout=READY_TIMEOUT,
    )

    assert done.returncode == 0, done.stderr
    assert "System check identified no issues" in done.stdout, done.stdout + done.stderr


def test_behind_a_tls_proxy_everything_but_the_probes_goes_https(tmp_path: Path) -> None:
    code = (
        "import json, django; django.setup(); from django.conf import settings as s; "
        "print(json.dumps([s.SECURE_SSL_REDIRECT, s.SESSION_COOKIE_SECURE, s.CSRF_COOKIE_SECURE, "
        "s.SECURE_HSTS_SECONDS, s.SECURE_REDIRECT_EXEMPT]))"
    )
    env = {**production_env(tmp_path), "DJANGO_SETTINGS_MODULE": "config.settings"}
    done = subprocess.run(
        [sys.executable, "-c", code], cwd=ROOT, env=env, capture_output=True, text=True, timeout=READY_TIMEOUT
    )

    assert done.returncode == 0, done.stderr
    redirect, session, csrf, hsts, exempt = __import__("json").loads(done.stdout.strip().splitlines()[-1])
    assert (redirect, session, csrf, hsts) == (True, True, True, 31_536_000)
    assert all(any(re.match(pattern, path) for pattern in exempt) for path in ("healthz", "readyz", "metrics"))


@pytest.mark.django_db
def test_the_admin_login_locks_after_five_failures(client: Any) -> None:
    get_user_model().objects.create_superuser("operator", "ops@example.com", "right-password-123")
    answers = [client.post("/admin/login/", {"username": "operator", "password": "wrong"}) for _ in range(5)]

    # The login form again, with its error, four times; the fifth failure locks the pair.
    assert [a.status_code for a in answers] == [200, 200, 200, 200, 429]
    locked = client.post("/admin/login/", {"username": "operator", "password": "right-password-123"})

    assert locked.status_code == 429
    assert "_auth_user_id" not in client.session
