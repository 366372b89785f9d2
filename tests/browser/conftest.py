"""The admin in a real browser: Debian's Chromium driven by Playwright, against the app served over HTTP by
pytest-django's live server. A test fails on a console error, a failed page load or any answer of 400 or more.

Chromium comes from the system (`apt-get install chromium`: the build `playwright install` downloads is not
reachable here). Without it these tests skip, unless REQUIRE_BROWSER is set (CI sets it), where a missing browser
fails them. SAVE_SCREENSHOTS=1 (`make screenshots`) writes each page the tests visit to docs/screenshots/.
"""

from __future__ import annotations

import os
import shutil
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

CHROMIUM = os.environ.get("CHROMIUM", "/usr/bin/chromium")
SCREENSHOTS = Path(__file__).resolve().parents[2] / "docs" / "screenshots"
PASSWORD = "browser-test-pass"


def chromium() -> str | None:
    return CHROMIUM if Path(CHROMIUM).exists() else shutil.which("chromium")


@pytest.fixture
def browser(monkeypatch: pytest.MonkeyPatch) -> Iterator[Any]:
    """Chromium for one test. Playwright's sync API runs an event loop under the test, which still talks to the
    database synchronously: DJANGO_ALLOW_ASYNC_UNSAFE is set while the browser lives, and only then (set for the
    whole session, it leaked into every subprocess, and `check --deploy` refuses it)."""
    executable = chromium()
    if executable is None:
        if os.environ.get("REQUIRE_BROWSER"):
            pytest.fail(f"REQUIRE_BROWSER is set and there is no Chromium at {CHROMIUM}: apt-get install chromium")
        pytest.skip("no Chromium on this machine (apt-get install chromium); CI runs these")
    from playwright.sync_api import sync_playwright

    monkeypatch.setenv("DJANGO_ALLOW_ASYNC_UNSAFE", "true")
    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=executable, headless=True, args=["--no-sandbox"])
        yield browser
        browser.close()


class Trouble:
    def __init__(self) -> None:
        self.problems: list[str] = []


@pytest.fixture
def page(browser: Any, live_server: Any, transactional_db: None) -> Iterator[Any]:
    """A logged-in operator's page at 1400 px; fails the test on a console error or an answer of 400 or more (a
    missing stylesheet or icon included)."""
    from django.contrib.auth import get_user_model

    get_user_model().objects.create_superuser("operator", password=PASSWORD)
    context = browser.new_context(viewport={"width": 1400, "height": 900}, base_url=live_server.url)
    page = context.new_page()
    trouble = Trouble()
    page.on("console", lambda m: m.type == "error" and trouble.problems.append(f"console: {m.text}"))
    page.on("pageerror", lambda e: trouble.problems.append(f"page error: {e}"))
    page.on("response", lambda r: r.status >= 400 and trouble.problems.append(f"{r.status} {r.url}"))
    page.goto("/admin/login/")
    page.fill("#id_username", "operator")
    page.fill("#id_password", PASSWORD)
    page.click("input[type=submit]")
    page.wait_for_url("**/admin/")
    yield page
    context.close()
    assert trouble.problems == []


def shoot(page: Any, name: str) -> None:
    """With SAVE_SCREENSHOTS=1, keep what the page shows as docs/screenshots/<name>.png."""
    if os.environ.get("SAVE_SCREENSHOTS"):
        SCREENSHOTS.mkdir(parents=True, exist_ok=True)
        page.screenshot(path=str(SCREENSHOTS / f"{name}.png"), full_page=True)
