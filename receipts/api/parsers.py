"""The API's JSON parser. A module of its own: DRF resolves ``DEFAULT_PARSER_CLASSES`` while it defines
``APIView``, so this must not import ``rest_framework.views`` (or anything that does)."""

from __future__ import annotations

from typing import Any

from rest_framework import exceptions, parsers

from receipts.db import load_json


class StrictJSONParser(parsers.JSONParser):
    """JSON as a column can store it (``receipts.db.load_json``): no NaN or Infinity, no NUL, no lone surrogate
    (a ``\\u0000`` or ``\\ud800`` escape) anywhere in the body, at most 32 levels deep. Anything else answers 400
    naming the problem."""

    check_strings = True

    def parse(self, stream: Any, media_type: str | None = None, parser_context: Any = None) -> Any:
        try:
            text = stream.read().decode("utf-8")
        except UnicodeDecodeError as exc:
            raise exceptions.ParseError("JSON body is not UTF-8") from exc
        try:
            return load_json(text, check_strings=self.check_strings)
        except ValueError as exc:  # bad syntax, NaN, a NUL, a lone surrogate, too deep, an integer over 4,300 digits
            raise exceptions.ParseError(f"JSON parse error: {exc}") from exc


class ItemwiseJSONParser(StrictJSONParser):
    """As StrictJSONParser, but a NUL or a lone surrogate inside a string is left to the view, which refuses the
    one item that holds it and takes the rest (a contact import of 10,000: one bad character refused them all)."""

    check_strings = False
