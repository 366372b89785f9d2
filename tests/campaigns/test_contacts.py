"""POST /api/v1/contacts/: contacts added or updated by CRM record id, addresses normalised, each one that cannot
be stored refused with its position and why, the rest stored."""

from __future__ import annotations

import pytest
from rest_framework.test import APIClient

from campaigns.models import Contact

pytestmark = pytest.mark.django_db


def test_contacts_are_added_normalised_and_the_bad_ones_refused(api: APIClient, settings: object) -> None:
    body = {
        "contacts": [
            {"crm_record_id": "003A", "phone": "+1 (555) 000-1111", "first_name": "Ann", "clinic": "North"},
            {"crm_record_id": "003B", "email": "Bob@Example.COM", "external_contact_id": "ext-b"},
            {"crm_record_id": "003C"},  # no address
            {"crm_record_id": "003D", "phone": "not a number"},
            {"phone": "+15550002222"},  # no CRM record
            {"crm_record_id": "003A", "phone": "+15550009999"},  # twice in one request
            {"crm_record_id": "003E", "phone": "+15550003333", "attributes": ["not", "an", "object"]},
        ]
    }
    response = api.post("/api/v1/contacts/", body, format="json")
    assert response.status_code == 200, response.content
    answer = response.json()
    assert (answer["added"], answer["updated"]) == (2, 0)
    assert [r["index"] for r in answer["refused"]] == [2, 3, 4, 5, 6]
    assert "phone number or an email" in answer["refused"][0]["error"]
    assert "0002222" not in str(answer)  # addresses masked in the reasons
    ann = Contact.objects.get(crm_record_id="003A")
    assert (ann.phone, ann.attributes) == ("+15550001111", {"first_name": "Ann", "clinic": "North"})
    assert Contact.objects.get(crm_record_id="003B").email == "bob@example.com"


def test_importing_again_updates_by_crm_record_id(api: APIClient) -> None:
    api.post("/api/v1/contacts/", {"contacts": [{"crm_record_id": "003A", "phone": "+15550001111"}]}, format="json")
    again = api.post(
        "/api/v1/contacts/", {"contacts": [{"crm_record_id": "003A", "email": "ann@example.com"}]}, format="json"
    ).json()
    assert (again["added"], again["updated"]) == (0, 1)
    ann = Contact.objects.get()
    assert (ann.phone, ann.email) == ("", "ann@example.com")


def test_contacts_are_found_by_an_address_as_typed(api: APIClient) -> None:
    api.post("/api/v1/contacts/", {"contacts": [{"crm_record_id": "003A", "phone": "+15550001111"}]}, format="json")
    found = api.get("/api/v1/contacts/", {"phone": "(555) 000-1111"}).json()["results"]
    assert [c["crm_record_id"] for c in found] == ["003A"]
    assert api.get("/api/v1/contacts/", {"phone": "nonsense"}).json()["results"] == []


@pytest.mark.parametrize("body", [{}, {"contacts": []}, {"contacts": "no"}, {"contacts": [1, 2]}])
def test_a_body_that_is_not_a_list_of_contacts_is_a_400(api: APIClient, body: object) -> None:
    response = api.post("/api/v1/contacts/", body, format="json")
    assert response.status_code == 400
    assert "error" in response.json()


# Issue 20, item 5: each was accepted before (a list became its text, ABC became 222, "ext 34" was dropped).
BAD_PHONES = [["+15550001111"], "+1-555-ABC-DEFG", "+1 555 000 1111 ext 34", "+1 555 000 1111 x34", True, {"n": 1}]
BAD_EMAILS = [
    "<script>@example.com",
    "a..b@example.com",
    "a@b",
    "x@localhost",
    "a@[127.0.0.1]",
    "l" * 300 + "@example.com",
    "ann\u202e@example.com",  # a right-to-left override
    '"quoted"@example.com',
]


def test_every_bad_address_is_refused_alone_with_its_index_and_the_rest_taken(api: APIClient) -> None:
    bad = [{"crm_record_id": f"bad-p{i}", "phone": phone} for i, phone in enumerate(BAD_PHONES)]
    bad += [{"crm_record_id": f"bad-e{i}", "email": email} for i, email in enumerate(BAD_EMAILS)]
    good = [{"crm_record_id": "good-1", "phone": "(555) 000-1111"}, {"crm_record_id": "good-2", "email": "A@Ex.org"}]
    response = api.post("/api/v1/contacts/", {"contacts": [*good, *bad]}, format="json")

    assert response.status_code == 200, response.content
    answer = response.json()
    assert [r["index"] for r in answer["refused"]] == list(range(2, 2 + len(bad)))
    assert (answer["added"], sorted(Contact.objects.values_list("crm_record_id", flat=True))) == (
        2,
        ["good-1", "good-2"],
    )
    reasons = " ".join(r["error"] for r in answer["refused"])
    for quoted in ("ABC", "ext 34", "x34", "script", "a..b", "localhost", "127.0.0.1", "lllll", "quoted", "\u202e"):
        assert quoted not in reasons  # a reason never quotes the value
    assert "must be text, not list" in answer["refused"][0]["error"]
    assert "no letters, no extension" in answer["refused"][1]["error"]


def test_a_nul_refuses_only_its_own_contact(api: APIClient) -> None:
    contacts = [{"crm_record_id": f"003-{i}", "phone": f"+1555000{i:04d}"} for i in range(50)]
    contacts[17]["first_name"] = "Ann\u0000"
    contacts[33]["crm_record_id"] = "003-\u0000"
    response = api.post("/api/v1/contacts/", {"contacts": contacts}, format="json")

    assert response.status_code == 200, response.content
    refused = response.json()["refused"]
    assert [r["index"] for r in refused] == [17, 33]
    assert all("NUL" in r["error"] for r in refused)
    assert Contact.objects.count() == 48
    # Outside the contacts, a NUL is still the whole request's problem.
    whole = api.post("/api/v1/contacts/", {"contacts": contacts[:1], "note\u0000": 1}, format="json")
    assert whole.status_code == 400
