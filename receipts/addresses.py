"""Addresses in one canonical form: E.164 for phone numbers, lower-case with an IDNA domain for email."""

import phonenumbers
from django.conf import settings


def normalize_address(channel: str, raw: str) -> str:
    value = (raw or "").strip()
    if not value:
        raise ValueError("address is empty")
    if channel == "email":
        return normalize_email(value)
    return normalize_phone(value)


def normalize_email(value: str) -> str:
    local, at, domain = value.rpartition("@")
    if not at or not local or not domain or " " in value:
        raise ValueError(f"{value!r} is not an email address")
    try:
        ascii_domain = domain.encode("idna").decode("ascii")
    except UnicodeError as exc:
        raise ValueError(f"{value!r} has an invalid domain") from exc
    return f"{local}@{ascii_domain}".lower()


def normalize_phone(value: str) -> str:
    try:
        number = phonenumbers.parse(value, settings.DEFAULT_PHONE_REGION)
    except phonenumbers.NumberParseException as exc:
        raise ValueError(f"{value!r} is not a phone number") from exc
    if not phonenumbers.is_possible_number(number):
        raise ValueError(f"{value!r} is not a possible phone number")
    return phonenumbers.format_number(number, phonenumbers.PhoneNumberFormat.E164)
