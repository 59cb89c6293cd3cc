"""``ordinance analyze | diff`` and ``ordinance check --analyze``: formal analysis with Z3.

Exit codes: 0 ok; 3 the bundle does not compile; 5 the analysis gate refused the bundle
(refuted or unproven assertions, or conflicts as configured, not acknowledged); ``diff``
exits 5 when ``--fail-on`` finds a matching change or a tool it could not compare, 2 when a bundle id is not on the log.
"""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Any

import orjson
from rich.console import Console
from rich.markup import escape

from ordinance.commands.output import (
    EXIT_COMPILE,
    EXIT_GATE,
    EXIT_OK,
    EXIT_USAGE,
    console,
    emit_json,
)
from ordinance.commands.policy_cmds import _load, cmd_check
from ordinance.policy.analysis.checks import DEFAULT_RLIMIT, Finding, Options
from ordinance.policy.analysis.diff import semantic_diff
from ordinance.policy.analysis.gate import ACK_FILE, AckProblem, GateResult, gate, load_acks
from ordinance.policy.analysis.run import Report, analyze, touched_tools
from ordinance.policy.ruleset import Ruleset

_STYLE = {
    "assertion": "bold red",
    "conflict": "yellow",
    "dead-rule": "magenta",
    "redundant-rule": "cyan",
    "gap": "blue",
    "unknown": "white",
    "inexact": "dim",
}


def _witness_line(f: Finding) -> str:
    if f.witness is None:
        return ""
    return orjson.dumps(f.witness.request, option=orjson.OPT_SORT_KEYS).decode()


def print_report(report: Report, out: Console) -> None:
    for f in report.findings:
        style = _STYLE.get(f.kind, "white")
        where = escape(f" [{f.tool}]") if f.tool else ""
        subjects = escape(" " + ", ".join(f.subjects)) if f.subjects else ""
        out.print(f"[{style}]{f.kind}[/]{where}{subjects}  {f.id}", highlight=False)
        out.print(f"  {f.message}", markup=False)
        if f.witness is not None:
            out.print(f"  witness: {_witness_line(f)}", markup=False)
            if f.witness.history:
                history = orjson.dumps(f.witness.history).decode()
                out.print(f"  history: {history}", markup=False)
    counts: dict[str, int] = {}
    for f in report.findings:
        counts[f.kind] = counts.get(f.kind, 0) + 1
    summary = ", ".join(f"{n} {k}" for k, n in sorted(counts.items())) or "no findings"
    out.print(
        f"{summary}; {len(report.proven)} assertion(s) proven; "
        f"{report.checks} solver checks on {report.tools} tools in {report.seconds:.1f}s; "
        f"budget rlimit {report.rlimit} per check (most used: {report.max_spent}), "
        f"{len(report.by_kind('unknown'))} undecided"
    )
    exact = [
        f"{tool} {attr} ({why})"
        for tool, summary in sorted(report.abstraction.items())
        for attr, why in summary.get("exact", {}).items()
    ]
    if exact:  # the string abstraction could not decide these: exact string theory
        out.print("strings kept exact: " + "; ".join(exact), markup=False)


def _run(
    directory: str, as_json: bool, rlimit: int, jobs: int, policies: list[str] | None
) -> Report | int:
    loaded = _load(directory, as_json)
    if isinstance(loaded, int):
        return loaded
    only = None
    if policies:
        unknown = sorted(set(policies) - {p.id for p in loaded.policies})
        if unknown:
            return _fail(f"no such policy: {', '.join(unknown)}", as_json)
        only = touched_tools(loaded, set(policies))
    return analyze(
        loaded,
        Options(rlimit=rlimit),
        progress=sys.stderr.isatty() or jobs > 1,
        jobs=jobs,
        directory=Path(directory),
        only=only,
    )


def cmd_analyze(
    directory: str,
    as_json: bool,
    timeout_ms: int | None,
    jobs: int,
    rlimit: int = DEFAULT_RLIMIT,
    policies: list[str] | None = None,
) -> int:
    """``timeout_ms`` is accepted for compatibility and ignored: the budget is ``rlimit``.
    ``policies``: analyse only the tool buckets these policies touch (after an edit)."""
    report = _run(directory, as_json, rlimit, jobs, policies)
    if isinstance(report, int):
        return report
    if as_json:
        emit_json(report.to_json())
    else:
        print_report(report, console())
    return EXIT_OK


