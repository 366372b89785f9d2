"""Campaign message templates: what parses (and where it does not), how a contact fills them, and how long an SMS
is in GSM-7 or UCS-2, segment by segment, as a real splitter cuts it. No database."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from campaigns.templating import (
    GENESYS_CLOUD_SMS_MAX,
    MissingField,
    SmsLength,
    TemplateError,
    check_sms,
    contact_values,
    describe,
    parse,
    sms_length,
)
from receipts.gsm import GSM_BASIC, GSM_DEFAULT_ALPHABET, GSM_EXTENSION

EURO, EMOJI = "€", "\U0001f600"  # an extension-table character (2 septets); one outside the BMP (2 code units)

# --- parsing -----------------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "text",
    [
        "Hi {{ contact.first_name }}",
        "Hi {{contact.first_name}}",
        "Hi {{   contact.first_name\t}}",
    ],
)
def test_whitespace_inside_the_braces_is_optional(text: str) -> None:
    assert parse(text).render({"first_name": "Ann"}) == "Hi Ann"


def test_fields_are_the_names_used() -> None:
    template = parse("{{ contact.first_name }} {{ contact.phone }} {{ contact.first_name }} {{ contact._x9 }}")
    assert template.fields == {"first_name", "phone", "_x9"}
    assert parse("no placeholders").fields == set()


@pytest.mark.parametrize(
    ("text", "position", "line", "column", "says"),
    [
        ("Hi {{ contact.first name }}!", 3, 1, 4, "'{{ contact.first name }}' is not a placeholder"),
        ("Hi {{ first_name }}", 3, 1, 4, "start with 'contact.', as in {{ contact.first_name }}"),
        ("{{ contact.first_name|upper }}", 0, 1, 1, "has a filter"),
        ("{{ contact.clinic.city }}", 0, 1, 1, "has a nested name"),
        ("{{ contact.9lives }}", 0, 1, 1, "is not a placeholder"),
        ("{{ contact. }}", 0, 1, 1, "is not a placeholder"),
        ("{{ }}", 0, 1, 1, "start with 'contact.'"),
        ("Hi {{ contact.first_name", 3, 1, 4, "'{{ contact.first_name' is not closed"),
        ("Hi {{ contact.first_name\n}}", 3, 1, 4, "is not closed"),
        ("Hi {{ contact.a {{ contact.b }}", 3, 1, 4, "'{{ contact.a' is not closed"),
        ("Hi {contact.first_name}}", 22, 1, 23, "'}}' without a '{{' before it"),
        ("{% if contact.vip %}Hi{% endif %}", 0, 1, 1, "'{% if contact.vip %}' is a tag"),
        ("Hello\nand {{ contact.first-name }}", 10, 2, 5, "'{{ contact.first-name }}' is not a placeholder"),
        ("{{{ contact.first_name }}}", 0, 1, 1, "is not a placeholder"),
        ("Hi {{ contact.a }} {{ contact.b c }}", 19, 1, 20, "'{{ contact.b c }}'"),
    ],
)
def test_a_bad_placeholder_is_refused_saying_which_and_where(
    text: str, position: int, line: int, column: int, says: str
) -> None:
    with pytest.raises(TemplateError) as caught:
        parse(text)
    assert (caught.value.position, caught.value.line, caught.value.column) == (position, line, column)
    assert says in str(caught.value)
    assert f"(line {line}, column {column})" in str(caught.value)


def test_a_template_error_is_a_value_error() -> None:
    with pytest.raises(ValueError, match="not closed"):
        parse("{{ contact.x")


def test_an_address_in_a_bad_placeholder_is_masked_in_the_error() -> None:
    with pytest.raises(TemplateError) as caught:
        parse("{{ +15551234567 }}")
    assert "+15551234567" not in str(caught.value)


# --- rendering ---------------------------------------------------------------------------------------------------


def test_built_ins_come_from_the_contact_and_other_names_from_its_attributes() -> None:
    values = contact_values("003A", "+15550001111", "ann@example.com", {"first_name": "Ann", "visits": 3})
    template = parse("{{ contact.first_name }} ({{ contact.crm_record_id }}, {{contact.visits}}): {{ contact.email }}")
    assert template.render(values) == "Ann (003A, 3): ann@example.com"


def test_a_built_in_wins_over_an_attribute_of_the_same_name() -> None:
    values = contact_values("003A", "+15550001111", "", {"phone": "+15559999999", "email": "other@example.com"})
    assert values["phone"] == "+15550001111"
    with pytest.raises(MissingField) as caught:  # the contact has no email: the attribute does not stand in
        parse("{{ contact.email }}").render(values)
    assert caught.value.field == "email"


def test_contact_values_accepts_no_attributes() -> None:
    assert contact_values("003A", "+15550001111", "", None) == {
        "crm_record_id": "003A",
        "phone": "+15550001111",
        "email": "",
    }


@pytest.mark.parametrize("values", [{}, {"first_name": None}, {"first_name": ""}, {"first_name": "  "}])
def test_a_missing_or_empty_value_refuses_the_message_naming_the_field(values: dict[str, object]) -> None:
    template = parse("Hi {{ contact.phone }}\nDear {{ contact.first_name }}")
    with pytest.raises(MissingField) as caught:
        template.render({"phone": "+15550001111", **values})
    assert caught.value.field == "first_name"
    assert (caught.value.line, caught.value.column) == (2, 6)
    assert "contact.first_name is missing or empty" in str(caught.value)
    assert isinstance(caught.value, TemplateError)


def test_values_are_strings_of_themselves_and_zero_is_not_missing() -> None:
    assert parse("{{ contact.n }}/{{ contact.vip }}").render({"n": 0, "vip": False}) == "0/False"


def test_a_value_that_looks_like_a_placeholder_is_not_expanded() -> None:
    values = {"first_name": "{{ contact.secret }}", "secret": "x"}
    assert parse("Hi {{ contact.first_name }}").render(values) == "Hi {{ contact.secret }}"


# Text with nothing that looks like template syntax in it; hypothesis shrinks towards the markers' neighbours.
plain_text = st.text(alphabet=st.sampled_from("ab {}%\n€é😀") | st.characters(), max_size=200).filter(
    lambda t: not any(marker in t for marker in ("{{", "}}", "{%", "%}"))
)


@given(plain_text)
def test_a_template_without_placeholders_renders_unchanged(text: str) -> None:
    template = parse(text)
    assert template.fields == set()
    assert template.render({}) == text


# --- the GSM 03.38 tables ----------------------------------------------------------------------------------------

# A sample of the default alphabet by code, across every row of the table.
DEFAULT_ALPHABET_ROWS = {
    0x00: "@",
    0x01: "£",
    0x09: "Ç",
    0x0A: "\n",
    0x0D: "\r",
    0x10: "Δ",
    0x11: "_",
    0x1B: "\x1b",
    0x1C: "Æ",
    0x1F: "É",
    0x20: " ",
    0x24: "¤",
    0x40: "¡",
    0x5B: "Ä",
    0x5F: "§",
    0x60: "¿",
    0x7B: "ä",
    0x7F: "à",
}


@pytest.mark.parametrize(("code", "char"), DEFAULT_ALPHABET_ROWS.items())
def test_default_alphabet_row(code: int, char: str) -> None:
    assert GSM_DEFAULT_ALPHABET[code] == char


def test_the_default_alphabet_has_128_codes_and_127_characters() -> None:
    assert len(GSM_DEFAULT_ALPHABET) == 128
    assert len(GSM_BASIC) == 127  # 0x1B is the escape
    assert "\x1b" not in GSM_BASIC
    assert [hex(ord(c)) for c in "ΔΦΓΛΩΠΨΣΘΞ"] == [hex(ord(GSM_DEFAULT_ALPHABET[i])) for i in (16, *range(18, 27))]
    assert set("ΔΦΓΛΩΠΨΣΘΞ") <= GSM_BASIC and all(0x391 <= ord(c) <= 0x3A9 for c in "ΔΦΓΛΩΠΨΣΘΞ")  # Greek block


def test_empty_text_is_no_segments() -> None:
    assert sms_length("") == SmsLength("GSM-7", 0, 0, 160)


@pytest.mark.parametrize(
    ("text", "segments", "per_segment"),
    [
        ("a", 1, 160),
        ("a" * 160, 1, 160),
        ("a" * 161, 2, 153),
        ("a" * 159 + EURO, 2, 153),  # 161 septets
        ("a" * 158 + EURO, 1, 160),
        ("a" * 153 * 2, 2, 153),
        ("a" * (153 * 2 + 1), 3, 153),
        ("ê" * 70, 1, 70),
        ("ê" * 71, 2, 67),
        ("ê" * 67 * 2, 2, 67),
        ("ê" * (67 * 2 + 1), 3, 67),
        ("ê" * 68 + EMOJI, 1, 70),
        ("ê" * 69 + EMOJI, 2, 67),
    ],
)
def test_segment_boundaries(text: str, segments: int, per_segment: int) -> None:
    length = sms_length(text)
    assert (length.segments, length.per_segment) == (segments, per_segment)


def test_an_escape_pair_on_a_segment_boundary_moves_to_the_next_segment() -> None:
    # 306 septets either way; plain division says 2 segments. With the € at septets 153-154 it cannot be split,
    # so the first segment carries 152 and the last 'a' spills into a third.
    assert sms_length("a" * 151 + EURO + "a" * 153) == SmsLength("GSM-7", 306, 2, 153)
    assert sms_length("a" * 152 + EURO + "a" * 152) == SmsLength("GSM-7", 306, 3, 153)


def test_a_surrogate_pair_on_a_segment_boundary_moves_to_the_next_segment() -> None:
    assert sms_length("ê" * 65 + EMOJI + "ê" * 67) == SmsLength("UCS-2", 134, 2, 67)
    assert sms_length("ê" * 66 + EMOJI + "ê" * 66) == SmsLength("UCS-2", 134, 3, 67)


def test_an_emoji_counts_two() -> None:
    assert sms_length(EMOJI) == SmsLength("UCS-2", 2, 1, 70)


def test_describe() -> None:
    assert describe("a" * 185) == "2 segments, GSM-7, 185 characters"
    assert describe("ê") == "1 segment, UCS-2, 1 character"
    assert describe("") == "0 segments, GSM-7, 0 characters"


gsm_basic_text = st.text(alphabet=sorted(GSM_BASIC), max_size=800)
gsm_text = st.text(alphabet=sorted(GSM_BASIC | GSM_EXTENSION), max_size=800)


@given(gsm_basic_text)
def test_text_of_the_default_alphabet_is_gsm_7_one_septet_each(text: str) -> None:
    length = sms_length(text)
    assert (length.encoding, length.characters) == ("GSM-7", len(text))


@given(gsm_text, st.sampled_from(sorted(GSM_BASIC | GSM_EXTENSION)))
def test_segments_never_go_down_as_gsm_text_grows(text: str, more: str) -> None:
    before, after = sms_length(text), sms_length(text + more)
    assert after.encoding == "GSM-7"
    assert after.characters > before.characters
    assert after.segments >= before.segments


@given(gsm_text)
def test_segments_are_at_least_plain_division_and_at_most_one_per_152_septets(text: str) -> None:
    length = sms_length(text)
    if length.characters > 160:
        assert -(-length.characters // 153) <= length.segments <= -(-length.characters // 152)


# --- limits ------------------------------------------------------------------------------------------------------


def test_genesys_cloud_takes_at_most_765_characters() -> None:
    assert GENESYS_CLOUD_SMS_MAX == 765
    assert check_sms("a" * 765, "genesys_cloud") == []
    assert check_sms("a" * 766, "genesys_cloud") == ["766 characters (GSM-7); Genesys Cloud takes at most 765"]
    assert check_sms("a" * 764 + EURO, "genesys_cloud") == ["766 characters (GSM-7); Genesys Cloud takes at most 765"]
    assert check_sms("a" * 766, "webex_connect") == []


def test_too_many_segments_for_any_provider() -> None:
    assert check_sms("a" * 153 * 10, "webex_connect") == []
    assert check_sms("a" * (153 * 10 + 1), "webex_connect") == ["11 segments (GSM-7); at most 10 are allowed"]
    assert check_sms("a" * 161, "generic", max_segments=1) == ["2 segments (GSM-7); at most 1 are allowed"]
    assert check_sms("ê" * 700, "genesys_cloud") == ["11 segments (UCS-2); at most 10 are allowed"]


@pytest.mark.parametrize("text", ["", "   ", "\n"])
def test_an_empty_message_is_a_problem(text: str) -> None:
    assert check_sms(text, "genesys_sms") == ["the message is empty"]
