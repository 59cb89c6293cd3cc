"""``ordinance demo``: the example policies checked and tested, published to the log, and
enforced by the real pipeline (controller + enforcer) for a fleet of simulated agents —
routine work and attacks — with a hot swap to a stricter bundle half-way.

On the embedded default the log lives in a temporary directory; ``--log URL`` runs against
a log you name and leaves it there (for audit and replay); ``--kafka`` starts a local
Kafka-protocol broker and runs the same through it.
"""

from __future__ import annotations

import tempfile
from collections import Counter
from pathlib import Path
from typing import Any

from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn
from rich.table import Table

from ordinance.commands.demo_pipeline import (
    ATTACKS,
    IMPERSONATIONS,
    SWAP_COUNTRY,
    PipelineRun,
    run_pipeline,
)
from ordinance.commands.output import (
    EXIT_FAILED,
    EXIT_OK,
    EXIT_TESTS,
    EXIT_USAGE,
    console,
    emit_json,
    report_policy_errors,
)
from ordinance.commands.policy_cmds import summary
from ordinance.errors import OrdinanceError
from ordinance.policy.bundle import compile_bundle, read_bundle_dir
from ordinance.policy.decision import Effect
from ordinance.policy.errors import PolicyErrors
from ordinance.policy.testing import run_tests

INTENTS_PER_PHASE = 120
IMPERSONATION_LABELS = frozenset(label for label, _, _ in IMPERSONATIONS)


def default_policies() -> Path:
    return Path(__file__).resolve().parents[2] / "examples" / "policies"


def _report(run: PipelineRun) -> dict[str, Any]:
    phases: dict[str, Any] = {}
    for phase in ("before", "after"):
        rows = [o for o in run.outcomes if o.phase == phase]
        swap_country = [o.effect for o in rows if o.country == SWAP_COUNTRY and not o.attack]
        phases[phase] = {
            "decisions": len(rows),
            "effects": dict(Counter(o.effect for o in rows)),
            "bundles": sorted({o.bundle_id for o in rows}),
            "attacks": sum(o.attack for o in rows),
            "attacks_denied": sum(o.attack and o.effect == Effect.DENY for o in rows),
            f"transfers_to_{SWAP_COUNTRY}": dict(Counter(swap_country)),
        }
    return {
        "log": run.url,
        "old_bundle": run.old_bundle,
        "new_bundle": run.new_bundle,
        "swap_offsets": {str(p): o for p, o in sorted(run.swap_offsets.items())},
        "latency_ms": {"p50": round(run.latency(0.5), 2), "p99": round(run.latency(0.99), 2)},
        "client_side_denies": sum(
            o.code.startswith("client") or o.code == "transport_error" for o in run.outcomes
        ),
        "phases": phases,
        "enforcer": run.enforcer,
        "audit": run.audit,
        "identity": {
            "trust_file": str(run.trust_file) if run.trust_file is not None else None,
            "impersonations": [
                {"label": o.label, "phase": o.phase, "effect": o.effect, "code": o.code}
                for o in run.outcomes
                if o.label in IMPERSONATION_LABELS
            ],
        },
    }


def _execute(
    files: dict[str, str],
    log_url: str | None,
    kafka: bool,
    tmp: Path,
    keys_dir: Path,
    err: Console,
    quiet: bool,
) -> PipelineRun:
    total = 2 * (INTENTS_PER_PHASE + len(ATTACKS) + len(IMPERSONATIONS))
    with Progress(
        TextColumn("agents deciding"),
        BarColumn(),
        MofNCompleteColumn(),
        TimeElapsedColumn(),
        console=err,
        disable=quiet,
        transient=True,
    ) as bar:
        task = bar.add_task("decide", total=total)

        def tick() -> None:
            bar.advance(task)

        def note(message: str) -> None:
            if not quiet:
                # One line per message, never broken before a long id (copy-pasteable).
                err.print(f"[dim]{message}[/]", soft_wrap=True)

        if kafka:
            from ordinance.streams.kafka_broker import start_broker

            note("starting a local Kafka-protocol broker ...")
            with start_broker() as broker:
                note(f"broker up at {broker.bootstrap}")
                return run_pipeline(
                    files,
                    broker.url,
                    intents_per_phase=INTENTS_PER_PHASE,
                    tick=tick,
                    progress=note,
                    keys_dir=tmp,  # the broker and its log go when the demo ends
                )
        url = log_url or f"sqlite:///{tmp / 'ordinance.db'}"
        return run_pipeline(
            files,
            url,
            intents_per_phase=INTENTS_PER_PHASE,
            tick=tick,
            progress=note,
            keys_dir=keys_dir,
        )


def keys_dir_for(log_url: str | None, tmp: Path) -> Path:
    """Where the demo keeps the checkpoint signing key and its keyring: beside a log it
    leaves behind (so ``audit verify --keyring`` works on it afterwards), else in the
    temporary directory that goes with the temporary log."""
    if log_url is None:
        return tmp
    if log_url.startswith("sqlite:///"):
        database = Path(log_url.removeprefix("sqlite://").split("?", 1)[0][1:])
        return database.with_name(database.name + ".keys")
    return Path("ordinance-demo-keys")  # a broker's log has no file to sit beside


