"""The admin shows a user only the buttons they may press: view-only staff read a message under review and the
review queue without the settle buttons and actions; someone who may settle sees them. A review item's page is
never a form to edit, whoever looks."""

from __future__ import annotations

from datetime import timedelta
from typing import Any

import pytest
from django.contrib.auth.models import Permission, User
from django.test import Client
from django.utils import timezone

from receipts.actions import review
from receipts.admin.messages import SETTLE_ACTIONS
from receipts.models import ApiClient, InboxState, Message, ReceiptEvent
from tests.conftest import register

pytestmark = pytest.mark.django_db


@pytest.fixture
def in_review(settings: Any) -> Message:
    message = register(provider_message_id="perm-1", to="+15550008888")
    settings.RECEIPT_TIMEOUT = timedelta(minutes=30)
    Message.objects.filter(pk=message.pk).update(created_at=timezone.now() - timedelta(hours=1))
    while review.expire_receipts():
        pass
    message.refresh_from_db()
    assert message.needs_review
    return message


def staff_with(name: str, *codenames: str) -> Client:
    user = User.objects.create_user(name, password="pw", is_staff=True)
    user.user_permissions.set(Permission.objects.filter(content_type__app_label="receipts", codename__in=codenames))
    client = Client()
    client.force_login(user)
    return client


@pytest.fixture
def viewer() -> Client:
    return staff_with("viewer", "view_message", "view_reviewqueue")


@pytest.fixture
def settler() -> Client:
    return staff_with("settler", "view_message", "view_reviewqueue", "change_message")


PAGES = ["/admin/receipts/message/{pk}/change/", "/admin/receipts/reviewqueue/{pk}/change/"]


def settle_buttons(html: str) -> list[str]:
    return [label for _, label in SETTLE_ACTIONS if f'value="{label}"' in html]


@pytest.mark.parametrize("url", PAGES)
def test_view_only_staff_see_a_message_under_review_without_settle_buttons(
    viewer: Client, in_review: Message, url: str
) -> None:
    response = viewer.get(url.format(pk=in_review.pk))
    assert response.status_code == 200
    html = response.content.decode()
    assert "No final receipt came in time" in html  # they see why it is under review
    assert settle_buttons(html) == []
    assert 'id="settle-' not in html


@pytest.mark.parametrize("url", PAGES)
def test_staff_who_may_settle_see_every_settle_button(settler: Client, in_review: Message, url: str) -> None:
    html = settler.get(url.format(pk=in_review.pk)).content.decode()
    assert settle_buttons(html) == [label for _, label in SETTLE_ACTIONS]
    for action, _ in SETTLE_ACTIONS:
        assert f'<form id="settle-{action}" method="post" action="/admin/receipts/reviewqueue/">' in html


def test_the_review_queue_offers_its_actions_only_to_who_may_settle(
    viewer: Client, settler: Client, in_review: Message
) -> None:
    actions = ['value="confirm_delivered"', 'value="mark_failed"', 'value="poll_again"', 'value="resolve"']
    html = viewer.get("/admin/receipts/reviewqueue/").content.decode()
    assert "perm-1" in html
    assert [a for a in actions if a in html] == []
    viewer.post(
        "/admin/receipts/reviewqueue/", {"action": "confirm_delivered", "_selected_action": in_review.pk, "index": 0}
    )
    in_review.refresh_from_db()
    assert in_review.needs_review and not in_review.resolutions.exists()

    html = settler.get("/admin/receipts/reviewqueue/").content.decode()
    assert [a for a in actions if a in html] == actions


def test_a_review_item_page_is_not_a_form_to_edit_even_for_a_superuser(
    admin_client: Client, in_review: Message
) -> None:
    url = f"/admin/receipts/reviewqueue/{in_review.pk}/change/"
    html = admin_client.get(url).content.decode()
    assert 'name="_save"' not in html and 'name="_continue"' not in html
    for field in ("status", "to", "crm_record_id", "review_reason", "provider_message_id"):
        assert f'name="{field}"' not in html
    assert settle_buttons(html) == [label for _, label in SETTLE_ACTIONS]  # settled by its actions only

    response = admin_client.post(url, {"status": "failed", "needs_review": "", "to": "+15550000000"})
    assert response.status_code == 403
    in_review.refresh_from_db()
    assert (in_review.status, in_review.needs_review, in_review.to) == ("delivered", True, "+15550008888")


def test_the_suppression_import_shows_only_to_who_may_add() -> None:
    importing = 'href="/admin/receipts/suppression/import/"'
    viewer = staff_with("viewer", "view_suppression")
    adder = staff_with("adder", "view_suppression", "add_suppression")
    assert importing not in viewer.get("/admin/receipts/suppression/").content.decode()
    assert importing in adder.get("/admin/receipts/suppression/").content.decode()


# (the list, the action, the permission it needs besides viewing)
GUARDED_ACTIONS = [
    ("/admin/receipts/receiptevent/", "replay", ("receipts", "change_receiptevent"), ("receipts", "view_receiptevent")),
    ("/admin/receipts/apiclient/", "revoke", ("receipts", "change_apiclient"), ("receipts", "view_apiclient")),
    (
        "/admin/crm_sync/outboxmessage/",
        "retry",
        ("crm_sync", "change_outboxmessage"),
        ("crm_sync", "view_outboxmessage"),
    ),
]


@pytest.mark.parametrize(("url", "action", "needs", "views"), GUARDED_ACTIONS, ids=[a[1] for a in GUARDED_ACTIONS])
def test_list_actions_that_change_things_show_only_to_who_may_change(
    in_review: Message, url: str, action: str, needs: tuple[str, str], views: tuple[str, str]
) -> None:
    # A row in each list (Django offers no action over an empty one): the review's CRM change is in the outbox.
    ReceiptEvent.objects.create(provider="generic", body="{}", state=InboxState.DEAD, dedupe_key="dead-1")
    ApiClient.issue("a-crm", ["read"])

    def staff(name: str, *perms: tuple[str, str]) -> Client:
        user = User.objects.create_user(name, password="pw", is_staff=True)
        for app, codename in perms:
            user.user_permissions.add(Permission.objects.get(content_type__app_label=app, codename=codename))
        client = Client()
        client.force_login(user)
        return client

    offered = f'<option value="{action}">'
    assert 'name="_selected_action"' in staff("another-changer", views, needs).get(url).content.decode()
    assert offered not in staff("viewer", views).get(url).content.decode()
    assert offered in staff("changer", views, needs).get(url).content.decode()


@pytest.mark.parametrize(
    ("back", "lands_on"),
    [
        ("/admin/receipts/message/{pk}/change/", "/admin/receipts/message/{pk}/change/"),
        ("", "/admin/receipts/reviewqueue/"),
        ("https://evil.example/", "/admin/receipts/reviewqueue/"),
        ("//evil.example/", "/admin/receipts/reviewqueue/"),
    ],
)
def test_a_decision_from_a_message_page_goes_back_to_it_and_nowhere_else(
    settler: Client, in_review: Message, back: str, lands_on: str
) -> None:
    response = settler.post(
        "/admin/receipts/reviewqueue/",
        {"action": "poll_again", "_selected_action": in_review.pk, "index": 0, "back": back.format(pk=in_review.pk)},
    )
    assert (response.status_code, response["Location"]) == (302, lands_on.format(pk=in_review.pk))
    assert in_review.resolutions.count() == 1
