from __future__ import annotations

import pytest

from ordinance.policy.regex import RegexProblem, check_regex, compile_regex


@pytest.mark.parametrize(
    "pattern", [r"^\d{3}-\d{4}$", r"(a|b)*c", r"[^/]+\.pem$", r"x{2,5}?", "^$"]
)
def test_regular_patterns_are_accepted(pattern: str) -> None:
    check_regex(pattern)


@pytest.mark.parametrize(
    ("pattern", "part"),
    [
        (r"(a)\1", "back-references"),
        (r"(?=a)b", "look-around"),
        (r"(?i)abc", "inline flags"),
        (r"\bword", "word boundaries"),
        ("(", "invalid pattern"),
    ],
)
def test_non_regular_patterns_are_refused_with_a_reason(pattern: str, part: str) -> None:
    with pytest.raises(RegexProblem) as info:
        check_regex(pattern)
    assert part in str(info.value) + (info.value.hint or "")


def test_dollar_means_end_of_string_only() -> None:
    assert compile_regex(r"^ab$").search("ab")
    assert not compile_regex(r"^ab$").search("ab\n")  # Python's `$` would match here
    assert compile_regex(r"[$]").search("a$b")  # a `$` inside a class is a literal


def test_classes_are_ascii() -> None:
    assert not compile_regex(r"^\d$").search("٣")  # Arabic-Indic digit three
    assert compile_regex(r"^\d$").search("3")
