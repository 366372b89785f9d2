"""What an operator meets around the pipeline: start-up checks, the first admin, logs without addresses."""

from __future__ import annotations

import logging
from io import StringIO
from typing import Any

import pytest
from django.contrib.auth import get_user_model
from django.core.management import call_command

from receipts.checks import check_secrets
from receipts.logging import mask


def ids(problems: list) -> set[str]:
    return {p.id for p in problems}


def test_missing_secret_key_is_an_error_that_says_what_to_set(settings: Any) -> None:
    settings.SECRET_KEY = ""
    problems = check_secrets(None)
    assert "receipts.E001" in ids(problems)
    assert "SECRET_KEY" in next(p for p in problems if p.id == "receipts.E001").hint


def test_webhooks_without_credentials_warn(settings: Any) -> None:
    settings.WEBHOOK_BASIC_AUTH = []
    settings.WEBHOOK_SECRET_GENESYS_SMS = []
    problems = check_secrets(None)
    assert ids(problems) == {"receipts.W001"}
    assert "WEBHOOK_SECRET_GENESYS_SMS" in problems[0].msg


def test_malformed_basic_auth_and_generic_secret_are_errors(settings: Any) -> None:
    settings.WEBHOOK_BASIC_AUTH = ["no-colon"]
    settings.WEBHOOK_SECRET_GENERIC = ["plain"]
    assert {"receipts.E002", "receipts.E003"} <= ids(check_secrets(None))


@pytest.mark.parametrize(
    ("secret", "problem"),
    [("whsec_not base64!", "its key is not base64"), ("c2VjcmV0", "it does not start with whsec_")],
)
def test_a_generic_secret_that_cannot_be_decoded_is_refused_saying_why(
    settings: Any, secret: str, problem: str
) -> None:
    settings.WEBHOOK_SECRET_GENERIC = [secret]
    [error] = [p for p in check_secrets(None) if p.id == "receipts.E003"]
    assert problem in error.msg


def test_an_unpadded_generic_secret_is_fine(settings: Any) -> None:
    settings.WEBHOOK_SECRET_GENERIC = ["whsec_c2VjcmV0IGtleQ"]  # "secret key", its padding left off
    assert "receipts.E003" not in ids(check_secrets(None))


@pytest.mark.django_db
def test_bootstrap_admin_creates_one_admin_and_prints_its_password_once() -> None:
    first, second = StringIO(), StringIO()
    call_command("bootstrap_admin", stdout=first)
    call_command("bootstrap_admin", stdout=second)

    password = first.getvalue().split("password: ")[1].split()[0]
    admin = get_user_model().objects.get(username="admin")
    assert admin.is_superuser
    assert admin.check_password(password)
    assert second.getvalue() == ""


@pytest.mark.parametrize(
    ("line", "masked"),
    [
        ("to +15551234567 failed", "to ***67 failed"),
        ("to +1 (555) 123-4567.", "to ***67."),
        ("alice.smith@example.com bounced", "a***@example.com bounced"),
        ("msisdn 15551234567", "msisdn ***67"),
        ("to=%2B15551234567&x=1", "to=***67&x=1"),
        ("email=alice%40example.com", "email=a***@example.com"),
        ('{"to": "alice\\u0040example.com"}', '{"to": "a***@example.com"}'),
        ("call 555-123-4567 now", "call ***67 now"),
        ("call (555) 123-4567 now", "call ***67 now"),
        ("call 555.123.4567 now", "call ***67 now"),
    ],
)
def test_addresses_are_masked(line: str, masked: str) -> None:
    assert mask(line) == masked


@pytest.mark.parametrize(
    "line",
    [
        "task 71be96e0-e6e4-4a50-52e5-cab944130000 done",
        "at 2026-11-22 05:30:52,985",
        "event 12345 of 8c1f5e3a2b7d4c9e",
        "took 123.456 ms at 10:15:09.480",
        "version 1.2.3, ids 100-200-300",
    ],
)
def test_ids_and_times_are_not_mistaken_for_phone_numbers(line: str) -> None:
    assert mask(line) == line


def test_every_log_record_is_masked(caplog: pytest.LogCaptureFixture) -> None:
    from receipts.logging import MaskAddressesFilter

    logger = logging.getLogger("receipts.test")
    handler = caplog.handler
    handler.addFilter(MaskAddressesFilter())
    try:
        logger.warning("message to %s from %s", "+15551234567", "bob@example.org")
    finally:
        handler.removeFilter(handler.filters[-1])
    assert caplog.records[-1].getMessage() == "message to ***67 from b***@example.org"


def test_a_traceback_is_masked_too(caplog: pytest.LogCaptureFixture) -> None:
    """A database error quotes the failing row (DETAIL, LINE, CONTEXT): the traceback is masked like the message."""
    from receipts.logging import MaskAddressesFilter

    logger = logging.getLogger("receipts.test")
    handler = caplog.handler
    handler.addFilter(MaskAddressesFilter())
    try:
        try:
            raise ValueError('DETAIL:  Key (to)=(+15551234567) already exists. LINE 1: "alice@example.com"')
        except ValueError:
            logger.exception("insert failed")
    finally:
        handler.removeFilter(handler.filters[-1])
    text = caplog.text
    assert "insert failed" in text and "***67" in text and "a***@example.com" in text
    assert "+15551234567" not in text and "alice@example.com" not in text
