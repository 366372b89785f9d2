"""Contacts from a CSV file, in the admin (Contacts -> Import CSV).

The file is read here into (line, row) pairs and stored by ``campaigns.contacts.import_contacts``, as the API's
contacts are. A file that cannot be read as a whole is refused as a whole, nothing stored; a line that cannot be
stored is refused with its line number (the header is line 1) and why, and the rest are stored. The reasons never
quote the line's values: they are personal data, and ``mask`` only hides what looks like an address.
"""

from __future__ import annotations

import csv
import io
from itertools import zip_longest
from typing import Any

from django import forms
from django.contrib import admin, messages
from django.core.files.uploadedfile import UploadedFile
from django.http import HttpRequest, HttpResponse
from django.template.response import TemplateResponse

from campaigns.contacts import MAX_CONTACTS, ContactImport, import_contacts
from campaigns.models import Contact
from receipts.addresses import normalize_address
from receipts.admin.suppressions import IMPORT_MAX_BYTES, REFUSED_SHOWN

COLUMNS = ("crm_record_id", "phone", "email", "external_contact_id")
# column -> (channel for normalize_address, what it must be)
ADDRESSES = {"phone": ("sms", "a phone number"), "email": ("email", "an email address")}

Row = tuple[int, dict[str, Any]]


class ImportForm(forms.Form):
    file = forms.FileField(
        help_text="CSV (UTF-8) with a header row: crm_record_id, phone and/or email, optionally external_contact_id; "
        "every other column is an attribute for templates."
    )


def import_view(model_admin: admin.ModelAdmin[Contact], request: HttpRequest) -> HttpResponse:
    if not model_admin.has_add_permission(request):
        return HttpResponse(status=403)
    form = ImportForm(request.POST or None, request.FILES or None)
    report = None
    if request.method == "POST" and form.is_valid():
        try:
            report = import_file(form.cleaned_data["file"])
        except ValueError as exc:
            form.add_error("file", f"{exc}; nothing was imported")
        else:
            model_admin.message_user(
                request,
                f"{report.added} added, {report.updated} updated, {len(report.refused)} refused.",
                messages.WARNING if report.refused else messages.SUCCESS,
            )
    context = {
        **model_admin.admin_site.each_context(request),
        "title": "Import contacts from CSV",
        "form": form,
        "report": report,
        "refused": report.refused[:REFUSED_SHOWN] if report else [],
        "refused_more": max(0, len(report.refused) - REFUSED_SHOWN) if report else 0,
        "columns": COLUMNS,
        "max_contacts": MAX_CONTACTS,
        "max_mib": IMPORT_MAX_BYTES // (1024 * 1024),
        "opts": Contact._meta,
    }
    return TemplateResponse(request, "admin/campaigns/contact/import.html", context)


def import_file(upload: UploadedFile) -> ContactImport:
    """Store the file's contacts; raises ValueError, saying what to fix, for a file refused whole."""
    if upload.size is not None and upload.size > IMPORT_MAX_BYTES:
        raise ValueError(f"the file is over {IMPORT_MAX_BYTES // (1024 * 1024)} MiB; split it")
    rows, refused = read_csv(upload.read())
    report = import_contacts(rows)
    report.refused = sorted(refused + report.refused)
    return report


def read_csv(data: bytes) -> tuple[list[Row], list[tuple[int, str]]]:
    """(line, row) for each contact in the file, and (line, why) for each line refused on reading."""
    try:
        text = data.decode("utf-8-sig")
    except UnicodeDecodeError as exc:
        raise ValueError("the file is not UTF-8 text; save it as CSV (UTF-8)") from exc
    if "\x00" in text:  # a spreadsheet or other binary file that happens to decode
        raise ValueError("the file is not CSV text; save it as CSV (UTF-8)")
    reader = csv.reader(io.StringIO(text, newline=""))
    rows: list[Row] = []
    refused: list[tuple[int, str]] = []
    start = 1
    try:
        names = column_names(next(reader, []))
        start = reader.line_num + 1
        for cells in reader:
            # A quoted value can span lines: a row's number is the line it starts on.
            line, start = start, reader.line_num + 1
            if not any(cell.strip() for cell in cells):
                continue  # blank line
            if len(rows) + len(refused) >= MAX_CONTACTS:
                raise ValueError(f"the file has more than {MAX_CONTACTS} contacts; split it")
            try:
                rows.append((line, contact_row(names, cells)))
            except ValueError as exc:
                refused.append((line, str(exc)))
    except csv.Error as exc:  # the message names the limit broken, never the value
        raise ValueError(f"the file is not CSV that can be read: line {start}: {exc}") from exc
    return rows, refused


def column_names(header: list[str]) -> list[str]:
    """The header's names; ours are matched in any case, attribute names kept as written (templates use them)."""
    names = [cell.strip().lower() if cell.strip().lower() in COLUMNS else cell.strip() for cell in header]
    if "crm_record_id" not in names:
        raise ValueError("the header row (line 1) needs a crm_record_id column")
    if "phone" not in names and "email" not in names:
        raise ValueError("the header row (line 1) needs a phone or an email column")
    twice = sorted({name for name in names if name and names.count(name) > 1})
    if twice:
        raise ValueError(f"the header row names a column twice: {', '.join(twice)}")
    return names


def contact_row(names: list[str], cells: list[str]) -> dict[str, Any]:
    """One line as import_contacts takes it: our columns, and the other non-empty cells as attributes."""
    row: dict[str, Any] = {}
    attributes: dict[str, str] = {}
    for number, (name, cell) in enumerate(zip_longest(names, cells, fillvalue=""), start=1):
        value = cell.strip()
        if not value:
            continue  # an empty cell is no attribute, and an empty phone or email is none
        if number > len(names):
            # Usually a comma inside a value that is not quoted: every later value would be in the wrong column.
            raise ValueError("more values than the header row has columns (a value with a comma needs quotes)")
        if not name:
            raise ValueError(f"a value in column {number}, which has no name in the header row")
        if name in COLUMNS:
            row[name] = value
        else:
            attributes[name] = value
    if row.get("crm_record_id"):  # without it, that is the reason import_contacts gives
        for name in ADDRESSES:
            if name in row:
                check_address(name, row[name])
    row["attributes"] = attributes
    return row


def check_address(name: str, value: str) -> None:
    """Refuse an address that will not store, naming the column only (normalize_address's error quotes it)."""
    channel, what = ADDRESSES[name]
    try:
        normalised = normalize_address(channel, value)
    except ValueError:
        raise ValueError(f"{name} is not {what}") from None
    limit = getattr(Contact._meta.get_field(name), "max_length", None)
    if limit and len(normalised) > limit:  # PostgreSQL would refuse the whole import
        raise ValueError(f"{name} is over {limit} characters")
