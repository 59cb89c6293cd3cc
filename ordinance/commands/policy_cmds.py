"""``ordinance check | test | eval | fmt``: the policy author's loop."""

from __future__ import annotations

import difflib
import sys
from pathlib import Path
from typing import Any

from rich.console import Console
from rich.markup import escape
from rich.table import Table

from ordinance.commands.output import (
    EXIT_COMPILE,
    EXIT_FAILED,
    EXIT_GATE,
    EXIT_OK,
    EXIT_TESTS,
    EXIT_USAGE,
    console,
    emit_json,
    report_policy_errors,
)
from ordinance.jsonutil import canonical_json, parse_request_json
from ordinance.policy import canon
from ordinance.policy.decision import Effect
from ordinance.policy.errors import PolicyError, PolicyErrors
from ordinance.policy.fmt import format_policy
from ordinance.policy.loader import load_ruleset, policy_files
from ordinance.policy.ruleset import Ruleset
from ordinance.policy.testing import run_tests
from ordinance.policy.window import InMemoryWindows

_EFFECT_STYLE: dict[str, str] = {
    Effect.ALLOW: "green",
    Effect.DENY: "red",
    Effect.REQUIRE_APPROVAL: "yellow",
}


def _load(directory: str, as_json: bool) -> Ruleset | int:
    try:
        return load_ruleset(Path(directory))
    except PolicyErrors as exc:
        return report_policy_errors(exc, as_json)


def summary(ruleset: Ruleset) -> dict[str, Any]:
    return {
        "bundle_id": ruleset.bundle_id,
        "policies": [p.id for p in ruleset.policies],
        "rules": len(ruleset.rules),
        "tools": sorted(ruleset.schema.tools),
        "tests": sum(len(p.tests) for p in ruleset.policies),
        "assertions": sum(len(p.assertions) for p in ruleset.policies),
        "default_effect": ruleset.schema.settings.default_effect,
        "combining": ruleset.schema.settings.combining,
    }


def cmd_check(
    directory: str,
    as_json: bool,
    strict: bool = False,
    log_url: str | None = None,
    target: str = "default",
    prefix: str = "ordinance.",
) -> int:
    """Compile errors exit 3; so, under ``strict``, do rules that can fail to evaluate
    and suspicious regexes (otherwise they are warnings; a rule that can err comes with a
    request that makes it err). With ``log_url``, the schema is compared with the bundle
    in force on ``target``: an unacknowledged breaking change exits 5."""
    from ordinance.commands.schema_compat_cmds import SchemaCheck, checked, print_schema_check
    from ordinance.policy.analysis.errs import rule_errors
    from ordinance.policy.regexlint import lint_condition

    loaded = _load(directory, as_json)
    if isinstance(loaded, int):
        return loaded
    info = summary(loaded)
    can_err = rule_errors(loaded)
    severity = "error" if strict else "warning"
    problems: list[PolicyError] = [f.problem(severity) for f in can_err.findings]
    for policy in loaded.policies:
        for cond in [r.condition for r in policy.rules] + [a.condition for a in policy.assertions]:
            problems += lint_condition(cond, severity)
    refused = strict and bool(problems)
    compat: SchemaCheck | None = None
    if log_url is not None and not refused:
        outcome = checked(directory, loaded, log_url, target, prefix, as_json)
        if isinstance(outcome, int):
            return outcome
        compat = outcome
    incompatible = compat is not None and not compat.ok
    if as_json:
        emit_json(
            {
                "ok": not refused and not incompatible,
                **info,
                "errors" if strict else "warnings": [p.to_json() for p in problems],
                "rule_errors": can_err.to_json(),
                **({"schema": compat.to_json()} if compat is not None else {}),
            }
        )
        return EXIT_COMPILE if refused else EXIT_GATE if incompatible else EXIT_OK
    err = Console(stderr=True, highlight=False, soft_wrap=True)
    for problem in problems:
        err.print(problem.render(), markup=False)
        err.print()
    for u in can_err.undecided:
        err.print(f"undecided: can rule {u['rule']} err on {u['tool']}? {u['why']}", markup=False)
    if refused:
        err.print(f"{len(problems)} error(s) (--strict)", style="bold red")
        return EXIT_COMPILE
    if compat is not None:
        print_schema_check(compat, err)
        if incompatible:
            return EXIT_GATE
    out = console()
    warned = f", {len(problems)} warning(s)" if problems else ""
    out.print(
        f"[green]ok[/] {len(info['policies'])} policies, {info['rules']} rules, "
        f"{len(info['tools'])} tools, {info['tests']} tests, {info['assertions']} assertions"
        + warned
    )
    out.print(f"bundle {info['bundle_id']}")
    if compat is not None:
        against = ", ".join(compat.against) or "-"
        out.print(
            f"schema {compat.outcome.replace('_', ' ')} against the bundle in force on "
            f"{target!r} ({against}){': ' + compat.detail if compat.detail else ''}",
            markup=False,
        )
    return EXIT_OK


