"""Message templates for campaigns, and what an SMS will cost before it is sent.

A template is plain text with ``{{ contact.<name> }}`` placeholders and nothing else: no filters, no tags, no
attribute chains. ``crm_record_id``, ``phone`` and ``email`` come from the contact, any other name from its
attributes. Anything that looks like template syntax but is not a placeholder (``{{``, ``}}``, ``{%``, ``%}``) is
refused by :func:`parse`, so a typo is caught when the campaign is created, not sent to every contact as written.
A placeholder with no value for a contact refuses that contact's message: it never goes out with a blank.

SMS length follows GSM 03.38 (3GPP TS 23.038, the character set in ``receipts.gsm``): a text made only of the
default alphabet and its extension table is sent as GSM-7, anything else as UCS-2. Segments are counted the way a
real splitter cuts them: an escape pair (``€``, ``{``...) or a surrogate pair (an emoji) never straddles two
segments, so one landing on a boundary starts the next segment and can cost one more than plain division says.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from receipts.gsm import GSM_EXTENSION, is_gsm7
from receipts.logging import mask

BUILT_IN_FIELDS = ("crm_record_id", "phone", "email")

# --- templates ---------------------------------------------------------------------------------------------------

PLACEHOLDER = re.compile(r"\{\{[ \t]*contact\.([A-Za-z_][A-Za-z0-9_]*)[ \t]*\}\}")
# Where template syntax starts or ends; each one outside a valid placeholder is a mistake.
MARKER = re.compile(r"\{\{|\}\}|\{%|%\}")
SNIPPET_MAX = 40
HOW = "write {{ contact.<name> }}, a name made of letters, digits and underscores"


class TemplateError(ValueError):
    """A template that cannot be used, saying what is wrong and where (``position`` counts from 0, ``line`` and
    ``column`` from 1)."""

    def __init__(self, message: str, text: str, position: int) -> None:
        self.position = position
        self.line, self.column = line_and_column(text, position)
        super().__init__(f"{message} (line {self.line}, column {self.column})")


class MissingField(TemplateError):
    """A contact without a value for a placeholder its template uses."""

    def __init__(self, field: str, text: str, position: int) -> None:
        self.field = field
        super().__init__(
            f"contact.{field} is missing or empty, so the message would go out with a blank", text, position
        )


@dataclass(frozen=True)
class Placeholder:
    field: str
    position: int  # of its ``{{`` in the template


@dataclass(frozen=True)
class Template:
    text: str
    parts: tuple[str | Placeholder, ...]

    @property
    def fields(self) -> frozenset[str]:
        return frozenset(part.field for part in self.parts if isinstance(part, Placeholder))

    def render(self, contact_values: Mapping[str, Any]) -> str:
        """The message for one contact; :class:`MissingField` for the first placeholder it has no value for."""
        out = []
        for part in self.parts:
            if isinstance(part, str):
                out.append(part)
                continue
            value = contact_values.get(part.field)
            text = "" if value is None else str(value)
            if not text.strip():
                raise MissingField(part.field, self.text, part.position)
            out.append(text)
        return "".join(out)


def parse(text: str) -> Template:
    """The template in ``text``, or :class:`TemplateError` for the first thing in it that is not a placeholder."""
    parts: list[str | Placeholder] = []
    done = 0  # everything before this is in parts
    while marker := MARKER.search(text, done):
        placeholder = PLACEHOLDER.match(text, marker.start()) if marker.group() == "{{" else None
        if placeholder is None:
            raise TemplateError(why_not_a_placeholder(text, marker.start()), text, marker.start())
        if placeholder.start() > done:
            parts.append(text[done : placeholder.start()])
        parts.append(Placeholder(placeholder.group(1), placeholder.start()))
        done = placeholder.end()
    if done < len(text):
        parts.append(text[done:])
    return Template(text, tuple(parts))


def why_not_a_placeholder(text: str, position: int) -> str:
    marker = text[position : position + 2]
    if marker == "}}":
        return f"'}}}}' without a '{{{{' before it; {HOW}"
    if marker in ("{%", "%}"):
        end = position + 2 if marker == "%}" else text.find("%}", position + 2) + 2
        return f"{snippet(text, position, end)} is a tag; templates have only placeholders: {HOW}"
    close = text.find("}}", position + 2)
    reopen = text.find("{{", position + 2)
    if close == -1 or "\n" in text[position:close] or -1 < reopen < close:
        return f"{snippet(text, position, reopen)} is not closed with '}}}}'; {HOW}"
    shown = snippet(text, position, close + 2)
    inner = text[position + 2 : close].strip()
    name = inner.removeprefix("contact.")
    if name == inner:
        example = name if re.fullmatch(r"[A-Za-z_][A-Za-z0-9_]*", name) else "first_name"
        return f"{shown} is not a placeholder: names start with 'contact.', as in {{{{ contact.{example} }}}}"
    if "|" in name:
        return f"{shown} has a filter; templates have none: {HOW}"
    if "." in name:
        return f"{shown} has a nested name; templates have none: {HOW}"
    return f"{shown} is not a placeholder; {HOW}"


def snippet(text: str, position: int, end: int) -> str:
    """The bad piece of the template as the operator wrote it: to ``end``, or to the end of its line if sooner."""
    line_end = text.find("\n", position)
    if line_end == -1:
        line_end = len(text)
    end = line_end if end < position else min(end, line_end)
    piece = text[position:end].rstrip()
    if len(piece) > SNIPPET_MAX:
        piece = piece[: SNIPPET_MAX - 1] + "…"
    return repr(mask(piece))


def line_and_column(text: str, position: int) -> tuple[int, int]:
    line = text.count("\n", 0, position) + 1
    column = position - (text.rfind("\n", 0, position) + 1) + 1
    return line, column


def contact_values(crm_record_id: str, phone: str, email: str, attributes: Mapping[str, Any] | None) -> dict[str, Any]:
    """What a template's placeholders are filled from: the contact's attributes, and over them its built-in fields
    (``{{ contact.phone }}`` is always the number it is sent to, whatever the attributes say)."""
    return {**(attributes or {}), "crm_record_id": crm_record_id, "phone": phone, "email": email}


# --- SMS length --------------------------------------------------------------------------------------------------

GSM_7, UCS_2 = "GSM-7", "UCS-2"
# Characters (septets, or UTF-16 code units) in one SMS, and in each part of a concatenated one (its header takes
# six octets: seven septets, three code units).
SINGLE = {GSM_7: 160, UCS_2: 70}
PART = {GSM_7: 153, UCS_2: 67}

GENESYS_CLOUD_SMS_MAX = 765  # characters in an agentless textBody
MAX_SEGMENTS = 10


@dataclass(frozen=True)
class SmsLength:
    encoding: str  # GSM_7 or UCS_2
    characters: int  # septets for GSM-7, UTF-16 code units for UCS-2
    segments: int
    per_segment: int  # characters that fit in each of its segments


def sms_length(text: str) -> SmsLength:
    encoding = GSM_7 if is_gsm7(text) else UCS_2
    widths = [width(c, encoding) for c in text]
    characters = sum(widths)
    if characters <= SINGLE[encoding]:
        return SmsLength(encoding, characters, 1 if characters else 0, SINGLE[encoding])
    return SmsLength(encoding, characters, concatenated_segments(widths, PART[encoding]), PART[encoding])


def width(char: str, encoding: str) -> int:
    if encoding == GSM_7:
        return 2 if char in GSM_EXTENSION else 1
    return 2 if ord(char) > 0xFFFF else 1  # outside the BMP: a surrogate pair


def concatenated_segments(widths: list[int], capacity: int) -> int:
    # A character that does not fit whole in what is left of a segment starts the next one.
    segments, used = 1, 0
    for w in widths:
        if used + w > capacity:
            segments, used = segments + 1, 0
        used += w
    return segments


def check_sms(text: str, provider: str, *, max_segments: int = MAX_SEGMENTS) -> list[str]:
    """What stops ``text`` going out as an SMS through ``provider``; an empty list when nothing does."""
    if not text.strip():
        return ["the message is empty"]
    length = sms_length(text)
    problems = []
    # Counted as sent (an escape pair or an emoji counts 2): at least the code points the client checks.
    if provider == "genesys_cloud" and length.characters > GENESYS_CLOUD_SMS_MAX:
        problems.append(
            f"{length.characters} characters ({length.encoding}); Genesys Cloud takes at most {GENESYS_CLOUD_SMS_MAX}"
        )
    if length.segments > max_segments:
        problems.append(f"{length.segments} segments ({length.encoding}); at most {max_segments} are allowed")
    return problems


def describe(text: str) -> str:
    """``2 segments, GSM-7, 185 characters``: for showing beside a message."""
    length = sms_length(text)
    return f"{plural(length.segments, 'segment')}, {length.encoding}, {plural(length.characters, 'character')}"


def plural(n: int, noun: str) -> str:
    return f"{n} {noun}" if n == 1 else f"{n} {noun}s"
