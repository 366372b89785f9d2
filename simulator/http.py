"""Small request/response types the provider modules share, so they stay free of the server's plumbing."""

from __future__ import annotations

import json
import re
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from email.message import Message
from typing import Any
from urllib.parse import parse_qs, parse_qsl


class HttpError(Exception):
    """Raised by a handler to answer at once with ``response``."""

    def __init__(self, response: Response) -> None:
        super().__init__(response.status)
        self.response = response


@dataclass
class Request:
    method: str
    path: str
    query: dict[str, list[str]]
    headers: Message
    body: bytes
    params: dict[str, str] = field(default_factory=dict)
    principal: str = ""  # who the provider thinks is calling (token, client, login), for the request log

    def arg(self, name: str, default: str = "") -> str:
        values = self.query.get(name)
        return values[0] if values else default

    def header(self, name: str) -> str:
        return self.headers.get(name, "") or ""

    def json(self, error: Callable[[str], Response]) -> Any:
        try:
            return json.loads(self.body or b"null")
        except (UnicodeDecodeError, json.JSONDecodeError) as exc:
            raise HttpError(error(f"body is not valid JSON: {exc}")) from exc

    def fields(self) -> dict[str, str]:
        """Query string and form (or JSON object) body, the body winning, as SMS gateways take them."""
        values = {k: v[0] for k, v in self.query.items() if v}
        content_type = self.header("Content-Type")
        text = self.body.decode("utf-8", "replace")
        if "json" in content_type and text.strip():
            try:
                data = json.loads(text)
            except json.JSONDecodeError:
                data = None
            if isinstance(data, dict):
                values.update({k: "" if v is None else str(v) for k, v in data.items()})
        elif text.strip():
            values.update(dict(parse_qsl(text, keep_blank_values=True)))
        return values


@dataclass
class Response:
    status: int
    body: Any = None  # bytes, str, or anything JSON can encode
    headers: dict[str, str] = field(default_factory=dict)
    content_type: str = "application/json"

    def encoded(self) -> bytes:
        if self.body is None:
            return b""
        if isinstance(self.body, bytes):
            return self.body
        if isinstance(self.body, str):
            return self.body.encode()
        return json.dumps(self.body, separators=(",", ":")).encode()


def json_response(status: int, body: Any, **headers: str) -> Response:
    return Response(status, body, dict(headers))


Handler = Callable[..., Response]


@dataclass(frozen=True)
class Route:
    method: str
    template: str  # "/api/v2/conversations/messages/{messageId}/details"
    scope: str  # oauth | genesys_cloud | genesys_sms | webex_connect | control
    handler: Handler
    pattern: re.Pattern[str] = field(init=False, compare=False)

    def __post_init__(self) -> None:
        regex = re.sub(r"\\\{(\w+)\\\}", r"(?P<\1>[^/]+)", re.escape(self.template))
        object.__setattr__(self, "pattern", re.compile(f"^{regex}/?$"))


def parse_query(query: str) -> dict[str, list[str]]:
    return parse_qs(query, keep_blank_values=True)


def context_id() -> str:
    return str(uuid.uuid4())