def cmd_test(directory: str, as_json: bool, verbose: bool) -> int:
    loaded = _load(directory, as_json)
    if isinstance(loaded, int):
        return loaded
    results = run_tests(loaded)
    failed = [r for r in results if not r.passed]
    if as_json:
        emit_json(
            {
                "ok": not failed,
                "bundle_id": loaded.bundle_id,
                "passed": len(results) - len(failed),
                "failed": len(failed),
                "results": [r.to_json() for r in results],
            }
        )
        return EXIT_TESTS if failed else EXIT_OK
    out = console()
    table = Table(title=f"policy tests against the combined set ({loaded.bundle_id[:19]}…)")
    for column in ("policy", "test", "expected", "got", "code", "result"):
        table.add_column(column)
    for r in results:
        if r.passed and not verbose:
            continue
        table.add_row(
            escape(r.policy),
            escape(r.name),
            r.expected,
            f"[{_EFFECT_STYLE.get(r.decision.effect, 'white')}]{r.decision.effect}[/]",
            escape(r.code),
            "[green]pass[/]" if r.passed else f"[red]FAIL[/] {escape(r.problem)} ({r.location})",
        )
    if table.row_count:
        out.print(table)
    style = "red" if failed else "green"
    out.print(f"[{style}]{len(results) - len(failed)} passed, {len(failed)} failed[/]")
    return EXIT_TESTS if failed else EXIT_OK


def _read_request(source: str) -> Any:
    text = sys.stdin.read() if source == "-" else Path(source).read_text(encoding="utf-8")
    return parse_request_json(text)  # exact decimals, as `submit` reads them


def cmd_eval(directory: str, request_file: str, as_json: bool) -> int:
    loaded = _load(directory, as_json)
    if isinstance(loaded, int):
        return loaded
    try:
        request = _read_request(request_file)
    except (OSError, ValueError) as exc:  # JSONDecodeError and UnicodeDecodeError included
        console().print(f"[red]cannot read request {request_file}:[/] {exc}")
        return EXIT_USAGE
    # `eval` has no history: window functions see an empty state at the current instant.
    decision = loaded.evaluate(request, InMemoryWindows(clock=lambda: 0.0))
    tool = ""
    if isinstance(request, dict) and isinstance(request.get("action"), dict):
        raw_tool = request["action"].get("tool")
        tool = canon.canonical_tool(raw_tool) if isinstance(raw_tool, str) else ""
    if as_json:
        emit_json({"canonical_tool": tool, "decision": decision.to_json()})
        return EXIT_OK
    out = console()
    style = _EFFECT_STYLE.get(decision.effect, "white")
    out.print(f"[bold {style}]{decision.effect}[/]  ({decision.code})")
    out.print(f"tool      {tool or '-'}")
    for rule_id, reason in zip(decision.rule_ids, decision.reasons, strict=False):
        out.print(f"rule      {rule_id}: {reason}", markup=False)
    if not decision.rule_ids:
        out.print(f"reason    {decision.reasons[0] if decision.reasons else '-'}", markup=False)
    for obligation in decision.obligations:
        out.print(f"obligation {canonical_json(obligation).decode()}", markup=False)
    if decision.approvals_required is not None:
        who = ", ".join(decision.approval_roles) or "any principal but the agent"
        out.print(f"approvals {decision.approvals_required} distinct, by: {who}", markup=False)
    out.print(f"bundle    {decision.bundle_id}")
    return EXIT_OK


def cmd_fmt(paths: list[str], check: bool, as_json: bool) -> int:
    files: list[Path] = []
    for raw in paths:
        p = Path(raw)
        files.extend(policy_files(p) if p.is_dir() else [p])
    changed: list[str] = []
    errors: list[PolicyErrors] = []
    out = console()
    for path in files:
        text = path.read_text(encoding="utf-8")
        try:
            formatted = format_policy(text, str(path))
        except PolicyErrors as exc:
            errors.append(exc)
            continue
        if formatted != text:
            changed.append(str(path))
            if check and not as_json:
                diff = difflib.unified_diff(
                    text.splitlines(keepends=True),
                    formatted.splitlines(keepends=True),
                    str(path),
                    f"{path} (formatted)",
                )
                out.print("".join(diff), markup=False)
            elif not check:
                path.write_text(formatted, encoding="utf-8")
    if errors:
        return report_policy_errors(PolicyErrors([e for ex in errors for e in ex.errors]), as_json)
    if as_json:
        emit_json(
            {"ok": not (check and changed), "files": len(files), "changed": changed, "check": check}
        )
    else:
        verb = "would reformat" if check else "reformatted"
        for name in changed:
            out.print(f"{verb} {name}")
        out.print(f"{len(files)} file(s), {len(changed)} {verb}")
    return EXIT_FAILED if check and changed else EXIT_OK
