"""Contacts -> Import CSV in the admin: contacts added or updated by crm_record_id, addresses normalised, the other
columns kept as attributes, each line that cannot be stored refused with its line number and why (no personal data
shown), and a file that cannot be read refused whole with nothing stored."""

from __future__ import annotations

import re

import pytest
from django.contrib.auth.models import Permission, User
from django.core.files.uploadedfile import SimpleUploadedFile
from django.test import Client
from django.urls import reverse

from campaigns import contact_import
from campaigns.models import Contact

IMPORT = "/admin/campaigns/contact/import/"


def upload(content: bytes, name: str = "contacts.csv") -> SimpleUploadedFile:
    return SimpleUploadedFile(name, content, content_type="text/csv")


def post(client: Client, content: bytes) -> str:
    response = client.post(IMPORT, {"file": upload(content)})
    assert response.status_code == 200
    return response.content.decode()


def summary(html: str) -> str:
    found = re.search(r'<p id="import-summary">(.*?)</p>', html)
    assert found, "no import summary on the page"
    return found.group(1)


def refused_lines(html: str) -> list[tuple[int, str]]:
    return [(int(line), why) for line, why in re.findall(r"<tr><td>(\d+)</td><td>(.*?)</td></tr>", html)]


def stored() -> dict[str, tuple[str, str, str, dict]]:
    return {c.crm_record_id: (c.phone, c.email, c.external_contact_id, c.attributes) for c in Contact.objects.all()}


@pytest.fixture
def staff_client(db: None, client: Client) -> Client:
    """Staff who may see contacts but not add them."""
    user = User.objects.create_user("viewer", "viewer@example.com", "pw-viewer-123456", is_staff=True)
    user.user_permissions.add(Permission.objects.get(codename="view_contact"))
    client.force_login(user)
    return client


def test_the_url_name_is_the_import_page() -> None:
    assert reverse("admin:campaigns_contact_import") == IMPORT


def test_a_file_adds_contacts_normalised_with_the_other_columns_as_attributes(admin_client: Client) -> None:
    content = (
        b"crm_record_id,Phone,email,external_contact_id,first_name,clinic\n"
        b"003A,(555) 000-1111,,ext-a,Ann,North\n"
        b"003B,,Bob@Example.COM,,Bob,\n"
        b"003C, +44 20 7946 0958 ,c@example.com,,,\n"
    )

    html = post(admin_client, content)

    assert summary(html) == "3 added, 0 updated, 0 refused."
    assert 'id="refused"' not in html
    assert stored() == {
        "003A": ("+15550001111", "", "ext-a", {"first_name": "Ann", "clinic": "North"}),
        "003B": ("", "bob@example.com", "", {"first_name": "Bob"}),  # an empty cell is no attribute
        "003C": ("+442079460958", "c@example.com", "", {}),
    }


def test_importing_the_same_file_again_changes_nothing(admin_client: Client) -> None:
    content = b"crm_record_id,phone,email,first_name\n003A,555-000-1111,,Ann\n003B,,b@example.com,Bob\n"
    post(admin_client, content)
    before = stored()

    html = post(admin_client, content)

    assert summary(html) == "0 added, 2 updated, 0 refused."
    assert stored() == before
    assert Contact.objects.count() == 2


def test_a_contact_already_there_is_replaced_by_its_line(admin_client: Client) -> None:
    post(admin_client, b"crm_record_id,phone,first_name,clinic\n003A,+15550001111,Ann,North\n")

    html = post(admin_client, b"crm_record_id,email,first_name\n003A,ann@example.com,Anne\n003B,b@example.com,\n")

    assert summary(html) == "1 added, 1 updated, 0 refused."
    assert stored()["003A"] == ("", "ann@example.com", "", {"first_name": "Anne"})