def cmd_check_analyze(
    directory: str,
    as_json: bool,
    conflicts: str,
    timeout_ms: int | None,
    jobs: int,
    rlimit: int = DEFAULT_RLIMIT,
    undecided: str = "refuse",
    log_url: str | None = None,
    target: str = "default",
    prefix: str = "ordinance.",
) -> int:
    """``check`` first (compile errors exit 3; with ``log_url`` the schema-compatibility
    gate, exit 5), then the analysis gate (exit 5)."""
    from ordinance.commands.schema_compat_cmds import checked

    if not as_json:
        code = cmd_check(directory, as_json, log_url=log_url, target=target, prefix=prefix)
        if code != EXIT_OK:
            return code
    loaded = _load(directory, as_json)
    if isinstance(loaded, int):
        return loaded
    schema: dict[str, Any] = {}
    if as_json and log_url is not None:
        compat = checked(directory, loaded, log_url, target, prefix, as_json)
        if isinstance(compat, int):
            return compat
        schema = {"schema": compat.to_json()}
    try:
        report, result = _gated(loaded, directory, conflicts, jobs, rlimit, undecided)
    except AckProblem as exc:
        console().print(f"[red]{exc}[/]")
        return EXIT_COMPILE
    if as_json:
        emit_json({"analysis": report.to_json(), "gate": result.to_json(), **schema})
    else:
        out = console()
        print_report(report, out)
        for ack, covered in result.by_acknowledgement():
            out.print(f"acknowledged by {ack.name}: {ack.justification}", markup=False)
            for f in covered:
                out.print(f"  covers {f.id}: {' vs '.join(f.subjects)} on {f.tool}", markup=False)
        for ack in result.stale_acks:
            out.print(f"[yellow]unused acknowledgement[/] {escape(ack.name)}: covers no finding")
        for f in result.failures:
            if f.kind == "unknown":
                check = f.details.get("check", "?")
                out.print(
                    f"[red]undecided[/] {check} check {escape(', '.join(f.subjects))}"
                    f" [{escape(f.tool)}] refuses (--undecided {undecided}); raise --rlimit"
                    f" or acknowledge {f.id}",
                    highlight=False,
                )
        if result.ok:
            out.print("[green]analysis gate passed[/]")
        else:
            ids = ", ".join(f.id for f in result.failures)
            out.print(f"[red]analysis gate refused the bundle:[/] {ids}")
    return EXIT_OK if result.ok and schema.get("schema", {}).get("ok", True) else EXIT_GATE


def _gated(
    ruleset: Ruleset, directory: str, conflicts: str, jobs: int, rlimit: int, undecided: str
) -> tuple[Report, GateResult]:
    acks = load_acks(Path(directory) / ACK_FILE)
    report = analyze(
        ruleset,
        Options(rlimit=rlimit),
        progress=sys.stderr.isatty(),
        jobs=jobs,
        directory=Path(directory),
    )
    return report, gate(report, acks, conflicts, undecided=undecided)


def publish_gate(
    ruleset: Ruleset,
    directory: str,
    conflicts: str,
    timeout_ms: int | None,
    jobs: int,
    rlimit: int = DEFAULT_RLIMIT,
    undecided: str = "refuse",
) -> GateResult:
    """The gate on publishing ``ruleset`` under the directory's acknowledgements — the
    same gate as ``check --analyze``: its failures refuse, and the acknowledgements it
    used are published with the bundle. ``timeout_ms`` is accepted for compatibility and
    ignored (the budget is ``rlimit``). Raises AckProblem."""
    return _gated(ruleset, directory, conflicts, jobs, rlimit, undecided)[1]


def _fail(message: str, as_json: bool) -> int:
    if as_json:
        emit_json({"error": message})
    else:
        console().print(f"[red]{escape(message)}[/]")
    return EXIT_USAGE


