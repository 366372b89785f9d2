"""The suppression list's own actions: add, lift, history, expiry, check, import; the fast E.164 path."""

from __future__ import annotations

import random
import threading
from datetime import timedelta
from typing import Any

import phonenumbers
import pytest
from django.db import connection
from django.utils import timezone

from receipts import addresses
from receipts.actions import suppression
from receipts.addresses import NOT_DIGITS, normalize_address
from receipts.events import Kind
from receipts.models import Suppression
from tests.apprunner import READY_TIMEOUT
from tests.conftest import register
from tests.receipts.actions.support import recorded_events

NUMBER = "+15551234567"


# --- normalisation (no database) --------------------------------------------------------------------------


def reference(value: str) -> str | None:
    try:
        return normalize_address("sms", value)
    except ValueError:
        return None


def test_fast_e164_path_agrees_with_phonenumbers_for_every_country_code(settings: Any) -> None:
    rng = random.Random(20261122)
    fast = 0
    for country_code in phonenumbers.COUNTRY_CODE_TO_REGION_CODE:
        for _ in range(60):
            national = "".join(rng.choice("0123456789") for _ in range(rng.randint(4, 14)))
            value = f"+{country_code}{national}"
            if addresses.already_e164(value):
                fast += 1
                assert reference(value) == value, value
    assert fast > 1000  # the fast path is taken for a good share of real-looking numbers


def decorated(rng: random.Random, digits: str) -> str:
    return "".join(rng.choice(["", "", "", " ", "-", ".", "(", ")"]) + d for d in digits)


@pytest.mark.parametrize("region", ["US", "GB", "DE", "FR", "IT", "IN", "BR", "AR", "JP", "AU", "CX", "KP", "TJ"])
def test_fast_path_for_typed_numbers_agrees_with_phonenumbers_in_each_region(settings: Any, region: str) -> None:
    settings.DEFAULT_PHONE_REGION = region
    meta = phonenumbers.PhoneMetadata.metadata_for_region(region)
    rng = random.Random(region)
    for _ in range(400):
        national = "".join(rng.choice("0123456789") for _ in range(rng.choice([*meta.general_desc.possible_length, 9])))
        for value in (decorated(rng, national), f"+{meta.country_code} " + decorated(rng, national)):
            fast = addresses.fast_e164(value)
            if fast is not None:
                assert reference(value) == fast, (region, value)


@pytest.mark.parametrize(
    "value",
    ["+15551234567", "+447911123456", "+4407911123456", "+390612345678", "+61412345678", "+8613812345678"],
)
def test_normalize_gives_what_normalize_address_gives(value: str) -> None:
    assert addresses.normalize_fast("sms", value) == normalize_address("sms", value)


@pytest.mark.parametrize(
    ("channel", "raw", "expected"),
    [
        ("sms", "(555) 123-4567", NUMBER),
        ("sms", " +1 555 123 4567 ", NUMBER),
        ("email", "Ana@Bücher.Example", "ana@xn--bcher-kva.example"),
    ],
)
def test_addresses_are_normalised_before_they_are_compared(channel: str, raw: str, expected: str) -> None:
    assert addresses.normalize_fast(channel, raw) == expected


# --- add and lift ---------------------------------------------------------------------------------------


@pytest.mark.django_db
def test_suppress_keeps_who_when_why_and_is_idempotent_per_reason(time_machine: Any) -> None:
    time_machine.move_to("2026-11-20T10:00:00Z", tick=False)
    row, created = suppression.suppress(
        "sms", "(555) 123-4567", "manual", source="operator", actor="operator:ann", note="asked by phone"
    )
    assert created
    assert (row.address, row.created_by, row.note, row.created_at) == (
        NUMBER,
        "operator:ann",
        "asked by phone",
        timezone.now(),
    )
    again, created = suppression.suppress("sms", NUMBER, "manual", source="api", actor="api:crm")
    assert (again.pk, created) == (row.pk, False)
    other, created = suppression.suppress("sms", NUMBER, "unsubscribe", source="api", actor="api:crm")
    assert created and other.pk != row.pk
    assert [h.action for h in row.history.all()] == ["added"]


@pytest.mark.django_db
def test_suppress_refuses_bad_input() -> None:
    with pytest.raises(ValueError, match="not a phone number"):
        suppression.suppress("sms", "call me", "manual", source="api")
    with pytest.raises(ValueError, match="unknown reason"):
        suppression.suppress("sms", NUMBER, "because", source="api")
    with pytest.raises(ValueError, match="in the past"):
        suppression.suppress("sms", NUMBER, "manual", source="api", expires_at=timezone.now() - timedelta(seconds=1))


