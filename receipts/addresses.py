"""Addresses in one canonical form: E.164 for phone numbers, lower-case with an IDNA domain for email.

``normalize_address`` is the rule; ``normalize_fast`` gives the same answer for plainly typed phone numbers
without a full parse (the suppression check's bulk of 10,000 addresses).
"""

import re

import email_validator
import phonenumbers
from django.conf import settings

from receipts.logging import mask


def normalize_address(channel: str, raw: object) -> str:
    """The canonical form of an address, or ValueError saying why it is none. The reason never quotes the value:
    it is stored and shown, and the value may be someone's address."""
    if not isinstance(raw, str):
        raise ValueError("an address must be text (a string)")
    value = raw.strip()
    if not value:
        raise ValueError("address is empty")
    if channel == "email":
        return normalize_email(value)
    return normalize_phone(value)


def normalize_email(value: str) -> str:
    """Lower case with an IDNA (ASCII) domain, if email-validator finds it a deliverable form of address: no
    quoted or bracketed parts, no ``..``, a domain with a dot that is not special-use (``localhost``, ``.test``),
    no IP literal, a local part of at most 64 characters, no control or direction-changing characters."""
    try:
        checked = email_validator.validate_email(
            value, check_deliverability=False, allow_quoted_local=False, allow_domain_literal=False
        )
    except email_validator.EmailNotValidError as exc:
        raise ValueError(f"is not an email address: {mask(str(exc))}") from None
    domain = checked.ascii_domain or checked.domain
    return f"{checked.local_part}@{domain}".lower()


# What people write in a phone number besides digits; a letter (a vanity number, an extension) is refused: the
# parser would turn ABC into 222 or drop "ext 34" without a word, and a message cannot reach an extension.
PHONE_CHARACTERS = frozenset("0123456789+-(). \t/")
NOT_DIGITS = "is not a phone number: digits, spaces and + - ( ) . / only (no letters, no extension)"


def normalize_phone(value: str) -> str:
    if len(value) > 64:
        raise ValueError("is not a phone number: over 64 characters")
    if not set(value) <= PHONE_CHARACTERS:
        raise ValueError(NOT_DIGITS)
    try:
        number = phonenumbers.parse(value, settings.DEFAULT_PHONE_REGION)
    except phonenumbers.NumberParseException:
        raise ValueError("is not a phone number") from None
    if number.extension:
        raise ValueError("is not a phone number: it has an extension, which a text message cannot reach")
    if not phonenumbers.is_possible_number(number):
        raise ValueError("is not a possible phone number")
    return phonenumbers.format_number(number, phonenumbers.PhoneNumberFormat.E164)


# --- addresses, fast ------------------------------------------------------------------------------------

E164 = re.compile(r"\+[1-9]\d{7,14}")
# Country calling codes as text; no code is a prefix of another, so the first of 1, 2, 3 digits that is one is it.
COUNTRY_CODES = frozenset(str(code) for code in phonenumbers.COUNTRY_CODE_TO_REGION_CODE)
_phone_metadata: dict[str, tuple[re.Pattern[str] | None, frozenset[int]] | None] = {}


def _metadata(country_code: str) -> tuple[re.Pattern[str] | None, frozenset[int]] | None:
    """(national prefix for parsing, possible national lengths) of the country's main region."""
    if country_code not in _phone_metadata:
        code = int(country_code)
        meta = phonenumbers.PhoneMetadata.metadata_for_region_or_calling_code(
            code, phonenumbers.region_code_for_country_code(code)
        )
        if meta is None or meta.general_desc is None:
            _phone_metadata[country_code] = None
        else:
            prefix = re.compile(meta.national_prefix_for_parsing) if meta.national_prefix_for_parsing else None
            _phone_metadata[country_code] = (prefix, frozenset(meta.general_desc.possible_length))
    return _phone_metadata[country_code]


def already_e164(value: str) -> bool:
    """True when ``value`` is certainly its own E.164 normal form, without a full parse (~1 us, not ~15 us).

    Conservative: only ``+<country code><national number>`` where the national number has a possible length
    for the country, does not start with 0 and has nothing phonenumbers would strip as a national prefix.
    Anything else goes through phonenumbers. tests/receipts/actions/test_suppression_list.py checks it agrees with
    phonenumbers on random numbers of every country code.
    """
    if not E164.fullmatch(value):
        return False
    if value[1:2] in COUNTRY_CODES:
        country_code = value[1:2]
    elif value[1:3] in COUNTRY_CODES:
        country_code = value[1:3]
    elif value[1:4] in COUNTRY_CODES:
        country_code = value[1:4]
    else:
        return False
    national = value[1 + len(country_code) :]
    meta = _phone_metadata[country_code] if country_code in _phone_metadata else _metadata(country_code)
    if meta is None or national[0] == "0":
        return False
    prefix, lengths = meta
    return len(national) in lengths and not (prefix and prefix.match(national))


# Separators people type in phone numbers; anything else (letters, extensions) takes the full parse.
SEPARATORS = str.maketrans("", "", " ()-.")
_regions: dict[str, tuple[str, re.Pattern[str] | None] | None] = {}


def _region(code: str) -> tuple[str, re.Pattern[str] | None] | None:
    """(country code, international prefix) of a region that is the main one of its country code, else None
    (a region sharing its code, such as CX with AU, parses national numbers with rules of its own)."""
    if code not in _regions:
        country = phonenumbers.country_code_for_region(code)
        meta = phonenumbers.PhoneMetadata.metadata_for_region(code)
        if not country or meta is None or phonenumbers.region_code_for_country_code(country) != code:
            _regions[code] = None
        else:
            idd = re.compile(meta.international_prefix) if meta.international_prefix else None
            _regions[code] = (str(country), idd)
    return _regions[code]


def fast_e164(raw: str) -> str | None:
    """The E.164 form of a phone number typed plainly (``+1 555-123-4567``, ``(555) 123-4567`` in the default
    region), or None when only the full parse can say. Agrees with ``normalize_address`` wherever it answers."""
    value = raw.strip()
    if already_e164(value):
        return value
    digits = value.translate(SEPARATORS)
    if not digits.isascii():
        return None
    if digits.startswith("+"):
        candidate = digits
    elif digits.isdigit():
        region = _region(settings.DEFAULT_PHONE_REGION)
        if region is None:
            return None
        country, idd = region
        # A national number that starts with its own country code, or with the region's international dialling
        # prefix, may be read either way: let phonenumbers decide.
        if digits.startswith(country) or (idd is not None and idd.match(digits)):
            return None
        candidate = f"+{country}{digits}"
    else:
        return None
    return candidate if already_e164(candidate) else None


def normalize_fast(channel: str, raw: str) -> str:
    """``normalize_address`` with a fast path for plainly typed phone numbers (the check endpoint's bulk)."""
    if channel == "sms" and isinstance(raw, str):
        fast = fast_e164(raw)
        if fast is not None:
            return fast
    return normalize_address(channel, raw)
