"""The REST API against its own OpenAPI schema, with schemathesis: every operation, generated requests (valid and
not), then call sequences through the schema's links. No answer is a server error, and every answer matches the
schema (status code, content type, body, headers)."""

from __future__ import annotations

from typing import Any

import pytest
import schemathesis
from hypothesis import HealthCheck, settings
from schemathesis import checks

from campaigns.models import Campaign, Contact, Send
from config.wsgi import application
from crm_sync.models import OutboxMessage
from receipts.models import ApiClient, Message, MessageEvent, Suppression, SuppressionChange

schema = schemathesis.openapi.from_wsgi("/api/schema/", application).include(path_regex="^/api/v1/")

# What the answers must be. Left out: positive_data_acceptance and negative_data_rejection judge how strictly the
# API validates requests against the schema's own constraints, not what it answers (see docs/operating.md). Tried:
# the first fails on what a schema cannot say (a string that is no phone number, `to`), the second on query
# parameters the API does not know and ignores, as DRF does. The change feed's parameters carry their bounds.
CHECKS = [
    checks.not_a_server_error,
    checks.status_code_conformance,
    checks.content_type_conformance,
    checks.response_schema_conformance,
    checks.response_headers_conformance,
]


@pytest.fixture
def token(transactional_db: Any) -> str:
    """A client with every scope. The WSGI app closes its connection after each request, as it does in
    production, so the test runs outside a transaction (transactional_db)."""
    return ApiClient.issue("schemathesis", ["read", "write"])[1]


@schema.parametrize()
@settings(deadline=None, suppress_health_check=list(HealthCheck))
def test_every_operation_answers_as_its_schema_says(case: Any, token: str) -> None:
    case.call_and_validate(headers={"Authorization": f"Token {token}"}, checks=CHECKS)


def test_call_sequences_through_the_links_answer_as_the_schema_says(token: str) -> None:
    """The stateful phase: schemathesis follows the links it infers (register a message, then read it; add a
    suppression, then read, lift and check it), with the same checks on every answer."""

    class Workflow(schema.as_state_machine()):  # type: ignore[misc]
        def get_call_kwargs(self, case: Any) -> dict[str, Any]:
            return {"headers": {"Authorization": f"Token {token}"}}

        def validate_response(self, response: Any, case: Any, **kwargs: Any) -> None:
            case.validate_response(response, checks=CHECKS, transport_kwargs=kwargs or None)

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
