"""The REST API against its own OpenAPI schema, with schemathesis: every operation, generated requests (valid and
not), then call sequences through the schema's links. No answer is a server error, every answer matches the schema
(status code, content type, body, headers), every request the schema allows is taken and every one it refuses is
refused."""

from __future__ import annotations

from datetime import datetime
from typing import Any

import phonenumbers
import pytest
import schemathesis
from django.http import Http404
from hypothesis import HealthCheck, settings
from hypothesis import strategies as st
from rest_framework.generics import get_object_or_404
from schemathesis import checks

from campaigns import lifecycle
from campaigns.models import Campaign, Contact, Send
from config.wsgi import application
from crm_sync.models import OutboxMessage
from receipts.addresses import normalize_address
from receipts.models import ApiClient, Message, MessageEvent, Suppression, SuppressionChange

schema = schemathesis.openapi.from_wsgi("/api/schema/", application).include(path_regex="^/api/v1/")
# The API refuses a NUL anywhere (docs/operating.md, "Errors"): one rule for every string, not a pattern on each.
# It ignores query parameters it does not know, as DRF does (?format=json is DRF's own): no unknown ones are sent
# as a request the API should refuse.
schema.config.generation.update(allow_x00=False, allow_extra_parameters=False)


def possible_phone_numbers() -> st.SearchStrategy[str]:
    """Numbers libphonenumber deems possible, as people type them: every region's example numbers, in E.164 and in
    the international format (spaces and dashes)."""
    numbers = []
    for region in sorted(phonenumbers.SUPPORTED_REGIONS):
        for kind in (phonenumbers.PhoneNumberType.MOBILE, phonenumbers.PhoneNumberType.FIXED_LINE):
            number = phonenumbers.example_number_for_type(region, kind)
            if number is not None:
                numbers.append(phonenumbers.format_number(number, phonenumbers.PhoneNumberFormat.E164))
                numbers.append(phonenumbers.format_number(number, phonenumbers.PhoneNumberFormat.INTERNATIONAL))
    return st.sampled_from([number for number in numbers if taken("sms", number)])


def taken(channel: str, address: str) -> bool:
    try:
        normalize_address(channel, address)
    except ValueError:
        return False
    return True


# The formats the schema names beyond what a pattern says (receipts/api/schema.py): values the API takes.
schemathesis.openapi.format("phone", possible_phone_numbers())
schemathesis.openapi.format(
    "email",
    st.from_regex(
        r"\A[a-z0-9]{1,20}([._+-][a-z0-9]{1,10})?@[a-z0-9]{1,20}(-[a-z0-9]{1,10})?\.(com|org|net|io)\Z"
    ).filter(lambda address: taken("email", address)),
)
# Every date-time the API takes: an expiry must be later than now, and a UTC offset at most 14:00 (the pattern says so).
schemathesis.openapi.format(
    "date-time",
    st.builds(
        lambda moment, minutes: (
            f"{moment:%Y-%m-%dT%H:%M:%S}{'-' if minutes < 0 else '+'}{abs(minutes) // 60:02d}:{abs(minutes) % 60:02d}"
        ),
        st.datetimes(min_value=datetime(2100, 1, 1), max_value=datetime(9998, 12, 31)),
        st.integers(-14 * 60, 14 * 60),
    ),
)

# What the answers must be, and how strictly requests are read: every request the schema allows is taken (2xx, or
# 401/403/404/409 for who asks and what exists), every one it refuses answers 4xx.
CHECKS = [
    checks.not_a_server_error,
    checks.status_code_conformance,
    checks.content_type_conformance,
    checks.response_schema_conformance,
    checks.response_headers_conformance,
]
STRICT = [checks.positive_data_acceptance, checks.negative_data_rejection]
# A campaign is also checked as a whole (campaigns.lifecycle.problems, documented on the operations): a template
# that parses and fits an SMS for its provider, a sender on SENDER_ALLOW_LIST, an IANA time zone, a subject for an
# email, a fallback on the other channel; a test send's `to` is an address on its campaign's channel. No schema of
# one field can say that, so on these operations a request the schema allows must be taken when it also meets
# those rules (WHOLE_CAMPAIGN); every request the schema refuses is refused, as everywhere.
WHOLE_CAMPAIGN = {
    "POST /api/v1/campaigns/",
    "PATCH /api/v1/campaigns/{id}/",
    "POST /api/v1/campaigns/{id}/test-send/",
    # A single send's `sender` must be on SENDER_ALLOW_LIST for its provider and fit its channel (an email address
    # for email, a number or sender id for SMS), and `sender_name` is for email only: settings and the channel's
    # value, which one field's schema cannot say (lifecycle.sender_problems).
    "POST /api/v1/sends/",
}


def checks_for(case: Any) -> list[Any]:
    if case.operation.label in WHOLE_CAMPAIGN and not meets_campaign_rules(case):
        return [*CHECKS, checks.negative_data_rejection]
    return CHECKS + STRICT


