"""No pattern that sees request data is quadratic: masking runs on every log line, on stored errors and in admin
pages, so one request with a long run of letters in its path had held a web thread for a minute (issue 20).

Every function that masks or validates what a caller sends, and every regular expression compiled at module level
in the app and the simulator (found by walking the packages, so a new one is timed without being listed), runs on
adversarial text of 16 KiB and then 1 MiB. Each must stay within a bound relative to a plain scan of the same text
in the same run (one regex step a character): a linear pattern costs about as much as the scan, a quadratic one
thousands of times more. The 16 KiB round fails a quadratic pattern in about a second, before the 1 MiB round
would take an hour. A ratio measured in one run is robust to a busy machine, and a slow measurement is taken again
before it fails anything.
"""

from __future__ import annotations

import importlib
import pkgutil
import re
import time
from collections.abc import Callable

import pytest
from hypothesis import example, given, settings
from hypothesis import strategies as st

from campaigns import lifecycle, templating
from receipts import addresses
from receipts.logging import mask

PACKAGES = ("receipts", "campaigns", "crm_sync", "config", "simulator")
SIZES = (16 * 1024, 1024 * 1024)
BOUND = 10  # times a plain scan; measured: mask 0.3-3x, every other pattern under 1x
PLAIN_SCAN = re.compile(r"[^\x00]")  # one step a character, what any linear pattern costs at least


def module_patterns() -> dict[str, re.Pattern[str]]:
    """Every compiled pattern held at module level in the app's and the simulator's packages."""
    found: dict[str, re.Pattern[str]] = {}
    seen: set[re.Pattern[str]] = set()
    for package_name in PACKAGES:
        package = importlib.import_module(package_name)
        for info in pkgutil.walk_packages(package.__path__, prefix=f"{package_name}."):
            if ".migrations." in info.name or info.name.endswith(".migrations"):
                continue
            module = importlib.import_module(info.name)
            for name, value in vars(module).items():
                # A pattern imported into another module is the same object: timed once, under its first name.
                if isinstance(value, re.Pattern) and isinstance(value.pattern, str) and value not in seen:
                    seen.add(value)
                    found[f"{info.name}.{name}"] = value
    return found


def refused(function: Callable[[str], object]) -> Callable[[str], object]:
    """``function`` with a refusal (ValueError, as the validators raise) counted as an answer."""

    def call(text: str) -> object:
        try:
            return function(text)
        except ValueError as exc:
            return exc

    return call


FUNCTIONS: dict[str, Callable[[str], object]] = {
    "receipts.logging.mask": mask,
    "receipts.addresses.normalize_address(sms)": refused(lambda text: addresses.normalize_address("sms", text)),
    "receipts.addresses.normalize_address(email)": refused(lambda text: addresses.normalize_address("email", text)),
    "receipts.addresses.normalize_fast(sms)": refused(lambda text: addresses.normalize_fast("sms", text)),
    "campaigns.templating.parse": refused(templating.parse),
    "campaigns.templating.sms_length": templating.sms_length,
    "campaigns.lifecycle.without_placeholders": lifecycle.without_placeholders,
}


def seconds(function: Callable[[str], object], text: str) -> float:
    started = time.perf_counter()
    function(text)
    return time.perf_counter() - started


def scan(text: str) -> float:
    """The plain scan's best of three."""
    return min(seconds(PLAIN_SCAN.findall, text) for _ in range(3))


def too_slow(unit: str) -> list[str]:
    """What runs over BOUND plain scans on ``unit`` repeated to each size, as 'name: ratio at size'."""
    checks = dict(FUNCTIONS)
    for name, pattern in module_patterns().items():
        checks[name] = pattern.findall  # tried from every position: the worst any caller can do with it
    slow: list[str] = []
    for size in SIZES:
        text = (unit * (size // len(unit) + 1))[:size]
        plain = scan(text)
        for name, function in checks.items():
            if seconds(function, text) <= BOUND * plain:
                continue
            # Once more, best of three, beside a fresh scan: a busy machine slows one measurement, not three.
            ratio = min(seconds(function, text) for _ in range(3)) / scan(text)
            if ratio > BOUND:
                slow.append(f"{name}: {ratio:.0f}x a plain scan at {size} characters")
        if slow:
            return slow  # a quadratic pattern at 16 KiB would take hours at 1 MiB
    return slow


def test_the_walk_finds_the_patterns_that_see_request_data() -> None:
    names = set(module_patterns())
    assert {"receipts.logging.PHONE", "receipts.logging.SEPARATOR_AND_DOMAIN", "campaigns.templating.PLACEHOLDER"} <= (
        names
    )
    # re.compile hands the same object for the same pattern: the simulator's two EMAIL checks are one.
    assert {"simulator.genesys_cloud.EMAIL", "simulator.genesys_sms.PHONE", "crm_sync.api.CURSOR"} <= names


# The runs that made the old patterns quadratic: letters (the address mask's local part), dots after an @ (the
# simulator's email check), URL-encoded @ (the mask tried each %40), digits and separators (the phone mask).
ADVERSARIAL = (
    "zz-",
    "a.",
    "a@",
    "@" + "." * 10,
    "a%40",
    "a\\u0040",
    "1",
    "+1 ",
    "(555) 123-45",
    "ab@c.de ",
    "{{ contact.a",
)
PIECES = st.sampled_from(["a", "Z", "1", "9", ".", "-", "_", "@", "%40", "%2B", "\\u0040", "+", " ", "(", ")", ":"])


@pytest.mark.parametrize("unit", ADVERSARIAL)
def test_known_adversarial_runs_are_linear(unit: str) -> None:
    assert too_slow(unit) == []


@settings(max_examples=6, deadline=None)
@given(st.lists(PIECES, min_size=1, max_size=8).map("".join))
@example("type=" + "a" * 11)
def test_any_repeated_mix_of_letters_dots_at_signs_and_digits_is_linear(unit: str) -> None:
    assert too_slow(unit) == []


def test_masking_still_masks_what_it_did() -> None:
    text = "x" * 20_000 + " to alice.smith@example.com, bob%40example.org and +1 (555) 123-4567 " + "y" * 20_000
    masked = mask(text)
    assert "alice" not in masked and "bob" not in masked and "123-4567" not in masked
    assert "a***@example.com, b***@example.org and ***67" in masked
    assert mask("a@b.com.x@y.org") == "a***@b.com.***@y.org"  # an address right after another is masked too


def test_a_logged_404_with_a_long_path_answers_as_fast_as_a_short_one(client) -> None:  # type: ignore[no-untyped-def]
    """The attack from outside: an unauthenticated 404 is logged with its path, and the path went through mask."""

    def answer(path: str) -> float:
        started = time.perf_counter()
        assert client.get(path).status_code == 404
        return time.perf_counter() - started

    short, long = "/api/v1/zz-" + "a" * 20 + "/", "/api/v1/zz-" + "a" * 20_000 + "/"
    answer(short)  # warm
    ratio = min(answer(long) for _ in range(3)) / min(answer(short) for _ in range(3))
    assert ratio < 20, f"a 20,000-letter path took {ratio:.0f}x as long as a short one"  # was 60 s, ~5,000x