@pytest.mark.django_db
def test_lift_needs_a_reason_keeps_it_and_happens_once() -> None:
    row, _ = suppression.suppress("sms", NUMBER, "unsubscribe", source="api", actor="api:crm")
    with pytest.raises(ValueError, match="needs a reason"):
        suppression.lift(row.pk, reason="  ", source="operator")

    lifted = suppression.lift(row.pk, reason="customer asked to resubscribe", source="operator", actor="operator:bo")

    assert (lifted.lifted_by, lifted.lift_reason, lifted.lift_source) == (
        "operator:bo",
        "customer asked to resubscribe",
        "operator",
    )
    history = list(lifted.history.all())
    assert [(h.action, h.actor) for h in history] == [("added", "api:crm"), ("lifted", "operator:bo")]
    assert history[1].note == "customer asked to resubscribe"
    with pytest.raises(suppression.NotActive):
        suppression.lift(row.pk, reason="again", source="operator")
    with pytest.raises(Suppression.DoesNotExist):
        suppression.lift(row.pk + 1000, reason="no such", source="operator")


@pytest.mark.django_db
def test_a_lifted_address_can_be_suppressed_again_as_a_new_entry() -> None:
    first, _ = suppression.suppress("sms", NUMBER, "unsubscribe", source="api")
    suppression.lift(first.pk, reason="resubscribed", source="api")
    second, created = suppression.suppress("sms", NUMBER, "unsubscribe", source="api")
    assert created and second.pk != first.pk
    assert suppression.is_suppressed("sms", NUMBER) == ["unsubscribe"]


@pytest.mark.django_db
def test_re_adding_over_an_expired_entry_closes_it_first(time_machine: Any) -> None:
    time_machine.move_to("2026-11-01T10:00:00Z", tick=False)
    old, _ = suppression.suppress(
        "email", "a@example.com", "soft_bounce_threshold", source="api", expires_at=timezone.now() + timedelta(days=1)
    )
    time_machine.shift(timedelta(days=2))  # expired; the expiry sweep has not run yet

    new, created = suppression.suppress("email", "a@example.com", "soft_bounce_threshold", source="api")

    old.refresh_from_db()
    assert created and new.pk != old.pk
    assert (old.lifted_at, old.lift_reason) == (old.expires_at, "expired")
    assert [h.action for h in old.history.all()] == ["added", "expired"]


@pytest.mark.django_db
def test_every_add_and_lift_is_announced_to_the_crm() -> None:
    message = register(provider="genesys_sms", provider_message_id="m-1", to=NUMBER, crm_record_id="CRM-7")
    with recorded_events() as seen:
        row, _ = suppression.suppress("sms", NUMBER, "manual", source="operator", actor="operator:ann")
        suppression.lift(row.pk, reason="mistake", source="operator", actor="operator:ann")
    assert [(e.kind, e.crm_record_id, e.message_id, e.payload["suppressed"]) for e in seen] == [
        (Kind.SUPPRESSION_ADDED, "CRM-7", message.pk, True),
        (Kind.SUPPRESSION_LIFTED, "CRM-7", message.pk, False),
    ]
    assert seen[1].payload["source"] == "operator"


# --- check ----------------------------------------------------------------------------------------------


@pytest.mark.django_db
def test_check_answers_each_address_in_order_with_its_reasons(time_machine: Any) -> None:
    time_machine.move_to("2026-11-20T10:00:00Z", tick=False)
    until = timezone.now() + timedelta(days=3)
    suppression.suppress("sms", "+15550000001", "unsubscribe", source="api")
    suppression.suppress("sms", "+15550000001", "invalid_destination", source="api")
    suppression.suppress("sms", "+15550000002", "soft_bounce_threshold", source="api", expires_at=until)
    lifted, _ = suppression.suppress("sms", "+15550000003", "manual", source="api")
    suppression.lift(lifted.pk, reason="ok again", source="api")
    suppression.suppress("email", "x@example.com", "hard_bounce", source="api")

    results = suppression.check("sms", ["(555) 000-0001", "+15550000002", "+15550000003", "nope", "+15550000004"])

    assert results == [
        {
            "address": "(555) 000-0001",
            "normalized": "+15550000001",
            "suppressed": True,
            "reasons": ["invalid_destination", "unsubscribe"],
            "until": None,
        },
        {
            "address": "+15550000002",
            "normalized": "+15550000002",
            "suppressed": True,
            "reasons": ["soft_bounce_threshold"],
            "until": until.isoformat(),
        },
        {"address": "+15550000003", "normalized": "+15550000003", "suppressed": False},
        {"address": "nope", "normalized": None, "suppressed": False, "error": NOT_DIGITS},
        {"address": "+15550000004", "normalized": "+15550000004", "suppressed": False},
    ]
    time_machine.shift(timedelta(days=3))
    assert suppression.check("sms", ["+15550000002"])[0]["suppressed"] is False


