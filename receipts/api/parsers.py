"""The API's JSON parser. A module of its own: DRF resolves ``DEFAULT_PARSER_CLASSES`` while it defines
``APIView``, so this must not import ``rest_framework.views`` (or anything that does)."""

from __future__ import annotations

import json
from typing import Any

from rest_framework import exceptions, parsers

from receipts.db import check_json


def refuse_constant(name: str) -> Any:
    raise ValueError(f"{name} is not a JSON number")


class StrictJSONParser(parsers.JSONParser):
    """JSON as a column can store it: no NaN or Infinity, no NUL, no lone surrogate (a ``\\u0000`` or ``\\ud800``
    escape), anywhere in the body. Anything else answers 400 naming the problem."""

    def parse(self, stream: Any, media_type: str | None = None, parser_context: Any = None) -> Any:
        try:
            text = stream.read().decode("utf-8")
        except UnicodeDecodeError as exc:
            raise exceptions.ParseError("JSON body is not UTF-8") from exc
        try:
            data = json.loads(text, parse_constant=refuse_constant)
            check_json(data, "the body")
        except RecursionError as exc:
            raise exceptions.ParseError("JSON body is nested too deeply") from exc
        except ValueError as exc:  # JSONDecodeError, NaN, a NUL, a lone surrogate, an integer over 4,300 digits
            raise exceptions.ParseError(f"JSON parse error: {exc}") from exc
        return data
