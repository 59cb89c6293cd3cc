"""The evaluator (RE2) and the analysis (Z3) read every accepted pattern the same way, and
both agree with CPython's ``re`` (``$`` as ``\\Z``) where that engine is safe to run."""

from __future__ import annotations

import re

import pytest
import z3
from hypothesis import given, settings
from hypothesis import strategies as st

from ordinance.policy.analysis.zregex import search_regex
from ordinance.policy.regex import RegexProblem, compile_regex

PATTERNS = [
    r"^/workspace/[^/]+\.sh$",
    r"(^a|b$)",
    r"^(ab|cd)*$",
    r"a|^b|c$",
    r"^$",
    r"\d{2,3}-\w+\s?",
    r"[^a-c]x.",
    r"^\Aab\Z",
]
ALPHABET = st.text(alphabet="abcdx/-_ .\n1\v\u00e9\ud800", max_size=8)


def _z3_matches(pattern: str, text: str) -> bool:
    solver = z3.Solver()
    solver.add(z3.InRe(z3.StringVal(text), search_regex(pattern)))
    return bool(solver.check() == z3.sat)


def _python_matches(pattern: str, text: str) -> bool:
    return re.search(pattern.replace("$", r"\Z"), text, re.ASCII) is not None


@pytest.mark.parametrize("pattern", PATTERNS)
@settings(max_examples=40, deadline=None)
@given(text=ALPHABET)
def test_re2_z3_and_python_agree(pattern: str, text: str) -> None:
    if pattern == r"^\Aab\Z":  # two start anchors: refused, see below
        return
    got = compile_regex(pattern).search(text) is not None
    assert got == _python_matches(pattern, text)
    assert got == _z3_matches(pattern, text)


@pytest.mark.parametrize("pattern", [r"x(^a)", r"(a$)*", r"a^b", r"^^a", r"(?:a|^b)c", r"^\Aab\Z"])
def test_anchors_where_the_engines_could_disagree_are_refused(pattern: str) -> None:
    with pytest.raises(RegexProblem, match="may only begin"):
        compile_regex(pattern)


@pytest.mark.parametrize(
    ("pattern", "fragment"),
    [
        ("a{1001}", "at most {1000}"),
        ("(a{40}){40}", "at most {1000}"),
        ("(" * 40 + "a" + ")" * 40, "nest deeper"),
        ("（a＋）", "NFKC"),
        ("a" * 1001, "longer than"),
        (r"a*+", "subset"),
        (r"(?>a)", "subset"),
    ],
)
def test_patterns_outside_the_shared_subset_are_refused(pattern: str, fragment: str) -> None:
    with pytest.raises(RegexProblem) as info:
        compile_regex(pattern)
    assert fragment in str(info.value)


def test_the_re2_source_spells_classes_out() -> None:
    # \s is Python's ASCII class (with \v), which RE2's own \s is not.
    assert compile_regex(r"\s").source == r"[\x{9}-\x{D}\x{20}]"
    assert compile_regex("a\vb").search("a\vb")
    assert compile_regex(r"^\s$").search("\v")
