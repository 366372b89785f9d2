"""Contacts in: from the API or a CSV, each line kept or refused with its reason, never half-stored.

A contact is keyed by its CRM record id: importing it again updates it. Its phone number and email are normalised
as everywhere else (E.164; lower case with an IDNA domain); a line with neither, or with one that does not
normalise, is refused with the reason and its line number. Every other column becomes an attribute for templates.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any

from django.db import transaction

from campaigns.models import Contact
from receipts.actions.suppression import erased
from receipts.addresses import normalize_address
from receipts.db import check_json, check_text
from receipts.logging import mask

KNOWN = ("crm_record_id", "phone", "email", "external_contact_id", "attributes")
MAX_CONTACTS = 10_000  # a request or a file; split bigger imports
ERASED = "its address was erased on request; an operator must allow it again (Erasures) before it is added"


@dataclass
class ContactImport:
    added: int = 0
    updated: int = 0
    refused: list[tuple[int, str]] = field(default_factory=list)  # (line or index, why)


def import_contacts(rows: Iterable[tuple[int, dict[str, Any]]]) -> ContactImport:
    """Add or update contacts from (line, row) pairs; the lines that cannot be stored are refused with why."""
    report = ContactImport()
    clean: dict[str, dict[str, Any]] = {}
    lines: dict[str, int] = {}
    for line, row in rows:
        try:
            fields = cleaned(row)
        except ValueError as exc:
            report.refused.append((line, mask(str(exc))))
            continue
        key = fields["crm_record_id"]
        if key in lines:
            report.refused.append((line, f"the same crm_record_id as line {lines[key]}"))
            continue
        lines[key] = line
        clean[key] = fields
    blocked = {("sms", a) for a in erased("sms", [f["phone"] for f in clean.values() if f["phone"]])} | {
        ("email", a) for a in erased("email", [f["email"] for f in clean.values() if f["email"]])
    }
    for key, fields in list(clean.items()):
        if ("sms", fields["phone"]) in blocked or ("email", fields["email"]) in blocked:
            report.refused.append((lines[key], ERASED))
            del clean[key]
    # One statement whatever runs beside it: INSERT ... ON CONFLICT (crm_record_id) DO UPDATE. Reading first and
    # then inserting had let two imports of the same new record both insert (a duplicate key, answered 500).
    existing = set(Contact.objects.filter(crm_record_id__in=list(clean)).values_list("crm_record_id", flat=True))
    with transaction.atomic():
        Contact.objects.bulk_create(
            [Contact(**values) for values in clean.values()],
            batch_size=1000,
            update_conflicts=True,
            unique_fields=["crm_record_id"],
            update_fields=["phone", "email", "external_contact_id", "attributes", "updated_at"],
        )
    # Counted from what was there just before: a record another import added meanwhile counts as added here too.
    new, changed = [k for k in clean if k not in existing], [k for k in clean if k in existing]
    report.added, report.updated = len(new), len(changed)
    report.refused.sort()
    return report


def cleaned(row: dict[str, Any]) -> dict[str, Any]:
    """The contact's columns, or ValueError saying what is wrong without quoting it."""
    check_json(row, "the contact")  # a NUL or a lone surrogate anywhere in it
    record = text(row, "crm_record_id")
    if not record:
        raise ValueError("crm_record_id is missing")
    check_text(record, "crm_record_id", 255)
    phone = text(row, "phone")
    email = text(row, "email")
    if not phone and not email:
        raise ValueError("a contact needs a phone number or an email")
    attributes = row.get("attributes")
    if attributes is None:
        attributes = {k: v for k, v in row.items() if k not in KNOWN and k}
    if not isinstance(attributes, dict):
        raise ValueError("attributes must be an object")
    check_json(attributes, "attributes")
    external = text(row, "external_contact_id")
    check_text(external, "external_contact_id", 255)
    return {
        "crm_record_id": record,
        "phone": address(phone, "sms", "phone"),
        "email": address(email, "email", "email"),
        "external_contact_id": external,
        "attributes": attributes,
    }


def text(row: dict[str, Any], name: str) -> str:
    """A column given as text (a number is taken as its digits); a list, an object or true/false is refused."""
    value = row.get(name)
    if value is None:
        return ""
    if isinstance(value, bool) or not isinstance(value, str | int):
        raise ValueError(f"{name} must be text, not {type(value).__name__}")
    return str(value).strip()


def address(value: str, channel: str, name: str) -> str:
    if not value:
        return ""
    try:
        return normalize_address(channel, value)
    except ValueError as exc:
        raise ValueError(f"{name} {exc}") from None
