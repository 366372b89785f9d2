"""A campaign in the admin: made with the same checks as the API, started and paused with its buttons, its
progress shown."""

from __future__ import annotations

from typing import Any

import pytest
from django.contrib.auth.models import Permission, User
from django.db import connection
from django.test import Client
from django.test.utils import CaptureQueriesContext

from campaigns import dispatch, lifecycle
from campaigns.contacts import import_contacts
from campaigns.models import Campaign
from simulator import SimulatorServer

pytestmark = pytest.mark.django_db

FORM = {
    "name": "Flu shots",
    "channel": "sms",
    "provider": "genesys_sms",
    "sender": "",
    "priority": "normal",
    "subject": "",
    "body": "Hi {{ contact.first_name }}, flu shots are in.",
    "audience": "{}",
    "start_at_0": "",
    "start_at_1": "",
    "quiet_start": "",
    "quiet_end": "",
    "time_zone": "UTC",
}


@pytest.fixture
def staff(client: Client) -> Client:
    client.force_login(User.objects.create_superuser("ops", "ops@example.com", "pw"))
    return client


def test_a_campaign_made_in_the_admin_is_checked_started_paused_and_shows_progress(
    staff: Client, providers: SimulatorServer
) -> None:
    bad = staff.post("/admin/campaigns/campaign/add/", {**FORM, "body": "Hi {{ first_name }}"})
    assert bad.status_code == 200 and "contact.first_name" in bad.content.decode()
    not_allowed = staff.post("/admin/campaigns/campaign/add/", {**FORM, "sender": "+19990000000"})
    assert "SENDER_ALLOW_LIST" in not_allowed.content.decode()
    assert not Campaign.objects.exists()

    assert staff.post("/admin/campaigns/campaign/add/", FORM).status_code == 302
    campaign = Campaign.objects.get()
    import_contacts(
        enumerate([{"crm_record_id": f"c{i}", "phone": f"+1555030{i:04d}", "first_name": "A"} for i in range(4)])
    )

    page = staff.get(f"/admin/campaigns/campaign/{campaign.pk}/change/").content.decode()
    assert 'value="Start"' in page and 'value="Pause"' not in page
    assert staff.get(f"/admin/campaigns/campaign/{campaign.pk}/step/start/").status_code == 405
    assert staff.post(f"/admin/campaigns/campaign/{campaign.pk}/step/start/").status_code == 302
    lifecycle.plan(campaign.pk)
    assert dispatch.dispatch(limit=2).sent == 2

    with CaptureQueriesContext(connection) as queries:
        page = staff.get(f"/admin/campaigns/campaign/{campaign.pk}/change/").content.decode()
    assert "progress-bar" in page and 'value="Pause"' in page
    # Its progress is the counts kept with the sends (receipts.tallies), not a count by state (issue 23, item 6).
    on_sends = [q["sql"] for q in queries.captured_queries if 'FROM "campaigns_send"' in q["sql"]]
    counted = [sql for sql in on_sends if "COUNT(" in sql]
    assert not counted, counted
    assert 'state__exact=sent">2</a>' in page
    assert staff.post(f"/admin/campaigns/campaign/{campaign.pk}/step/pause/").status_code == 302
    campaign.refresh_from_db()
    assert campaign.state == "paused" and "ops" in campaign.state_reason
    # A started campaign's message is not edited any more.
    staff.post(f"/admin/campaigns/campaign/{campaign.pk}/change/", {**FORM, "body": "changed"})
    campaign.refresh_from_db()
    assert campaign.body == FORM["body"]


def test_a_user_without_change_permission_cannot_start(client: Client, settings: Any) -> None:
    user = User.objects.create_user("viewer", password="pw", is_staff=True)
    client.force_login(user)
    campaign = Campaign.objects.create(name="x", channel="sms", provider="genesys_sms", body="hi")
    assert client.post(f"/admin/campaigns/campaign/{campaign.pk}/step/start/").status_code == 403
    assert Campaign.objects.get().state == "draft"