@pytest.mark.django_db
def test_check_of_many_addresses_costs_one_query_per_thousand(django_assert_num_queries: Any) -> None:
    suppression.suppress("sms", "+15550001234", "unsubscribe", source="api")
    addresses = [f"+1555000{i:04d}" for i in range(2500)]
    with django_assert_num_queries(3):
        results = suppression.check("sms", addresses)
    assert [r["normalized"] for r in results if r["suppressed"]] == ["+15550001234"]


# --- import ---------------------------------------------------------------------------------------------


@pytest.mark.django_db
def test_import_adds_good_rows_and_refuses_the_rest_saying_why(time_machine: Any) -> None:
    time_machine.move_to("2026-11-20T10:00:00Z", tick=False)
    suppression.suppress("sms", "+15550000009", "manual", source="api")
    rows = [
        (2, {"channel": "sms", "address": "(555) 000-0001", "reason": "unsubscribe", "note": "paper form"}),
        (3, {"channel": "email", "address": "A@Example.com", "reason": "", "expires_at": "2026-12-31"}),
        (4, {"channel": "fax", "address": "123"}),
        (5, {"channel": "sms", "address": "not a number"}),
        (6, {"channel": "sms", "address": "+15550000002", "reason": "spam"}),
        (7, {"channel": "sms", "address": "+15550000003", "expires_at": "2020-01-01"}),
        (8, {"channel": "sms", "address": "+1 555 000 0001", "reason": "unsubscribe"}),
        (9, {"channel": "sms", "address": "+15550000009", "reason": "manual"}),
        (10, {"channel": "sms", "address": "+15550000004", "expires_at": "next week"}),
    ]

    report = suppression.import_rows(rows, actor="import:ann")

    assert (report.added, report.already) == (2, 1)
    refused = {line: why for line, why, _ in report.refused}
    assert refused == {
        4: "channel must be one of sms, email, got 'fax'",
        5: NOT_DIGITS,
        6: "reason must be one of hard_bounce, soft_bounce_threshold, complaint, unsubscribe, "
        "invalid_destination, manual, got 'spam'",
        7: "expires_at 2020-01-01 is in the past",
        8: "duplicate of line 2",
        10: "expires_at 'next week' is not an ISO 8601 date or time",
    }
    imported = Suppression.objects.filter(source="import").order_by("id")
    assert [(r.address, r.reason, r.created_by) for r in imported] == [
        ("+15550000001", "unsubscribe", "import:ann"),
        ("a@example.com", "manual", "import:ann"),
    ]
    assert imported[1].expires_at.isoformat() == "2026-12-31T00:00:00+00:00"


@pytest.mark.django_db
def test_lookup_copes_with_an_address_holding_the_chunk_separator() -> None:
    Suppression.objects.create(channel="email", address="odd one@example.com", reason="manual", source="import")
    found = suppression.active_in("email", ["odd one@example.com", "a@example.com"], timezone.now())
    assert dict(found) == {"odd one@example.com": [("manual", None)]}


def test_concurrent_adds_of_one_address_leave_one_entry(transactional_db: None) -> None:
    start = threading.Barrier(4)
    results: list[tuple[int, bool]] = []

    def add() -> None:
        start.wait()
        try:
            row, created = suppression.suppress("sms", NUMBER, "unsubscribe", source="api", actor="api:crm")
            results.append((row.pk, created))
        finally:
            connection.close()  # this thread's own connection

    threads = [threading.Thread(target=add) for _ in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=READY_TIMEOUT)

    assert len({pk for pk, _ in results}) == 1 and len(results) == 4
    assert sum(created for _, created in results) == 1
    row = Suppression.objects.get()
    assert [h.action for h in row.history.all()] == ["added"]
