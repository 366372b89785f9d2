"""A walk through every page type of the console in Chromium at 1280 px, as an operator with data on every page:
the index, the dashboard in each window, every list (and each of its filters), a row of each list, each add page
and each page of its own (imports, erasure, provider limits, alerts), then every bulk action of every list clicked
on a row. Any answer of 400 or more and any console error fail it (conftest); so does a page wider than the window
or a control (button, select, action link) outside it, and a list that hides columns in a sideways-scrolling box."""

from __future__ import annotations

from typing import Any

import pytest
from django.contrib import admin
from django.urls import reverse

from campaigns import lifecycle
from campaigns.models import Campaign, Contact
from receipts.actions import suppression
from receipts.models import Alert, ApiClient
from tests.browser.test_admin_buttons import sendable  # noqa: F401 - a fixture
from tests.browser.test_admin_in_a_browser import traffic  # noqa: F401 - a fixture

pytestmark = [pytest.mark.django_db(transaction=True), pytest.mark.browser]

WIDTH = 1280

# The controls an operator clicks: each must sit inside the window.
CONTROLS = ", ".join(
    [
        "#content button",
        "#content input[type=submit]",
        "#content input[type=button]",
        "#content select",
        "#content a.button",
        ".object-tools a",
        "#changelist-filter a",
    ]
)
OUT_OF_VIEW = f"""(width) => [...document.querySelectorAll('{CONTROLS}')]
  .filter(e => e.offsetParent !== null && !e.closest('details:not([open])'))
  .map(e => [e.textContent.trim() || e.value || e.name, e.getBoundingClientRect()])
  .filter(([, r]) => r.left < 0 || r.right > width + 0.5)
  .map(([name, r]) => `${{name}} at ${{Math.round(r.left)}}..${{Math.round(r.right)}}`)"""

LAYOUT = """() => {
  const results = document.querySelector('#changelist-form .results');
  return {page: document.documentElement.scrollWidth,
          results: results ? results.scrollWidth - results.clientWidth : 0};
}"""


@pytest.fixture
def everything(traffic: None, sendable: None) -> None:  # noqa: F811 - the fixtures imported above
    """A row on every list: campaigns in each state, a contact, a suppression, an alert."""
    for state in ["draft", "running", "paused", "cancelled"]:
        campaign = Campaign.objects.create(
            name=f"Flu shots ({state})", channel="sms", provider="genesys_sms", body="Hi {{ contact.first_name }}"
        )
        if state != "draft":
            lifecycle.start(campaign)
        if state == "paused":
            lifecycle.pause(campaign)
        if state == "cancelled":
            lifecycle.cancel(campaign)
    Contact.objects.create(crm_record_id="003XX0000001", phone="+15550001111", attributes={"first_name": "Ann"})
    suppression.suppress("sms", "+15550002222", "unsubscribe", source="receipt")
    Alert.objects.create(key="review_queue", title="501 messages wait for review (over 500)")
    ApiClient.issue("crm-connector", ["read"])


def check(page: Any, url: str, problems: list[str]) -> None:
    response = page.goto(url)
    assert response is not None and response.status < 400, f"{url}: {response and response.status}"
    layout = page.evaluate(LAYOUT)
    if layout["page"] > WIDTH:
        problems.append(f"{url}: the page is {layout['page']} px wide")
    if layout["results"] > 0:
        problems.append(f"{url}: {layout['results']} px of the list scroll sideways")
    problems.extend(f"{url}: {control}" for control in page.evaluate(OUT_OF_VIEW, WIDTH))


def test_every_page_type_opens_whole_at_1280_px(page: Any, everything: None) -> None:
    page.set_viewport_size({"width": WIDTH, "height": 800})
    problems: list[str] = []
    pages = [
        reverse("admin:index"),
        *[f"{reverse('dashboard')}?window={window}" for window in ["hour", "day", "7d", "30d"]],
        reverse("provider-limits"),
        reverse("admin:receipts_suppression_import"),
        reverse("admin:campaigns_contact_import"),
        reverse("admin:receipts_erasure_allow"),
        f"{reverse('admin:receipts_alert_changelist')}?open=all",
    ]
    for url in pages:
        check(page, url, problems)

    walked = []
    for model, model_admin in admin.site._registry.items():
        opts = model._meta
        changelist = reverse(f"admin:{opts.app_label}_{opts.model_name}_changelist")
        check(page, changelist, problems)
        walked.append(opts.label_lower)
        # Each filter's first choice, as an operator narrows the list.
        filters = page.locator("#changelist-filter details").all()
        choices = []
        for block in filters:
            link = block.locator("li:not(.selected) a").first
            if link.count():
                choices.append(link.get_attribute("href"))
        for query in choices:
            check(page, f"{changelist}{query}", problems)
        # One row's own page.
        check(page, changelist, problems)
        first = page.locator("#result_list tbody tr th a, #result_list tbody tr td a").first
        if first.count():
            href = first.get_attribute("href")
            if href and "/change/" in href:
                check(page, href, problems)
        if model_admin.has_add_permission(_superuser_request()):
            check(page, reverse(f"admin:{opts.app_label}_{opts.model_name}_add"), problems)

    assert {"receipts.message", "receipts.reviewqueue", "campaigns.campaign", "receipts.alert"} <= set(walked)
    assert problems == [], "\n".join(problems)


def _superuser_request() -> Any:
    from django.contrib.auth import get_user_model
    from django.test import RequestFactory

    request = RequestFactory().get("/")
    request.user = get_user_model().objects.get(username="operator")
    return request


def test_every_list_action_answers_when_clicked(page: Any, everything: None) -> None:
    """Each bulk action of each list, run on its first row by clicking Go: it answers a page (an action's own page,
    asking for a note or a confirmation, is left unsubmitted) or the list with a message, never an error."""
    page.set_viewport_size({"width": WIDTH, "height": 800})
    ran = []
    for model in admin.site._registry:
        opts = model._meta
        changelist = reverse(f"admin:{opts.app_label}_{opts.model_name}_changelist")
        page.goto(changelist)
        if not page.locator("select[name=action]").count():
            continue
        actions = [
            value
            for value in page.locator("select[name=action] option").evaluate_all("os => os.map(o => o.value)")
            if value
        ]
        for action in actions:
            page.goto(changelist)
            boxes = page.locator("#result_list tbody input.action-select")
            if not boxes.count():
                break  # an earlier action emptied the list
            boxes.first.check()
            page.select_option("select[name=action]", action)
            if "export" in action:  # answers a file, not a page
                with page.expect_download() as download:
                    page.click("button[name=index]")
                assert download.value.suggested_filename.endswith(".csv"), f"{opts.label_lower} {action}"
                ran.append(f"{opts.label_lower}.{action}")
                continue
            with page.expect_navigation() as navigation:
                page.click("button[name=index]")
            response = navigation.value
            assert response is not None and response.status < 400, f"{opts.label_lower} {action}: {response.status}"
            shown = page.inner_text("#content")
            assert "Items must be selected" not in shown, f"{opts.label_lower} {action}: the row was not sent"
            ran.append(f"{opts.label_lower}.{action}")
    assert {
        "receipts.reviewqueue.confirm_delivered",
        "receipts.receiptevent.replay",
        "receipts.apiclient.revoke",
        "receipts.suppression.lift",
        "crm_sync.outboxmessage.retry",
    } <= set(ran), ran
