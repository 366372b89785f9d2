"""The OpenAPI schema says what the API answers, errors included, and what it takes: an address is a phone number
on sms and an email address on email (drf-spectacular postprocessing hooks)."""

from __future__ import annotations

from typing import Any

ERROR_SCHEMA = {
    "type": "object",
    "properties": {
        "error": {"type": "string", "description": "What is wrong, in a sentence."},
        "detail": {"description": "The details: per field for a request that does not validate."},
    },
    "required": ["error"],
}
ERRORS = {
    "400": "The request is not valid: `error` names the problem, `detail` the fields.",
    "401": "No token, or a token that is unknown or revoked.",
    "403": "The token lacks the scope this needs (`read` for GET, `write` for the rest).",
    "404": "No such object, or a cursor this API did not hand out.",
    "405": "The method is not allowed on this path.",
    "413": "The request body is over API_MAX_BODY.",
    "415": "The body is not JSON (or a form).",
}


def add_error_responses(result: dict[str, Any], generator: Any, request: Any, public: bool) -> dict[str, Any]:
    """Every API operation documents the error answers every API operation can give, in the one error shape."""
    result.setdefault("components", {}).setdefault("schemas", {})["Error"] = ERROR_SCHEMA
    reference = {"application/json": {"schema": {"$ref": "#/components/schemas/Error"}}}
    for path, operations in result.get("paths", {}).items():
        if not path.startswith("/api/v1/"):
            continue
        for operation in operations.values():
            responses = operation.setdefault("responses", {})
            for status, description in ERRORS.items():
                responses.setdefault(status, {"description": description, "content": reference})
    return result


# An address as receipts.addresses.normalize_address takes it. Only a parse can say whether a string is a possible
# phone number (libphonenumber, DEFAULT_PHONE_REGION for national numbers) or a deliverable form of email address
# (email-validator), hence the formats. No pattern beside them: a pattern would promise that any string it matches
# is taken (schemathesis draws from the pattern, not the format, when a field has both), and "0" is no number.
PHONE = {
    "type": "string",
    "format": "phone",
    "description": "A possible phone number, in E.164 or national in DEFAULT_PHONE_REGION: digits, spaces and "
    "+ - ( ) . / only, at most 64 characters; no letters, no extension.",
}
EMAIL = {
    "type": "string",
    "format": "email",
    "description": "An email address: no quoted local part, no IP literal, no special-use domain (localhost, .test), "
    "a local part of at most 64 characters.",
}
ADDRESSES = {"sms": PHONE, "email": EMAIL}
# Request bodies whose address field depends on their channel: one branch per channel.
ADDRESSED_BODIES = {"RegisterMessage": "to", "AddSuppression": "address", "NewSend": "to"}


def split_addresses_by_channel(result: dict[str, Any], generator: Any, request: Any, public: bool) -> dict[str, Any]:
    """A body with a channel and an address is one of two shapes: the channel sms with a phone number, or the
    channel email with an email address."""
    schemas = result.get("components", {}).get("schemas", {})
    for name, field in ADDRESSED_BODIES.items():
        body = schemas.get(name)
        if body is None or "properties" not in body:
            continue
        branches = [
            {
                **body,
                "properties": {
                    **body["properties"],
                    "channel": {"type": "string", "enum": [channel]},
                    field: address,
                },
            }
            for channel, address in ADDRESSES.items()
        ]
        schemas[name] = {"oneOf": branches}
    return result


WEBHOOK_READY = {"description": "The URL is ready for receipts (Webex Connect asks with HEAD before it saves it)."}


def add_webhook_head(result: dict[str, Any], generator: Any, request: Any, public: bool) -> dict[str, Any]:
    """HEAD on a webhook answers as GET does, without a body (drf-spectacular documents no HEAD)."""
    for path, operations in result.get("paths", {}).items():
        if path.startswith("/webhooks/") and "get" in operations:
            get = operations["get"]
            operations["head"] = {
                **get,
                "operationId": get["operationId"].replace("_retrieve", "_head"),
                "responses": {"200": WEBHOOK_READY},
            }
    return result
