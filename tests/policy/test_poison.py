"""Poison policies (issue 11): every hostile file is a located compile error with exit
code 3 from ``check`` and ``test`` — never a traceback, never a hang — and a policy regex
that would backtrack catastrophically is matched in linear time instead.

Timings are in bench/poison_bench.py, not here."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from ordinance.cli import main
from ordinance.commands.output import EXIT_COMPILE, EXIT_OK
from ordinance.policy.bundle import compile_bundle
from ordinance.policy.cel import parse_condition
from ordinance.policy.cel.parser import (
    MAX_CONDITION_LENGTH,
    MAX_DEPTH,
    MAX_NODES,
    MAX_NUMBER_DIGITS,
    ConditionSyntaxError,
)
from ordinance.policy.errors import PolicyErrors
from ordinance.policy.regex import compile_regex
from ordinance.policy.testing import run_tests

from .helpers import compile_texts, policy, request
from .poison_corpus import CORPUS, REDOS_PATH, REDOS_PATTERN, Poison, bundle_files

REFUSED = [p for p in CORPUS if p.refusal is not None]


def _directory(tmp_path: Path, poison: Poison) -> Path:
    for name, text in bundle_files(poison).items():
        (tmp_path / name).write_text(text, encoding="utf-8")
    return tmp_path


@pytest.mark.parametrize("poison", REFUSED, ids=[p.name for p in REFUSED])
def test_check_refuses_each_hostile_file_as_a_located_error(
    poison: Poison, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    directory = _directory(tmp_path, poison)
    assert main(["check", str(directory), "--json"]) == EXIT_COMPILE
    out = json.loads(capsys.readouterr().out)
    [error] = out["errors"]
    assert poison.refusal is not None and poison.refusal in error["message"], error
    assert error["file"].endswith("hostile.yaml") and error["column"] >= 1
    if poison.line:
        assert error["line"] == poison.line, error
    # The human form shows the line with a caret, and stays readable on a 160 kB line.
    assert main(["check", str(directory)]) == EXIT_COMPILE
    human = capsys.readouterr()
    text = human.out + human.err
    assert "^" in text and "Traceback" not in text
    assert max(len(line) for line in text.splitlines()) < 400


@pytest.mark.parametrize("poison", REFUSED[:6], ids=[p.name for p in REFUSED[:6]])
def test_test_command_refuses_too(poison: Poison, tmp_path: Path) -> None:
    assert main(["test", str(_directory(tmp_path, poison))]) == EXIT_COMPILE


def test_bundles_from_the_log_meet_the_same_refusals() -> None:
    for poison in REFUSED:
        with pytest.raises(PolicyErrors) as info:
            compile_bundle(bundle_files(poison))
        assert poison.refusal is not None and poison.refusal in info.value.errors[0].message


def test_the_catastrophic_regex_compiles_and_its_tests_run(tmp_path: Path) -> None:
    [redos] = [p for p in CORPUS if p.refusal is None]
    assert main(["test", str(_directory(tmp_path, redos))]) == EXIT_OK
    results = run_tests(compile_bundle(bundle_files(redos)))
    assert [r.passed for r in results] == [True, True]


def test_nested_quantifiers_on_a_long_path_evaluate_in_linear_time() -> None:
    matcher = compile_regex(REDOS_PATTERN)
    assert matcher.search(REDOS_PATH) is None  # >20 s with Python's backtracking `re`
    assert matcher.search("/" + "a" * 100_000 + "!") is None
    assert matcher.search("/" + "a" * 27) is not None
    rs = compile_texts(
        policy(
            f"- {{id: r, effect: allow, when: 'action.args.path.matches(r\"{REDOS_PATTERN}\")'}}",
            "{actions: [fs.read]}",
        )
    )
    assert rs.evaluate(request("fs.read", {"path": REDOS_PATH})).code == "default"
    assert rs.evaluate(request("fs.read", {"path": "/aaa"})).rule_ids == ("p/r",)


# -- the limits, each just inside and just outside ----------------------------------------


def test_a_chain_of_max_depth_operators_parses_and_one_more_is_refused() -> None:
    # `a && b && ...` with n terms is a tree of height n: MAX_DEPTH terms fit.
    parse_condition(" && ".join(["true"] * MAX_DEPTH))
    with pytest.raises(ConditionSyntaxError, match="nests deeper") as info:
        parse_condition(" && ".join(["true"] * (MAX_DEPTH + 1)))
    assert info.value.offset == len("true && ") * MAX_DEPTH  # at the term that broke it


def test_a_policy_at_every_limit_compiles_and_analyses() -> None:
    from ordinance.policy.analysis.run import analyze

    chain = " || ".join(f'action.args.path == "/{i}"' for i in range(MAX_DEPTH - 4))
    wide = "size(action.args.path) in [" + ", ".join(str(i) for i in range(MAX_NODES - 10)) + "]"
    digits = "size(action.args.path) < " + "9" * MAX_NUMBER_DIGITS
    parens = "(" * (MAX_DEPTH - 4) + "true" + ")" * (MAX_DEPTH - 4)
    assert len(wide) < MAX_CONDITION_LENGTH
    rules = "".join(
        f"- {{id: r{i}, effect: deny, when: '{when}'}}\n"
        for i, when in enumerate([chain, wide, digits, parens])
    )
    rs = compile_texts(policy(rules, "{actions: [fs.read]}"))
    assert rs.evaluate(request("fs.read", {"path": "/3"})).effect == "deny"
    analyze(rs)  # the Z3 encoding walks the same trees: no RecursionError either


@pytest.mark.parametrize(
    ("text", "fragment"),
    [
        ("1" * (MAX_NUMBER_DIGITS + 1) + " > 0", "digits"),
        ("1." + "5" * MAX_NUMBER_DIGITS + " > 0", "digits"),
        ("x" * (MAX_CONDITION_LENGTH + 1), "characters"),
        ("[" + ", ".join(["1"] * MAX_NODES) + "] == []", "terms"),
        ("!" * 200 + "true", "nests deeper"),
        ("true ? " * 100 + "true" + " : false" * 100, "nests deeper"),
    ],
)
def test_each_limit_is_a_syntax_error(text: str, fragment: str) -> None:
    with pytest.raises(ConditionSyntaxError, match=fragment):
        parse_condition(text)
