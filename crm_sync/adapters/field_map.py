"""Which CRM field gets which value: ``CRM_FIELD_MAP``, data rather than code.

The map is a JSON object from CRM field name to a rule, or to a list of rules (later rules and later changes
win). A rule is either:

- a string: a key of the change's payload (dotted for nested keys, ``change.<attr>`` for the change's own
  ``kind``, ``occurred_at``, ``crm_record_id``, ``message_id``, ``idempotency_key``, ``sequence``); the field takes
  that value from every change whose payload has it;
- an object ``{"kinds": [...], "where": {key: value or [values]}, "from": "<key>"}`` or with ``"value": <constant>``
  instead of ``"from"``: it applies only to changes of those kinds whose payload matches every ``where``.

The changes of one CRM record are applied oldest first, so the record ends with the latest value of each field,
and a field no change speaks to is left out (never blanked).
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from django.conf import settings
from django.utils.dateparse import parse_datetime

from crm_sync.adapters.base import Change

# Status fields are custom fields the CRM admin creates; the opt-out and bounce fields are Contact's own.
DEFAULT_FIELD_MAP: dict[str, Any] = {
    "Delivery_Status__c": "status",
    "Delivery_Status_At__c": "status_at",
    "Delivery_Failure_Reason__c": "failure_category",
    "Delivery_Needs_Review__c": "needs_review",
    "Delivery_Review_Reason__c": "review_reason",
    # A reply that confirmed the message ("Reply YES to confirm"): when, and the word.
    "Delivery_Confirmed_At__c": {"kinds": ["confirmation"], "from": "confirmed_at"},
    "Delivery_Confirmation__c": {"kinds": ["confirmation"], "from": "confirmation"},
    "HasOptedOutOfEmail": [
        {
            "kinds": ["suppression_added"],
            "where": {"channel": "email", "reason": ["unsubscribe", "complaint"]},
            "value": True,
        },
        {"kinds": ["suppression_lifted"], "where": {"channel": "email", "reason": "unsubscribe"}, "value": False},
    ],
    "EmailBouncedReason": {
        "kinds": ["suppression_added"],
        "where": {"channel": "email", "reason": "hard_bounce"},
        "from": "detail",
    },
    "EmailBouncedDate": {
        "kinds": ["suppression_added"],
        "where": {"channel": "email", "reason": "hard_bounce"},
        "from": "change.occurred_at",
    },
}

CHANGE_ATTRIBUTES = {"kind", "occurred_at", "crm_record_id", "message_id", "idempotency_key", "sequence"}
MISSING = object()


def field_map() -> dict[str, Any]:
    configured = settings.CRM_FIELD_MAP
    return DEFAULT_FIELD_MAP if configured is None else configured


def validate(mapping: Any) -> list[str]:
    """Problems with a field map, as sentences (empty when it is usable)."""
    if not isinstance(mapping, dict) or not mapping:
        return ["CRM_FIELD_MAP must be a non-empty JSON object of CRM field name to rule."]
    problems = []
    for name, rules in mapping.items():
        for rule in rules if isinstance(rules, list) else [rules]:
            if isinstance(rule, str) and rule:
                continue
            if not isinstance(rule, dict):
                problems.append(f"{name}: a rule is a payload key or an object, not {rule!r}.")
                continue
            if ("from" in rule) == ("value" in rule):
                problems.append(f"{name}: a rule object needs exactly one of 'from' and 'value'.")
            if "from" in rule and not (isinstance(rule["from"], str) and rule["from"]):
                problems.append(f"{name}: 'from' must name a payload key.")
            unknown = set(rule) - {"kinds", "where", "from", "value"}
            if unknown:
                problems.append(f"{name}: unknown rule keys {sorted(unknown)}.")
            if not isinstance(rule.get("kinds", []), list) or not isinstance(rule.get("where", {}), dict):
                problems.append(f"{name}: 'kinds' must be a list and 'where' an object.")
    return problems


def lookup(change: Change, path: str) -> Any:
    if path.startswith("change."):
        attr = path.removeprefix("change.")
        if attr not in CHANGE_ATTRIBUTES:
            return MISSING
        value: Any = getattr(change, attr)
        return salesforce_datetime(value) if attr == "occurred_at" else value
    value = change.payload
    for part in path.split("."):
        if not isinstance(value, dict) or part not in value:
            return MISSING
        value = value[part]
    if path.endswith("_at") and isinstance(value, str):  # a time in the payload (status_at, confirmed_at, ...)
        parsed = parse_datetime(value)
        return salesforce_datetime(parsed) if parsed is not None and parsed.tzinfo is not None else value
    return value


def salesforce_datetime(value: datetime) -> str:
    """A dateTime as the Salesforce REST API documents it, ``yyyy-MM-ddTHH:mm:ss.SSSZ`` in UTC (milliseconds: it
    refuses Python's microseconds and ``+00:00`` is not among its documented forms)."""
    utc = value.astimezone(UTC)
    return f"{utc:%Y-%m-%dT%H:%M:%S}.{utc.microsecond // 1000:03d}Z"


def matches(change: Change, rule: dict[str, Any]) -> bool:
    kinds = rule.get("kinds")
    if kinds and change.kind not in kinds:
        return False
    for key, wanted in rule.get("where", {}).items():
        value = lookup(change, key)
        if value is MISSING or value not in (wanted if isinstance(wanted, list) else [wanted]):
            return False
    return True


def fields_for(changes: list[Change], mapping: dict[str, Any] | None = None) -> dict[str, Any]:
    """The CRM fields these changes (oldest first) set."""
    mapping = field_map() if mapping is None else mapping
    fields: dict[str, Any] = {}
    for change in changes:
        for name, rules in mapping.items():
            for rule in rules if isinstance(rules, list) else [rules]:
                if isinstance(rule, str):
                    value = lookup(change, rule)
                elif not matches(change, rule):
                    continue
                elif "value" in rule:
                    value = rule["value"]
                else:
                    value = lookup(change, rule["from"])
                if value is not MISSING:
                    fields[name] = value
    return fields
