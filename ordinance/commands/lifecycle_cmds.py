"""``ordinance publish`` and ``ordinance controller``: bundles onto the log, and the
controller that validates them into the ``policy.active`` table."""

from __future__ import annotations

import contextlib
import getpass
import signal
import threading
from collections.abc import Iterator
from pathlib import Path
from types import FrameType
from typing import Any

from rich.console import Console

from ordinance.commands.output import (
    EXIT_COMPILE,
    EXIT_FAILED,
    EXIT_GATE,
    EXIT_OK,
    EXIT_TESTS,
    EXIT_USAGE,
    console,
    emit_json,
    report_failure,
    report_policy_errors,
)
from ordinance.errors import OrdinanceError
from ordinance.policy.bundle import compile_bundle, read_bundle_dir
from ordinance.policy.errors import PolicyErrors
from ordinance.policy.testing import run_tests
from ordinance.processors.controller_loop import run_controller
from ordinance.processors.policy_log import publish_bundle
from ordinance.streams import open_log


def default_actor(explicit: str | None) -> str:
    if explicit:
        return explicit
    try:
        return getpass.getuser()
    except (KeyError, OSError):
        return "unknown"


def change_signer(actor: str, key: str | None) -> Any:
    """The principal signing policy changes as ``actor``: ``--key`` or ``$ORDINANCE_KEY``;
    None (unsigned) when neither names a key. The signature header names the actor, so
    the two cannot differ; a controller with a trust root refuses a key that is not one
    of the actor's (``key_not_valid``)."""
    from ordinance.identity.signing import PrincipalSigner

    if key is not None:
        return PrincipalSigner.from_file(actor, Path(key))
    return PrincipalSigner.from_env(actor)


#: Environment variable naming the controller's key file when ``--controller-key`` is not given.
CONTROLLER_KEY_ENV = "ORDINANCE_CONTROLLER_KEY"


def controller_signer(principal_id: str, key: str | None) -> Any:
    """The controller's signer for ``policy.active`` (`active_auth`): ``--controller-key``
    or ``$ORDINANCE_CONTROLLER_KEY``; None when neither names a key (then a controller
    with a trust root refuses to start, saying so)."""
    from ordinance.identity.signing import PrincipalSigner

    if key is not None:
        return PrincipalSigner.from_file(principal_id, Path(key))
    return PrincipalSigner.from_env(principal_id, CONTROLLER_KEY_ENV)


def _trust_root(path: str | None) -> Any:
    """``--trust`` or ``$ORDINANCE_TRUST``; None when neither is given (legacy: changes
    are not authenticated)."""
    import os

    from ordinance.commands.identity_cmds import TRUST_ENV
    from ordinance.identity.trust import TrustRoot

    named = path or os.environ.get(TRUST_ENV)
    return TrustRoot.from_file(Path(named)) if named else None


