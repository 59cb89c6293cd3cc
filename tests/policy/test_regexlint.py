"""Regex lint and positions: matches() searches, so an unanchored leading or trailing
repetition is redundant and `^a|b$` anchors one alternative each; both are reported at
the construct inside the literal (escapes in the literal's spelling counted). A refused
construct (\\b, look-around, back-reference, inline flag, misplaced anchor) is a compile
error with its caret on the construct, not on the literal's start."""

from __future__ import annotations

from pathlib import Path

import pytest

from ordinance.cli import main
from ordinance.policy.document import parse_policy
from ordinance.policy.errors import PolicyErrors
from ordinance.policy.regex import RegexProblem, compile_regex, parse_pattern
from ordinance.policy.regexlint import lint_condition, lint_pattern, span_of

SCHEMA = "tools:\n  pay:\n    args: {memo: string}\n"


def _policy(when: str) -> str:
    return (
        "policy: rx\nowner: o\ndescription: d\ntarget: {actions: [pay]}\nrules:\n"
        f"  - id: r\n    effect: deny\n    when: {when}\n"
    )


@pytest.mark.parametrize(
    ("pattern", "span", "words"),
    [
        ("^[a-z]+", (6, 1), "trailing repetition"),
        ("secret.*", (7, 1), "trailing repetition"),
        ("^x{2,}", (2, 4), "trailing repetition"),
        (".*secret", (0, 2), "leading repetition"),
        ("^a|b$", (0, 1), "bind to one alternative"),
        ("^ab|cd|ef$", (0, 1), "bind to one alternative"),
    ],
)
def test_suspicious_patterns(pattern: str, span: tuple[int, int], words: str) -> None:
    [(message, _hint, offset, length)] = lint_pattern(pattern)
    assert words in message and (offset, length) == span


@pytest.mark.parametrize(
    "pattern",
    ["^[a-z]+$", "^(a|b)$", "^a|^b", "foo", "^/tmp/", "a.*b", "\\.pem$|^/run/s/|^/run/s$"],
)
def test_plain_patterns_are_quiet(pattern: str) -> None:
    assert lint_pattern(pattern) == []


@pytest.mark.parametrize(
    ("pattern", "redundant", "equivalent"),
    [("^[a-z]+", "ab1", "^[a-z]"), (".*secret", "xsecret", "secret"), ("ab*", "a", "a")],
)
def test_the_redundancy_is_real(pattern: str, redundant: str, equivalent: str) -> None:
    """What the lint calls redundant changes no answer (on a few strings each way)."""
    for text in (redundant, "", "zz", "A1", "secret", "a\nb", "9ab"):
        got = compile_regex(pattern).search(text) is not None
        assert got == (compile_regex(equivalent).search(text) is not None), text


@pytest.mark.parametrize(
    ("pattern", "span"),
    [
        ("\\bword", (0, 2)),
        ("a(?=b)", (1, 3)),
        ("a(?<!b)c", (1, 4)),
        ("(a)\\1", (3, 2)),
        ("(?i)abc", (0, 3)),
        ("a^b", (1, 1)),
        ("ab$c", (2, 1)),
        ("a[b", (1, 1)),
    ],
)
def test_refused_constructs_are_located(pattern: str, span: tuple[int, int]) -> None:
    with pytest.raises(RegexProblem) as exc:
        parse_pattern(pattern)
    assert span_of(pattern, exc.value) == span


def test_lint_position_counts_escapes_in_the_literal() -> None:
    # YAML single quotes keep `\\`; CEL turns `\\d` into `\d`: the `$`-less `+` sits after
    # the escapes in the source
    when = "'action.args.memo.matches(\"^\\\\d\\\\d+\")'"
    policy = parse_policy(_policy(when), "rx.yaml")
    [lint] = lint_condition(policy.rules[0].condition)
    line = lint.location.source_line
    assert lint.location.line == 8
    assert line[lint.location.column - 1] == "+"
    assert lint.render().splitlines()[0].startswith("rx.yaml:8:")
    assert "regex warning" in lint.render()


def test_refusal_caret_inside_the_literal(tmp_path: Path) -> None:
    from ordinance.policy.loader import load_ruleset

    (tmp_path / "schema.yaml").write_text(SCHEMA)
    (tmp_path / "rx.yaml").write_text(_policy("'action.args.memo.matches(r\"x\\bword\")'"))
    with pytest.raises(PolicyErrors) as exc:
        load_ruleset(tmp_path)
    [err] = exc.value.errors
    assert err.location.source_line[err.location.column - 1 :].startswith("\\bword")
    assert err.location.length == 2


def test_check_reports_and_strict_refuses(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    (tmp_path / "schema.yaml").write_text(SCHEMA)
    (tmp_path / "rx.yaml").write_text(_policy("'action.args.memo.matches(\"^a|b$\")'"))
    assert main(["check", str(tmp_path)]) == 0
    err = capsys.readouterr().err
    assert f"{tmp_path / 'rx.yaml'}:8:" in err and "regex warning: pattern `^a|b$`" in err
    assert main(["check", str(tmp_path), "--strict", "--json"]) == 3
    import json

    [e] = json.loads(capsys.readouterr().out)["errors"]
    assert (e["kind"], e["severity"], e["line"]) == ("regex", "error", 8)