def test_refused_lines_are_reported_with_their_line_number_and_no_personal_data(admin_client: Client) -> None:
    content = (
        b"crm_record_id,phone,email,first_name\n"  # line 1
        b"003A,+15550001111,,Ann\n"  # 2: stored
        b",555 02,,Nobody\n"  # 3: no crm_record_id (the reason, before its phone number's)
        b"003C,,,Carol\n"  # 4: no address
        b"\n"  # 5: blank, skipped
        b"003D,555 01,,Dora\n"  # 6: not a phone number
        b"003E,,erin.private@,Erin\n"  # 7: not an email address
        b'003F,+15550003333,,"two\nlines"\n'  # 8-9: stored, its value spans two lines
        b"003A,+15550004444,,Ann again\n"  # 10: the same contact as line 2
        b"003G,+15550005555,,Smith, Gina\n"  # 11: a comma not in quotes
    )

    html = post(admin_client, content)

    assert summary(html) == "2 added, 0 updated, 6 refused."
    assert refused_lines(html) == [
        (3, "crm_record_id is missing"),
        (4, "a contact needs a phone number or an email"),
        (6, "phone is not a phone number"),
        (7, "email is not an email address"),
        (10, "the same crm_record_id as line 2"),
        (11, "more values than the header row has columns (a value with a comma needs quotes)"),
    ]
    for private in ("555 02", "555 01", "erin.private", "0004444", "0005555", "Gina"):
        assert private not in html
    assert sorted(stored()) == ["003A", "003F"]
    assert stored()["003F"][3] == {"first_name": "two\nlines"}


def test_a_utf8_file_with_a_bom_imports(admin_client: Client) -> None:
    content = "crm_record_id,phone,first_name\n003A,+15550001111,Zoë\n".encode("utf-8-sig")

    html = post(admin_client, content)

    assert summary(html) == "1 added, 0 updated, 0 refused."
    assert stored() == {"003A": ("+15550001111", "", "", {"first_name": "Zoë"})}


@pytest.mark.parametrize(
    ("content", "why"),
    [
        (b"id,phone\n003A,+15550001111\n", "the header row (line 1) needs a crm_record_id column"),
        (b"003A,+15550001111\n003B,+15550002222\n", "the header row (line 1) needs a crm_record_id column"),
        (b"crm_record_id,first_name\n003A,Ann\n", "the header row (line 1) needs a phone or an email column"),
        (b"crm_record_id,phone,Phone\n003A,+15550001111,\n", "the header row names a column twice: phone"),
        ("crm_record_id,phone\n003A,+15550001111,Zoë\n".encode("latin-1"), "the file is not UTF-8 text"),
        (b"PK\x03\x04\x00\x00crm_record_id,phone\n", "the file is not CSV text"),
    ],
    ids=["no crm_record_id column", "no header", "no address column", "a column twice", "latin-1", "binary"],
)
def test_a_file_that_cannot_be_read_is_refused_whole(admin_client: Client, content: bytes, why: str) -> None:
    html = post(admin_client, content)

    assert why in html
    assert "nothing was imported" in html
    assert 'id="import-summary"' not in html
    assert not Contact.objects.exists()


def test_a_file_over_the_size_limit_is_refused_whole(admin_client: Client, monkeypatch: pytest.MonkeyPatch) -> None:
    content = b"crm_record_id,phone\n003A,+15550001111\n"
    monkeypatch.setattr(contact_import, "IMPORT_MAX_BYTES", len(content) - 1)

    html = post(admin_client, content)

    assert "the file is over" in html and "split it; nothing was imported" in html
    assert not Contact.objects.exists()


def test_a_file_with_too_many_contacts_is_refused_whole(admin_client: Client, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(contact_import, "MAX_CONTACTS", 2)
    two = b"crm_record_id,phone\n003A,+15550001111\n\n003B,+15550002222\n"

    assert summary(post(admin_client, two)) == "2 added, 0 updated, 0 refused."  # the blank line does not count
    html = post(admin_client, two + b"003C,+15550003333\n")

    assert "the file has more than 2 contacts; split it; nothing was imported" in html
    assert sorted(stored()) == ["003A", "003B"]


def test_only_users_who_may_add_contacts_can_import(staff_client: Client) -> None:
    assert staff_client.get("/admin/campaigns/contact/").status_code == 200
    assert staff_client.get(IMPORT).status_code == 403
    response = staff_client.post(IMPORT, {"file": upload(b"crm_record_id,phone\n003A,+15550001111\n")})
    assert response.status_code == 403
    assert not Contact.objects.exists()


def test_the_list_links_to_the_import_for_those_who_may_add(admin_client: Client, staff_client: Client) -> None:
    link = f'href="{IMPORT}"'
    assert link in admin_client.get("/admin/campaigns/contact/").content.decode()
    assert link not in staff_client.get("/admin/campaigns/contact/").content.decode()
    page = admin_client.get(IMPORT)
    assert page.status_code == 200
    assert 'enctype="multipart/form-data"' in page.content.decode()