def cmd_demo(
    policies: str | None, as_json: bool, log_url: str | None = None, kafka: bool = False
) -> int:
    directory = Path(policies) if policies else default_policies()
    out = console()
    err = Console(stderr=True, highlight=False)
    if not directory.is_dir():
        err.print(f"[red]no policy directory at {directory}[/]; pass --policies DIR")
        return EXIT_USAGE
    try:
        files = read_bundle_dir(directory)
        ruleset = compile_bundle(files)
    except PolicyErrors as exc:
        return report_policy_errors(exc, as_json)
    tests = run_tests(ruleset)
    failed = [t for t in tests if not t.passed]
    if failed:
        err.print(f"[red]{len(failed)} policy test(s) fail; run `ordinance test {directory}`[/]")
        return EXIT_TESTS
    with tempfile.TemporaryDirectory(prefix="ordinance-demo-") as tmp:
        try:
            keys_dir = keys_dir_for(log_url, Path(tmp))
            run = _execute(files, log_url, kafka, Path(tmp), keys_dir, err, quiet=as_json)
        except (OrdinanceError, TimeoutError) as exc:
            err.print(f"[red]the pipeline did not run:[/] {exc}")
            return EXIT_FAILED
    report = _report(run)
    left_behind = log_url is not None and not kafka
    keyring = keys_dir / "keyring.json" if left_behind else None
    report["keyring"] = str(keyring) if keyring is not None else None
    attacks_ok = all(p["attacks"] == p["attacks_denied"] for p in report["phases"].values())
    audit = report["audit"]
    audit_ok = not audit["findings"] and not audit["proof_problems"]
    healthy = attacks_ok and report["client_side_denies"] == 0 and audit_ok
    if as_json:
        emit_json({**summary(ruleset), "tests": {"passed": len(tests), "failed": 0}, **report})
        return EXIT_OK if healthy else EXIT_FAILED
    info = summary(ruleset)
    out.print(f"[bold]Ordinance demo[/] — policies in {directory}")
    out.print(
        f"check: [green]ok[/] {len(info['policies'])} policies, {info['rules']} rules; test: [green]{len(tests)} passed[/]"
    )
    where = run.url if (log_url or kafka) else f"{run.url} (temporary)"
    out.print(f"log:   {where}")
    table = Table(title="a fleet of simulated agents, decided by the pipeline")
    for column in (
        "phase",
        "bundle",
        "decisions",
        Effect.ALLOW,
        Effect.REQUIRE_APPROVAL,
        Effect.DENY,
        "attacks denied",
        f"transfers to {SWAP_COUNTRY}",
    ):
        table.add_column(column)
    for phase, label in (("before", "before the swap"), ("after", "after the swap")):
        p = report["phases"][phase]
        bundle = run.old_bundle if phase == "before" else run.new_bundle
        effects = p["effects"]
        swap = (
            ", ".join(f"{k} {v}" for k, v in sorted(p[f"transfers_to_{SWAP_COUNTRY}"].items()))
            or "-"
        )
        table.add_row(
            label,
            bundle[7:19] + "…",
            str(p["decisions"]),
            str(effects.get(Effect.ALLOW, 0)),
            str(effects.get(Effect.REQUIRE_APPROVAL, 0)),
            str(effects.get(Effect.DENY, 0)),
            f"{p['attacks_denied']}/{p['attacks']}",
            swap,
        )
    out.print(table)
    swaps = ", ".join(f"partition {p} @ {o}" for p, o in sorted(run.swap_offsets.items()))
    out.print(f"hot swap to {run.new_bundle[:23]}… recorded on agent.decisions at {swaps}")
    out.print(
        f"decide round trip (agent → log → enforcer → log → agent): p50 {report['latency_ms']['p50']} ms, "
        f"p99 {report['latency_ms']['p99']} ms"
    )
    verdict = (
        "[green]every attack was denied[/]" if attacks_ok else "[red]an attack was not denied[/]"
    )
    out.print(
        verdict
        + (
            ""
            if report["client_side_denies"] == 0
            else f"; [red]{report['client_side_denies']} requests got no answer[/]"
        )
    )
    denied = sorted(
        {
            f"{i['label']} ({i['code']})"
            for i in report["identity"]["impersonations"]
            if i["effect"] == Effect.DENY
        }
    )
    out.print(
        "identity enforced: every agent and the publisher sign with registry keys; "
        f"impersonation denied: {'; '.join(denied)}",
        markup=False,
    )
    out.print(
        f"audit: {audit['records']} chained records verified against {audit['checkpoints']} signed "
        + (
            f"checkpoints, [green]no findings[/]; the inclusion proof of {audit['proved_request']} checks"
            if audit_ok
            else f"checkpoints: [red]{audit['findings'] + audit['proof_problems']}[/]"
        )
    )
    if keyring is not None:
        out.print(
            f"keyring: {keyring} — verify later with "
            f"`ordinance audit verify --log {run.url} --keyring {keyring}`",
            markup=False,
        )
    trust_file = report["identity"]["trust_file"]
    if left_behind and trust_file is not None:
        out.print(
            f"identities: agent keys and the trust file in {Path(trust_file).parent} — go on with "
            f"`ordinance serve --log {run.url} --trust {trust_file} --controller-key "
            f"{Path(trust_file).parent / 'demo-controller.pem'} --controller-id demo-controller`",
            markup=False,
        )
    out.print(
        "Next: `ordinance eval examples/policies --request examples/requests/transfer-allowed.json` "
        "(and the other requests there), or `ordinance serve --log URL` with your agents.",
        markup=False,
    )
    return EXIT_OK if healthy else EXIT_FAILED