def cmd_publish(
    directory: str,
    log_url: str,
    *,
    target: str,
    actor: str | None,
    reason: str | None,
    enforce: bool,
    as_json: bool,
    analysis: tuple[str, int | None, int, int, str] | None = (
        "cross-owner",
        None,
        1,
        5_000_000,
        "refuse",
    ),
    key: str | None = None,
    allow_dirty: bool = False,
    whatif_since: str | None = "24h",
) -> int:
    """Compile, check the directory is committed in Git (unless ``allow_dirty``), test
    and (unless ``analysis`` is None) pass the Z3 analysis gate locally first: a bundle
    that fails here never reaches the log. ``analysis`` is (which unacknowledged
    conflicts refuse, the ignored legacy per-check ms, worker processes, the per-check Z3
    resource budget, which undecided checks refuse). ``whatif_since``: the start of the
    recent traffic replayed under the bundle (None: ``--skip-whatif``)."""
    from ordinance.commands import publish_whatif
    from ordinance.gitsource import CLEAN, NOT_IN_GIT, describe, git_source
    from ordinance.policy.analysis.gate import ACK_FILE
    from ordinance.timeargs import TimeArgumentError, parse_time

    try:
        since = parse_time(whatif_since) if whatif_since is not None else None
    except TimeArgumentError as exc:
        return report_failure(f"--whatif-since: {exc}", as_json)

    try:
        files = read_bundle_dir(Path(directory))
        ruleset = compile_bundle(files)
    except PolicyErrors as exc:
        return report_policy_errors(exc, as_json)
    err = Console(stderr=True, highlight=False)
    git = git_source(Path(directory), [*files, ACK_FILE])
    bypasses = ["--skip-analysis"] if analysis is None else []
    if git.state not in (CLEAN, NOT_IN_GIT):
        if not allow_dirty:
            message = (
                f"refused: {directory} is not exactly a Git commit ({describe(git)}); commit "
                "the changes, or publish with --allow-dirty (recorded on the event as a bypass)"
            )
            if as_json:
                emit_json({"ok": False, "error": message, "git": git.datum()})
            else:
                err.print(message, style="red", markup=False)
            return EXIT_GATE
        bypasses.append("--allow-dirty")
    results = run_tests(ruleset)
    failed = [r for r in results if not r.passed]
    checks: dict[str, Any] = {
        "tests": len(results),
        "analysis": "skipped",
        "bypasses": bypasses,
        "acknowledgements": [],
    }
    if failed:
        for r in failed:
            err.print(f"[red]FAIL[/] {r.policy}/{r.name}: {r.problem} ({r.location})", markup=True)
        return EXIT_TESTS
    refused_schema = _schema_gate(directory, files, ruleset, log_url, target, checks, as_json, err)
    if refused_schema is not None:
        return refused_schema
    if analysis is not None:
        from ordinance.commands.analysis_cmds import publish_gate
        from ordinance.policy.analysis.gate import AckProblem

        try:
            result = publish_gate(ruleset, directory, *analysis)
        except AckProblem as exc:
            err.print(f"[red]acknowledgements:[/] {exc}", markup=True)
            return EXIT_COMPILE
        refused = result.failures
        checks["analysis"] = "passed"
        checks["acknowledgements"] += [
            {
                "finding": finding.id,
                "kind": finding.kind,
                "justification": ack.justification,
                "by": ack.by,
                "expires": ack.expires.isoformat() if ack.expires is not None else None,
            }
            for finding, ack in result.acknowledged
        ]
        if refused:
            for finding in refused:
                err.print(f"REFUSED {finding.id}: {finding.message}", markup=False)
            err.print(
                f"the analysis gate refused the bundle ({len(refused)} finding(s)); "
                f"see `ordinance check {directory} --analyze`, acknowledge intended ones"
            )
            if as_json:
                emit_json({"ok": False, "refused": [f.to_json() for f in refused]})
            return EXIT_GATE
    checks["whatif"] = publish_whatif.whatif_summary(ruleset, log_url, since)
    if since is None:
        checks["bypasses"].append(publish_whatif.SKIP_OPTION)
    try:
        signer = change_signer(default_actor(actor), key)
        with open_log(log_url) as log:
            published = publish_bundle(
                log,
                files,
                ruleset.bundle_id,
                actor=default_actor(actor),
                target=target,
                reason=reason,
                enforce=enforce,
                checks=checks,
                signer=signer,
                git=git.datum(),
            )
    except OrdinanceError as exc:
        err.print(f"[red]could not publish:[/] {exc}")
        return EXIT_FAILED
    if as_json:
        emit_json(
            {
                "bundle_id": published.bundle_id,
                "published_offset": published.published_offset,
                "enforced_offset": published.enforced_offset,
                "target": target if enforce else None,
                "checks": checks,
                "git": git.datum(),
                "signer": None if signer is None else signer.principal_id,
                "key_id": None if signer is None else signer.key_id,
            }
        )
        return EXIT_OK
    out = console()
    out.print(
        f"published {published.bundle_id} at policy.changes offset {published.published_offset}"
    )
    out.print(f"from git: {describe(git)}", markup=False)
    out.print(publish_whatif.describe(checks["whatif"]), markup=False)
    if signer is not None:
        out.print(f"signed as {signer.principal_id} with key {signer.key_id}", markup=False)
    else:
        out.print("unsigned: a controller with a trust root refuses it (--key or $ORDINANCE_KEY)")
    for bypass in checks["bypasses"]:
        out.print(f"[yellow]bypassed with {bypass}[/] (recorded on the published event)")
    if published.enforced_offset is not None:
        out.print(f"enforce on target {target!r} requested at offset {published.enforced_offset}")
    out.print("the controller validates both before anything reaches policy.active")
    return EXIT_OK