def meets_campaign_rules(case: Any) -> bool:
    """Whether a campaign operation's positive request (schema-valid) meets the campaign's own rules, on what the
    database holds now. A negative one never does."""
    if case.meta is None or not case.meta.generation.mode.is_positive:
        return False
    body = case.body if isinstance(case.body, dict) else {}
    if case.operation.label == "POST /api/v1/sends/":
        channel, provider = body.get("channel", ""), body.get("provider", "")
        return not lifecycle.sender_problems(channel, provider, body.get("sender", ""), body.get("sender_name", ""))
    if case.operation.label == "POST /api/v1/campaigns/":
        return not lifecycle.problems(body)
    try:
        campaign = get_object_or_404(Campaign, pk=(case.path_parameters or {}).get("id"))
    except Http404:
        campaign = None
    if campaign is None or case.operation.label == "PATCH /api/v1/campaigns/{id}/":
        # No campaign: 404; not a draft: 409 (both taken by the check); a draft: the change meets the rules.
        return campaign is None or not lifecycle.problems({**lifecycle.fields_of(campaign), **body})
    try:
        lifecycle.test_message(campaign, body.get("to"), body.get("contact") or {})
    except (lifecycle.LifecycleError, ValueError, TypeError):
        return False
    return True


@pytest.fixture
def token(transactional_db: Any) -> str:
    """A client with every scope. The WSGI app closes its connection after each request, as it does in
    production, so the test runs outside a transaction (transactional_db)."""
    return ApiClient.issue("schemathesis", ["read", "write"])[1]


@schema.parametrize()
@settings(deadline=None, suppress_health_check=list(HealthCheck))
def test_every_operation_answers_as_its_schema_says(case: Any, token: str) -> None:
    case.call_and_validate(headers={"Authorization": f"Token {token}"}, checks=checks_for(case))


# A draft's own operations: a change and a test send (excludes add up; includes would widen the API's include).
CAMPAIGN_OPERATIONS = schema.exclude(path_regex=r"^/api/v1/(?!campaigns/\{id\}/(test-send/)?$)").exclude(
    method=["GET", "HEAD", "DELETE"]
)


@pytest.fixture(params=["sms", "email"])
def draft(request: Any, token: str) -> Campaign:
    """A draft campaign to change and to test-send, on either channel; its template needs no contact values, so
    whether a test send meets the rules turns on its address."""
    email = request.param == "email"
    return Campaign.objects.create(
        name=f"draft {request.param}",
        channel=request.param,
        provider="genesys_cloud" if email else "genesys_sms",
        subject="Your appointment" if email else "",
        body="See you tomorrow at 10.",
    )


@CAMPAIGN_OPERATIONS.parametrize()
@settings(deadline=None, suppress_health_check=list(HealthCheck))
def test_a_drafts_changes_and_test_sends_answer_as_the_schema_and_the_rules_say(
    case: Any, token: str, draft: Campaign
) -> None:
    """With a draft in place (the links reach one only when a generated campaign was valid): every change and
    test send that meets the schema and the campaign's rules is taken, every one the schema refuses is refused."""
    case.path_parameters = {**(case.path_parameters or {}), "id": str(draft.pk)}
    case.call_and_validate(headers={"Authorization": f"Token {token}"}, checks=checks_for(case))
    Campaign.objects.filter(pk=draft.pk).update(**lifecycle.fields_of(draft), name=draft.name)
    Send.objects.all().delete()


def test_call_sequences_through_the_links_answer_as_the_schema_says(token: str) -> None:
    """The stateful phase: schemathesis follows the links it infers (register a message, then read it; add a
    suppression, then read, lift and check it), with the same checks on every answer."""

    class Workflow(schema.as_state_machine()):  # type: ignore[misc]
        def get_call_kwargs(self, case: Any) -> dict[str, Any]:
            return {"headers": {"Authorization": f"Token {token}"}}

        def validate_response(self, response: Any, case: Any, **kwargs: Any) -> None:
            case.validate_response(response, checks=checks_for(case), transport_kwargs=kwargs or None)

        def teardown(self) -> None:
            # Every sequence starts from the same empty API: hypothesis replays sequences, and what a sequence can
            # do next depends on what the API answered before.
            super().teardown()
            for model in (
                MessageEvent,
                Message,
                SuppressionChange,
                Suppression,
                Send,
                Contact,
                Campaign,
                OutboxMessage,
            ):
                model._default_manager.all().delete()

    Workflow.run(settings=settings(deadline=None, suppress_health_check=list(HealthCheck), stateful_step_count=6))


WEBHOOK_PATHS = ["/webhooks/genesys-cloud/", "/webhooks/genesys-sms/", "/webhooks/webex-connect/", "/webhooks/generic/"]


@pytest.mark.parametrize("path", WEBHOOK_PATHS)
def test_webhook_get_and_head_answer_as_the_schema_says(transactional_db: Any, path: str) -> None:
    """The webhooks' GET and HEAD (a provider checking the URL) are in the schema with what they answer."""
    whole = schemathesis.openapi.from_wsgi("/api/schema/", application)
    for method in ("GET", "HEAD"):
        whole[path][method].Case().call_and_validate(checks=CHECKS + STRICT)
