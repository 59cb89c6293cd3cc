"""Policy errors point at file:line:column, show the line with a caret, and suggest a fix."""

from __future__ import annotations

import pytest

from ordinance.policy.errors import PolicyErrors

from .helpers import compile_texts, policy


def _error(text: str) -> str:
    with pytest.raises(PolicyErrors) as info:
        compile_texts(text)
    return info.value.errors[0].render()


def test_typo_in_attribute_names_the_closest() -> None:
    text = policy(
        """
        - id: big
          effect: deny
          when: action.args.ammount > 10
        """,
        '{actions: ["payments.transfer"]}',
    )
    rendered = _error(text)
    assert rendered.startswith(
        "policy0.yaml:9:11: type error: unknown attribute `action.args.ammount` of tool"
    )
    assert "did you mean `action.args.amount`?" in rendered
    lines = rendered.splitlines()
    caret_line = lines[2]
    assert lines[1].endswith("when: action.args.ammount > 10")
    # the caret sits under the start of the attribute
    assert caret_line.index("^") == lines[1].index("action.args.ammount")
    assert caret_line.count("~") == len("action.args.ammount") - 1


def test_type_error_points_at_the_operator_expression() -> None:
    text = policy(
        """
        - id: cmp
          effect: deny
          when: 'action.args.currency > 10'
        """,
        '{actions: ["payments.transfer"]}',
    )
    rendered = _error(text)
    assert rendered.startswith(
        "policy0.yaml:9:12: type error: `>` compares two numbers or two strings"
    )
    lines = rendered.splitlines()
    assert lines[2].index("^") == lines[1].index("action.args.currency")


def test_syntax_error_in_condition() -> None:
    text = policy(
        """
        - id: s
          effect: deny
          when: action.args.amount = 10
        """,
        '{actions: ["payments.transfer"]}',
    )
    rendered = _error(text)
    assert rendered.startswith("policy0.yaml:9:30: syntax error: `=` is not an operator")
    assert "hint: use `==` to compare" in rendered


def test_syntax_error_in_block_scalar_maps_to_the_right_line() -> None:
    text = policy(
        """
        - id: s
          effect: deny
          when: |
            action.args.amount > 10 &&
              action.args.country in ["KP",
        """,
        '{actions: ["payments.transfer"]}',
    )
    rendered = _error(text)
    assert rendered.startswith("policy0.yaml:11:")


def test_yaml_errors_are_located() -> None:
    rendered = _error("policy: p\nowner: [unclosed\n")
    assert rendered.startswith("policy0.yaml:") and "invalid YAML" in rendered


@pytest.mark.parametrize(
    ("fragment", "message"),
    [
        ("effect: permit", "unknown effect `permit`"),
        ("effect: allow\n  wen: true", "unknown key `wen` in rule"),
        ("effect: allow\n  when: action.args.amount / 2 > 1", "decimal division is not exact"),
        ('effect: allow\n  when: action.args.currency.matches("(a)\\\\1")', "unsupported pattern"),
        ('effect: allow\n  when: window.count("forever") > 1', "window duration"),
        ("effect: allow\n  when: action.args.currency.startsWith(1)", "must be a string"),
        ("effect: allow\n  when: action.args.amount", "must be true or false"),
        ("effect: allow\n  when: frobnicate(1)", "unknown function"),
        ("effect: allow\n  when: action.args.currency.lowercase()", "did you mean `lower`"),
        ('effect: allow\n  when: agnet.id == "x"', "did you mean `agent`"),
        ("effect: allow\n  when: action.args.to.exists(x, x)", "unknown attribute"),
    ],
)
def test_other_errors(fragment: str, message: str) -> None:
    text = policy(f"- id: r\n  {fragment}\n", '{actions: ["payments.transfer"]}')
    assert message in _error(text)


def test_glob_that_matches_no_tool() -> None:
    text = policy("- id: r\n  effect: allow\n", '{actions: ["paymnts.*"]}')
    rendered = _error(text)
    assert "matches no tool" in rendered and "did you mean `payments." in rendered


def test_all_errors_are_reported_at_once() -> None:
    text = policy(
        """
        - id: a
          effect: allow
          when: action.args.x > 1
        - id: b
          effect: allow
          when: action.args.y > 1
        """,
        '{actions: ["payments.transfer"]}',
    )
    with pytest.raises(PolicyErrors) as info:
        compile_texts(text)
    assert len(info.value.errors) == 2
