"""The OpenAPI schema says what the API answers, errors included (drf-spectacular postprocessing hook)."""

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