def _schema_gate(
    directory: str,
    files: dict[str, str],
    ruleset: Any,
    log_url: str,
    target: str,
    checks: dict[str, Any],
    as_json: bool,
    err: Console,
) -> int | None:
    """The schema-compatibility gate against the bundle(s) in force on ``target``: None
    when it passes (its outcome and the acknowledgements it used added to ``checks``),
    else the exit code (5 refused, 3 a bad acknowledgements file, 1 the log unreadable)."""
    from ordinance.commands.schema_compat_cmds import (
        SchemaCheckError,
        print_schema_check,
        schema_check,
    )
    from ordinance.policy.analysis.gate import AckProblem

    try:
        compat = schema_check(directory, files, ruleset, log_url, target)
    except AckProblem as exc:
        err.print(f"[red]acknowledgements:[/] {exc}", markup=True)
        return EXIT_COMPILE
    except SchemaCheckError as exc:
        err.print(f"could not check schema compatibility: {exc}", style="red", markup=False)
        return EXIT_FAILED
    print_schema_check(compat, err)
    if not compat.ok:
        if as_json:
            emit_json({"ok": False, "schema": compat.to_json()})
        return EXIT_GATE
    checks["schema_compatibility"] = compat.datum()
    checks["acknowledgements"] += compat.acknowledgements()
    return None


@contextlib.contextmanager
def _stop_on_signals() -> Iterator[threading.Event]:
    """An event SIGTERM/SIGINT set, so long-running loops stop between two records."""
    stop = threading.Event()

    def request_stop(_signum: int, _frame: FrameType | None) -> None:
        stop.set()

    previous = {sig: signal.signal(sig, request_stop) for sig in (signal.SIGTERM, signal.SIGINT)}
    try:
        yield stop
    finally:
        stop.set()
        for sig, handler in previous.items():
            signal.signal(sig, handler)


def cmd_controller(
    log_url: str,
    *,
    once: bool,
    as_json: bool,
    trust: str | None = None,
    controller_key: str | None = None,
    controller_id: str = "policy-controller",
) -> int:
    err = Console(stderr=True, highlight=False)
    try:
        root = _trust_root(trust)
        signer = controller_signer(controller_id, controller_key)
        with _stop_on_signals() as stop, open_log(log_url) as log:
            report = run_controller(
                log,
                once=once,
                stop=stop,
                progress=lambda m: err.print(f"[dim]{m}[/]"),
                trust=root,
                signer=signer,
            )
    except OrdinanceError as exc:
        err.print(f"[red]controller stopped:[/] {exc}")
        return EXIT_FAILED
    if as_json:
        emit_json(
            {"applied": report.applied, "rejected": report.rejected, "written": report.written}
        )
    else:
        console().print(
            f"controller: {report.applied} change(s) applied, {report.rejected} rejected, {report.written} record(s) written"
        )
    return EXIT_OK


def cmd_serve(
    log_url: str,
    *,
    target: str,
    enforcer_id: str | None,
    as_json: bool,
    state_dir: str | None = None,
    mask_config: str | None = None,
    signing_key: str | None = None,
    max_clock_skew_s: float | None = None,
    trust: str | None = None,
    dedupe_horizon_s: float | None = None,
    http: str | None = None,
    prefix: str = "ordinance.",
    controller_key: str | None = None,
    controller_id: str = "policy-controller",
) -> int:
    """Controller and enforcer in one process until SIGTERM/SIGINT; both stop between
    records, so nothing is left half-written."""
    with _stop_on_signals() as stop:
        return _serve(
            log_url,
            stop,
            target=target,
            enforcer_id=enforcer_id,
            as_json=as_json,
            state_dir=state_dir,
            mask_config=mask_config,
            signing_key=signing_key,
            max_clock_skew_s=max_clock_skew_s,
            trust=trust,
            dedupe_horizon_s=dedupe_horizon_s,
            http=http,
            prefix=prefix,
            controller_key=controller_key,
            controller_id=controller_id,
        )