def campaign_staff(name: str, *codenames: str) -> Client:
    user = User.objects.create_user(name, password="pw", is_staff=True)
    user.user_permissions.set(Permission.objects.filter(content_type__app_label="campaigns", codename__in=codenames))
    client = Client()
    client.force_login(user)
    return client


def buttons(client: Client, campaign: Campaign) -> list[str]:
    html = client.get(f"/admin/campaigns/campaign/{campaign.pk}/change/").content.decode()
    assert "campaign-progress" in html  # the state and progress show to both
    return [label for label in ("Start", "Pause", "Resume", "Cancel") if f'value="{label}"' in html]


def test_view_only_staff_see_a_campaign_without_its_buttons_and_who_may_change_it_sees_them(settings: Any) -> None:
    settings.GENESYS_SMS_SENDER = "+15559876543"
    viewer = campaign_staff("viewer", "view_campaign")
    changer = campaign_staff("changer", "view_campaign", "change_campaign")
    draft = Campaign.objects.create(name="draft", channel="sms", provider="genesys_sms", body="hi")
    running = lifecycle.start(Campaign.objects.create(name="running", channel="sms", provider="genesys_sms", body="hi"))
    paused = lifecycle.pause(
        lifecycle.start(Campaign.objects.create(name="paused", channel="sms", provider="genesys_sms", body="hi"))
    )

    assert [buttons(viewer, c) for c in (draft, running, paused)] == [[], [], []]
    assert [buttons(changer, c) for c in (draft, running, paused)] == [
        ["Start", "Cancel"],
        ["Pause", "Cancel"],
        ["Resume", "Cancel"],
    ]
    # Each button's form is outside the change form, where the browser posts it.
    html = changer.get(f"/admin/campaigns/campaign/{draft.pk}/change/").content.decode()
    assert html.index('<form id="campaign-start"') > html.index("</form>")
    assert f'action="/admin/campaigns/campaign/{draft.pk}/step/start/"' in html


def test_the_campaigns_list_shows_row_buttons_only_to_who_may_change_and_goes_back_only_to_this_site(
    settings: Any,
) -> None:
    settings.GENESYS_SMS_SENDER = "+15559876543"
    viewer = campaign_staff("viewer", "view_campaign")
    changer = campaign_staff("changer", "view_campaign", "change_campaign")
    running = lifecycle.start(Campaign.objects.create(name="running", channel="sms", provider="genesys_sms", body="hi"))

    assert 'value="Pause"' not in viewer.get("/admin/campaigns/campaign/").content.decode()
    html = changer.get("/admin/campaigns/campaign/").content.decode()
    assert f'form="step-{running.pk}-pause" value="Pause"' in html
    # The row's form sits after the list's form closes: a browser drops a form nested in another.
    assert html.index("</form>", html.index('id="changelist-form"')) < html.index(f'<form id="step-{running.pk}-pause"')

    step = f"/admin/campaigns/campaign/{running.pk}/step/pause/"
    answer = changer.post(step, {"next": "/admin/campaigns/campaign/?state__exact=running"})
    assert answer.status_code == 302 and answer["Location"] == "/admin/campaigns/campaign/?state__exact=running"
    lifecycle.resume(Campaign.objects.get(pk=running.pk))
    answer = changer.post(step, {"next": "https://evil.example/"})  # not ours: the campaign's page instead
    assert answer["Location"] == f"/admin/campaigns/campaign/{running.pk}/change/"


def test_the_sms_length_a_campaign_page_asks_for_is_templatings_and_only_for_who_may_write_one() -> None:
    viewer = campaign_staff("viewer", "view_campaign")
    writer = campaign_staff("writer", "view_campaign", "add_campaign")
    url = "/admin/campaigns/campaign/sms-length/"
    answer = writer.post(url, {"text": "Hi {{ contact.first_name }}, your flu shot is due €"})
    assert answer.json() == {"text": "1 segment, GSM-7, 56 characters"}  # 51, with €, {, {, }, } two each
    assert writer.post(url, {"text": "  "}).json() == {"text": "empty"}
    assert writer.get(url).status_code == 405
    assert viewer.post(url, {"text": "hi"}).status_code == 403
