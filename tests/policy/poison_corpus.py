"""Hostile policy files (issue 11, "poison policies"): each must be refused as a located
compile error, quickly, by ``check``, ``test`` and the controller alike — or, for the one
catastrophic-backtracking regex, accepted and evaluated in linear time.

Shared by tests/policy/test_poison.py, tests/processors/test_controller_poison.py and
bench/poison_bench.py, so the bench times exactly what the tests pin down.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

SCHEMA = (Path(__file__).resolve().parents[2] / "examples" / "policies" / "schema.yaml").read_text(
    encoding="utf-8"
)
_HEAD = "policy: hostile\nowner: mallory\ndescription: d\ntarget: {actions: [fs.read]}\nrules:\n"
REDOS_PATTERN = r"^/(a+)+$"
REDOS_PATH = "/" + "a" * 26 + "!"  # 28 characters: >20 s on a backtracking engine


@dataclass(frozen=True)
class Poison:
    name: str
    text: str  # the hostile policy file
    refusal: str | None  # a fragment of the located error, or None: must be accepted
    line: int = 0  # where the error must point (0: not pinned)


def _rule(when: str, effect: str = "deny") -> str:
    return f"  - id: r\n    effect: {effect}\n    when: '{when}'\n"


def _laughs() -> str:
    lines = ['a: &a ["lol","lol","lol","lol","lol","lol","lol","lol","lol"]']
    for i in range(1, 10):
        prev, name = chr(ord("a") + i - 1), chr(ord("a") + i)
        lines.append(f"{name}: &{name} [" + ",".join([f"*{prev}"] * 9) + "]")
    return "\n".join(lines) + "\n" + _HEAD + _rule("true")


def _test(name: str, path: str, expect: str) -> str:
    request = f'{{agent: {{id: a1, team: t}}, action: {{tool: fs.read, args: {{path: "{path}"}}}}}}'
    return f"  - name: {name}\n    request: {request}\n    expect: {expect}\n"


CORPUS: tuple[Poison, ...] = (
    Poison("billion laughs", _laughs(), "YAML anchors", 1),
    Poison("alias only", _HEAD + "  - {id: r, effect: deny, reason: *x}\n", "alias", 6),
    Poison("20,000-term && chain", _HEAD + _rule(" && ".join(["true"] * 20_000)), "characters", 8),
    Poison("2,000-term && chain", _HEAD + _rule(" && ".join(["true"] * 2_000)), "nests deeper", 8),
    Poison(
        "3,000-term + chain",
        _HEAD + _rule("size(action.args.path) > " + " + ".join(["1"] * 3_000)),
        "terms",
        8,
    ),
    Poison(
        "5,000-digit literal",
        _HEAD + _rule("size(action.args.path) > " + "9" * 5_000),
        "digits",
        8,
    ),
    Poison("5,000 nested parentheses", _HEAD + _rule("(" * 5_000 + "true" + ")" * 5_000), "nests"),
    Poison("deep YAML", _HEAD + "  - {id: r, effect: deny, obligations: " + "[" * 500 + "]" * 500 + "}\n", "YAML nests", 6),
    Poison("surrogate pair escape", _HEAD + '  - {id: r, effect: deny, reason: "\\ud83d\\ude00"}\n', "surrogate", 6),
    Poison("non-regular regex", _HEAD + _rule(r'action.args.path.matches(r"(a)\1")'), "regex subset", 8),
    Poison("anchor inside a group", _HEAD + _rule('action.args.path.matches("x(^a)")'), "may only begin", 8),
    Poison("nested counted repetition", _HEAD + _rule('action.args.path.matches("((a{50}){50})")'), "repetitions", 8),
    Poison("empty roles", _HEAD.replace("{actions: [fs.read]}", "{agents: {roles: []}}") + _rule("true", "allow"), "roles: []", 4),
    Poison("empty ids", _HEAD.replace("{actions: [fs.read]}", "{agents: {ids: []}}") + _rule("true", "allow"), "ids: []", 4),
    Poison("empty actions", _HEAD.replace("{actions: [fs.read]}", "{actions: []}") + _rule("true", "allow"), "actions: []", 4),
    Poison("empty resources", _HEAD.replace("{actions: [fs.read]}", "{resources: []}") + _rule("true", "allow"), "resources: []", 4),
    Poison(
        "unreachable ill-typed rule",
        _HEAD.replace("fs.read", "payments.transfer")
        + "  - id: r\n    effect: allow\n    actions: [fs.read]\n"
        + "    when: 'action.args.nonexistent > \"x\" + 5'\n",
        "action.args.nonexistent",
        9,
    ),
    Poison("2 MiB file", _HEAD + _rule("true") + "# " + "x" * 2_100_000 + "\n", "characters", 1),
    Poison(
        "catastrophic-backtracking regex",
        _HEAD
        + _rule(f'action.args.path.matches(r"{REDOS_PATTERN}")', "allow")
        + "tests:\n"
        + _test("a long path that almost matches is decided, not stalled", REDOS_PATH, "deny")
        + _test("a path that matches is allowed", "/" + "a" * 27, "allow"),
        None,
    ),
)  # fmt: skip


def bundle_files(poison: Poison) -> dict[str, str]:
    return {"schema.yaml": SCHEMA, "hostile.yaml": poison.text}