def _serve(
    log_url: str,
    stop: threading.Event,
    *,
    target: str,
    enforcer_id: str | None,
    as_json: bool,
    state_dir: str | None,
    mask_config: str | None = None,
    signing_key: str | None = None,
    max_clock_skew_s: float | None = None,
    trust: str | None = None,
    dedupe_horizon_s: float | None = None,
    http: str | None = None,
    prefix: str = "ordinance.",
    controller_key: str | None = None,
    controller_id: str = "policy-controller",
) -> int:
    from ordinance.keys import Signer
    from ordinance.processors.http_server import host_port
    from ordinance.processors.masking import Masking
    from ordinance.processors.service import ServeOptions, serve, stable_enforcer_id

    err = Console(stderr=True, highlight=False)

    def note(message: str) -> None:
        err.print(f"[dim]{message}[/]")

    try:
        masking = Masking.from_file(Path(mask_config)) if mask_config else None
        signer = Signer.from_file(Path(signing_key)) if signing_key else None
        root = _trust_root(trust)
        controller = controller_signer(controller_id, controller_key)
        if root is not None and controller is None:
            raise ValueError(
                "with a trust root the controller signs policy.active and enforcers believe "
                "nothing else: give --controller-key (or $ORDINANCE_CONTROLLER_KEY), the key "
                f"of registry principal {controller_id!r} with the policy-controller role"
            )
        address = host_port(http) if http else None
    except (OrdinanceError, ValueError) as exc:
        err.print(f"[red]cannot serve:[/] {exc}")
        return EXIT_USAGE

    options = ServeOptions(
        log_url,
        target=target,
        prefix=prefix,
        enforcer_id=enforcer_id or stable_enforcer_id(),
        state_dir=Path(state_dir) if state_dir else None,
        masking=masking,
        checkpoint_signer=signer,
        controller_signer=controller,
        trust=root,
        max_clock_skew_s=max_clock_skew_s,
        dedupe_horizon_s=dedupe_horizon_s,
        http=address,
    )
    err.print(
        f"serving {log_url} as {options.enforcer_id} (target {target!r}, topics {prefix}*); "
        "SIGTERM stops"
    )
    try:
        outcome = serve(
            options,
            stop,
            progress=note,
            on_http=lambda port: err.print(
                f"metrics and health on http://{address[0] if address else ''}:{port}/"
            ),
        )
    except (OrdinanceError, OSError) as exc:  # the HTTP listener could not start
        err.print(f"[red]cannot serve:[/] {exc}")
        return EXIT_FAILED
    if outcome.failure is not None:
        err.print(f"[red]{outcome.failed} stopped:[/] {outcome.failure}")
        return EXIT_FAILED
    report = outcome.report
    summary = {
        "decided": report.decided,
        "duplicates": report.duplicates,
        "swaps": report.swaps,
        "takeovers": report.takeovers,
        "restarts": sum(outcome.restarts.values()),
    }
    if as_json:
        emit_json(summary)
    else:
        console().print("served: " + ", ".join(f"{k} {v}" for k, v in summary.items()))
    return EXIT_OK


def cmd_approvals(
    action: str,
    log_url: str,
    *,
    request_id: str | None,
    approver: str | None,
    reason: str | None,
    expires_in_s: float | None,
    as_json: bool,
    key: str | None = None,
) -> int:
    from ordinance.identity.signing import PrincipalSigner
    from ordinance.processors.approvals import answer, pending_approvals

    err = Console(stderr=True, highlight=False)
    try:
        with open_log(log_url) as log:
            if action == "list":
                pending = pending_approvals(log)
                if as_json:
                    emit_json(
                        [
                            {
                                k: d[k]
                                for k in (
                                    "request_id",
                                    "agent_id",
                                    "tool",
                                    "args",
                                    "rule_ids",
                                    "reasons",
                                    "approval_ticket",
                                    "evaluated_at",
                                )
                            }
                            for d in pending
                        ]
                    )
                    return EXIT_OK
                out = console()
                for d in pending:
                    out.print(
                        f"{d['request_id']}  {d['agent_id']}  {d['tool']}  {d['args']}  — {'; '.join(d['reasons'])}",
                        markup=False,
                    )
                out.print(f"{len(pending)} request(s) waiting for approval")
                return EXIT_OK
            assert request_id is not None
            who = default_actor(approver)
            signer = (
                PrincipalSigner.from_file(who, Path(key)) if key else PrincipalSigner.from_env(who)
            )
            datum = answer(
                log,
                request_id,
                approve=action == "approve",
                approver=who,
                reason=reason,
                expires_in_s=expires_in_s,
                signer=signer,
            )
    except OrdinanceError as exc:
        err.print(f"[red]{exc}[/]")
        return EXIT_FAILED
    if as_json:
        emit_json(datum)
    else:
        console().print(
            f"{datum['verdict']} {request_id} (ticket {datum['ticket'][:19]}…); the enforcer answers with a follow-up decision"
        )
    return EXIT_OK