def _ruleset(spec: str, as_json: bool, store: Any) -> Ruleset | int:
    """A policy directory, or a bundle id (a unique prefix will do) stored on the log:
    ``policy.active``'s ``bundle:<id>`` record, else its ``published`` event. The stored
    content must hash to its id, as the enforcer requires before it runs a bundle."""
    if Path(spec).is_dir():
        return _load(spec, as_json)
    if store is None:
        return _fail(f"{spec!r} is not a directory; a bundle id needs --log URL", as_json)
    bundle_id = store.resolve(spec)
    ruleset: Ruleset | None = store.ruleset(bundle_id) if bundle_id is not None else None
    if ruleset is None:
        problems = [p.message for p in store.problems.get(bundle_id, [])] if bundle_id else []
        why = f": {problems[0]}" if problems else ""
        return _fail(f"{spec!r} is neither a directory nor one bundle on the log{why}", as_json)
    if ruleset.bundle_id != bundle_id:
        return _fail(f"bundle {bundle_id} on the log has content {ruleset.bundle_id}", as_json)
    return ruleset


def _bundle_store(log_url: str, prefix: str, as_json: bool) -> Any:
    """The bundles on the log (read once), or an exit code. Reading is the replay
    package's (``BundleStore``): the same records the enforcer compiles."""
    from ordinance.replay.bundles import BundleStore
    from ordinance.replay.source import open_source
    from ordinance.streams.errors import LogError

    try:
        source, log = open_source(log_url, None, prefix)
    except LogError as exc:
        return _fail(str(exc), as_json)
    try:
        return BundleStore.load(source)
    except LogError as exc:
        return _fail(str(exc), as_json)
    finally:
        if log is not None:
            log.close()


def cmd_diff(
    old_spec: str,
    new_spec: str,
    as_json: bool,
    fail_on: str | None,
    timeout_ms: int | None,
    log_url: str | None = None,
    prefix: str = "ordinance.",
    rlimit: int = DEFAULT_RLIMIT,
) -> int:
    """``old_spec``/``new_spec``: policy directories, or bundle ids on ``log_url``."""
    store = None
    if log_url is not None and not (Path(old_spec).is_dir() and Path(new_spec).is_dir()):
        store = _bundle_store(log_url, prefix, as_json)
        if isinstance(store, int):
            return store
    old = _ruleset(old_spec, as_json, store)
    if isinstance(old, int):
        return old
    new = _ruleset(new_spec, as_json, store)
    if isinstance(new, int):
        return new
    report = semantic_diff(old, new, rlimit)
    failing: list[Any] = []
    if fail_on == "new-allow":
        failing = report.new_allow()
    elif fail_on == "new-access":
        failing = report.new_access()
    elif fail_on == "any":
        failing = list(report.changes)
    # A tool the diff could not compare may change anything: a gate passes only on what it
    # checked, so every --fail-on mode fails on it (with the reason).
    uncompared = dict(report.not_compared) if fail_on is not None else {}
    failed = bool(failing or uncompared)
    if as_json:
        emit_json(
            {
                **report.to_json(),
                "fail_on": fail_on,
                "failed": failed,
                "failing_not_compared": uncompared,
            }
        )
    else:
        out = console()
        for c in report.changes:
            out.print(f"[bold]{c.tool}[/] {c.before} → {c.after} ({c.status})")
            if c.witness is not None:
                request = orjson.dumps(c.witness.request, option=orjson.OPT_SORT_KEYS).decode()
                out.print(f"  witness: {request}", markup=False)
                if c.witness.history:
                    out.print(
                        f"  history: {orjson.dumps(c.witness.history).decode()}", markup=False
                    )
        for tool, why in report.not_compared.items():
            out.print(f"[yellow]{tool}[/] not compared: {why}")
        if not report.changes and not report.not_compared:
            out.print("[green]no request changes decision[/]")
        if failing:
            out.print(f"[red]{len(failing)} change(s) match --fail-on {fail_on}[/]")
        if uncompared:
            out.print(
                f"[red]{len(uncompared)} tool(s) not compared: --fail-on {fail_on} cannot pass "
                "what it did not check[/]"
            )
    return EXIT_GATE if failed else EXIT_OK
