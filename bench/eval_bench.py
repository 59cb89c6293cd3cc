#!/usr/bin/env python3
"""Evaluation latency: Ordinance vs a hand-written floor vs cedarpy vs regopy, same run.

    python bench/eval_bench.py            # full run (about 90 s), markdown table
    python bench/eval_bench.py --quick    # CI smoke, well under 20 s
    python bench/eval_bench.py --json     # the same results as JSON

One rule table (:func:`build_spec`) is written out four ways: Ordinance policy YAML files
(loaded with ``load_ruleset`` from a temp directory), plain Python functions indexed by
tool (the floor), Cedar policies and a Rego package. Every engine decides every benchmark
request before anything is timed, and must agree with Ordinance on all of them.

Timings: each call is timed on its own with ``time.perf_counter_ns`` (the timer's own
cost, measured at start-up, is subtracted), after a warm-up; p50/p99 are medians over
several repeats. Throughput comes from a separate loop with no per-call timers. See
``bench/README.md`` for how the semantics are mapped onto Cedar and Rego.
"""

from __future__ import annotations

import argparse
import gc
import json
import os
import platform
import random
import statistics
import sys
import tempfile
import time
from collections import Counter
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, field
from importlib.metadata import PackageNotFoundError, version
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:  # `python bench/eval_bench.py` without an installed package
    sys.path.insert(0, str(ROOT))

from ordinance.policy.loader import load_ruleset  # noqa: E402
from ordinance.policy.ruleset import Ruleset  # noqa: E402

Request = dict[str, Any]
Decide = Callable[[Request], str]

EFFECTS = ("allow", "deny", "require_approval")
TARGET_P50_SMALL_US = 3.0
TARGET_P50_LARGE_US = 6.0
TARGET_CEDAR_RATIO = 20.0

# -- the rule table ----------------------------------------------------------------------
#
# An atom is one comparison; a rule holds when all of its atoms hold and the agent has one
# of its policy's roles. Every atom kind has an exact counterpart in CEL, Cedar, Rego and
# Python, which is what lets four engines evaluate "the same semantics".


@dataclass(frozen=True, slots=True)
class Atom:
    op: str  # in | not_in | eq | lt | le | gt | ge | prefix
    ref: str  # "args.NAME" | "agent.team" | "context.business_hours"
    value: Any


@dataclass(frozen=True, slots=True)
class BenchRule:
    id: str
    effect: str
    atoms: tuple[Atom, ...]


@dataclass(frozen=True, slots=True)
class BenchPolicy:
    tool: str
    shape: str
    roles: tuple[str, ...]
    rules: tuple[BenchRule, ...]


@dataclass(frozen=True, slots=True)
class Spec:
    name: str
    tools: dict[str, str]  # tool name -> argument shape
    policies: tuple[BenchPolicy, ...]

    @property
    def rule_count(self) -> int:
        return sum(len(p.rules) for p in self.policies)


ARGS: dict[str, dict[str, str]] = {
    "money": {"amount": "int", "currency": "string", "country": "string"},
    "file": {"path": "path", "bytes": "int"},
    "infra": {"service": "string", "environment": "string", "replicas": "int"},
    "comms": {"recipients": "int", "domain": "domain", "attachments": "int"},
}
ROLES = {
    "money": ("billing", "finance"),
    "file": ("analyst", "ops"),
    "infra": ("ops", "sre"),
    "comms": ("sales", "support"),
}
CATEGORIES = {
    "payments": "money",
    "billing": "money",
    "crm": "money",
    "fs": "file",
    "storage": "file",
    "backup": "file",
    "infra": "infra",
    "db": "infra",
    "email": "comms",
    "chat": "comms",
}
VERBS = (
    "transfer",
    "refund",
    "create",
    "update",
    "delete",
    "read",
    "write",
    "export",
    "run",
    "sync",
)


def _a(op: str, ref: str, value: Any) -> Atom:
    return Atom(op, ref, value)


def _r(rule_id: str, effect: str, *atoms: Atom) -> BenchRule:
    return BenchRule(rule_id, effect, atoms)


def money_rules(k: int) -> list[BenchRule]:
    t = 5000 + 500 * (k % 10)
    return [
        _r("block-sanctioned", "deny", _a("in", "args.country", ("CU", "IR", "KP", "SY"))),
        _r("currency-allowlist", "deny", _a("not_in", "args.currency", ("EUR", "GBP", "USD"))),
        _r("large-needs-approval", "require_approval", _a("gt", "args.amount", t)),
        _r("small-ok", "allow", _a("gt", "args.amount", 0), _a("le", "args.amount", t)),
        _r("hard-limit", "deny", _a("gt", "args.amount", 20 * t)),
        _r("risky-country", "require_approval", _a("in", "args.country", ("BY", "RU", "VE"))),
        _r("no-interns", "deny", _a("eq", "agent.team", "interns")),
        _r(
            "after-hours",
            "require_approval",
            _a("eq", "context.business_hours", False),
            _a("gt", "args.amount", t // 10),
        ),
        _r(
            "eur-fast-path",
            "allow",
            _a("eq", "args.currency", "EUR"),
            _a("le", "args.amount", t // 2),
        ),
        _r("negative", "deny", _a("lt", "args.amount", 0)),
    ]


def file_rules(k: int) -> list[BenchRule]:
    b = 1_000_000 * (1 + k % 5)
    return [
        _r("no-etc", "deny", _a("prefix", "args.path", "/etc/")),
        _r("no-root", "deny", _a("prefix", "args.path", "/root/")),
        _r("big-needs-approval", "require_approval", _a("gt", "args.bytes", b)),
        _r(
            "data-ok",
            "allow",
            _a("prefix", "args.path", "/srv/data/"),
            _a("le", "args.bytes", b),
        ),
        _r("tmp-ok", "allow", _a("prefix", "args.path", "/tmp/")),
        _r("no-secrets", "deny", _a("prefix", "args.path", "/srv/data/secrets/")),
        _r("home-needs-approval", "require_approval", _a("prefix", "args.path", "/home/")),
        _r(
            "interns-off-srv",
            "deny",
            _a("eq", "agent.team", "interns"),
            _a("prefix", "args.path", "/srv/"),
        ),
        _r("huge", "deny", _a("gt", "args.bytes", 100 * b)),
        _r(
            "srv-after-hours",
            "require_approval",
            _a("eq", "context.business_hours", False),
            _a("prefix", "args.path", "/srv/"),
        ),
    ]


def infra_rules(k: int) -> list[BenchRule]:
    r = 10 + 2 * (k % 10)
    return [
        _r(
            "prod-freeze-after-hours",
            "deny",
            _a("eq", "args.environment", "prod"),
            _a("eq", "context.business_hours", False),
        ),
        _r("prod-needs-approval", "require_approval", _a("eq", "args.environment", "prod")),
        _r("non-prod-ok", "allow", _a("in", "args.environment", ("dev", "staging"))),
        _r("replica-cap", "deny", _a("gt", "args.replicas", r)),
        _r("big-scale-approval", "require_approval", _a("gt", "args.replicas", r // 2)),
        _r("protected-services", "deny", _a("in", "args.service", ("auth", "vault"))),
        _r(
            "small-prod-ok",
            "allow",
            _a("eq", "args.environment", "prod"),
            _a("le", "args.replicas", 3),
        ),
        _r(
            "interns-not-prod",
            "deny",
            _a("eq", "agent.team", "interns"),
            _a("eq", "args.environment", "prod"),
        ),
        _r("negative-replicas", "deny", _a("lt", "args.replicas", 0)),
        _r(
            "money-services-approval",
            "require_approval",
            _a("in", "args.service", ("ledger", "payments-api")),
        ),
    ]


def comms_rules(k: int) -> list[BenchRule]:
    n = 5 + k % 10
    return [
        _r(
            "no-attachments-to-webmail",
            "deny",
            _a("in", "args.domain", ("gmail.com", "mail.ru", "proton.me")),
            _a("gt", "args.attachments", 0),
        ),
        _r("many-recipients-approval", "require_approval", _a("gt", "args.recipients", n)),
        _r("internal-ok", "allow", _a("eq", "args.domain", "corp.example")),
        _r(
            "small-plain-ok",
            "allow",
            _a("le", "args.recipients", n),
            _a("eq", "args.attachments", 0),
        ),
        _r("mass-mail", "deny", _a("gt", "args.recipients", 10 * n)),
        _r("attachments-approval", "require_approval", _a("gt", "args.attachments", 3)),
        _r(
            "interns-one-recipient",
            "deny",
            _a("eq", "agent.team", "interns"),
            _a("gt", "args.recipients", 1),
        ),
        _r("after-hours", "require_approval", _a("eq", "context.business_hours", False)),
        _r("no-competitors", "deny", _a("in", "args.domain", ("competitor.example",))),
        _r(
            "single-plain-ok",
            "allow",
            _a("eq", "args.attachments", 0),
            _a("eq", "args.recipients", 1),
        ),
    ]


TEMPLATES: dict[str, Callable[[int], list[BenchRule]]] = {
    "money": money_rules,
    "file": file_rules,
    "infra": infra_rules,
    "comms": comms_rules,
}


def _policy(tool: str, shape: str, k: int, count: int) -> BenchPolicy:
    return BenchPolicy(tool, shape, ROLES[shape], tuple(TEMPLATES[shape](k)[:count]))


def build_spec(name: str) -> Spec:
    """``small``: 10 rules over 3 tools. ``large``: 100 tools x 10 rules = 1000 rules."""
    if name == "small":
        picks = [
            ("payments.transfer", "money", 4),
            ("fs.read", "file", 3),
            ("infra.deploy", "infra", 3),
        ]
        tools = {tool: shape for tool, shape, _ in picks}
        policies = tuple(_policy(t, s, 0, n) for t, s, n in picks)
        return Spec(name, tools, policies)
    if name == "large":
        tools = {f"{cat}.{verb}": shape for cat, shape in CATEGORIES.items() for verb in VERBS}
        policies = tuple(_policy(t, s, k, 10) for k, (t, s) in enumerate(sorted(tools.items())))
        return Spec(name, tools, policies)
    raise ValueError(f"unknown policy set {name!r}")


# -- requests ----------------------------------------------------------------------------

ARG_VALUES: dict[str, dict[str, Sequence[Any]]] = {
    "money": {
        "amount": (-10, 0, 25, 400, 2500, 4999, 6000, 9000, 12000, 50000, 200000),
        "currency": ("EUR", "EUR", "USD", "USD", "GBP", "JPY"),
        "country": ("DE", "FR", "US", "GB", "DE", "KP", "RU", "IR"),
    },
    "file": {
        "path": (
            "/etc/passwd",
            "/root/.ssh/id_rsa",
            "/srv/data/report.csv",
            "/srv/data/q3/summary.parquet",
            "/srv/data/secrets/db.key",
            "/tmp/scratch.txt",
            "/home/alice/notes.md",
            "/var/log/syslog",
            "/srv/app/config.yaml",
        ),
        "bytes": (10, 4096, 500_000, 2_000_000, 50_000_000, 900_000_000),
    },
    "infra": {
        "service": ("web", "search", "web", "auth", "ledger", "vault", "payments-api"),
        "environment": ("dev", "staging", "prod", "prod"),
        "replicas": (-1, 1, 3, 4, 8, 14, 40),
    },
    "comms": {
        "recipients": (1, 1, 2, 4, 9, 30, 200),
        "domain": (
            "corp.example",
            "partner.example",
            "gmail.com",
            "competitor.example",
            "proton.me",
        ),
        "attachments": (0, 0, 0, 1, 5),
    },
}
TEAMS = ("finance", "platform", "support", "data", "interns")
UNKNOWN_TOOL = "shell.exec"


def _spelling(tool: str, rng: random.Random) -> str:
    """Tool names as agents send them: mostly canonical, sometimes in other cases."""
    roll = rng.random()
    if roll < 0.08:
        return tool.upper()
    if roll < 0.16:
        return ".".join(part.capitalize() for part in tool.split("."))
    return tool


def make_requests(spec: Spec, count: int, seed: int = 7) -> list[Request]:
    rng = random.Random(f"{spec.name}:{seed}")
    tools = sorted(spec.tools)
    out: list[Request] = []
    for n in range(count):
        if rng.random() < 0.03:
            tool, shape = UNKNOWN_TOOL, "file"
        else:
            tool = rng.choice(tools)
            shape = spec.tools[tool]
        args = {name: rng.choice(values) for name, values in ARG_VALUES[shape].items()}
        roles = [rng.choice(ROLES[shape])] if rng.random() < 0.85 else ["viewer"]
        if rng.random() < 0.3:
            roles.append("oncall")
        out.append(
            {
                "agent": {"id": f"agent-{n % 17}", "roles": roles, "team": rng.choice(TEAMS)},
                "action": {"tool": _spelling(tool, rng), "args": args},
                "context": {"business_hours": rng.random() < 0.75},
            }
        )
    return out


# -- Ordinance: YAML policy files ----------------------------------------------------------


def _cel_ref(ref: str) -> str:
    root, name = ref.split(".")
    return ("action.args." if root == "args" else f"{root}.") + name


def _cel_value(value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    return json.dumps(value)


def cel_atom(atom: Atom) -> str:
    ref = _cel_ref(atom.ref)
    if atom.op in ("in", "not_in"):
        test = f"{ref} in [{', '.join(_cel_value(v) for v in atom.value)}]"
        return test if atom.op == "in" else f"!({test})"
    if atom.op == "prefix":
        return f"{ref}.startsWith({_cel_value(atom.value)})"
    op = {"eq": "==", "lt": "<", "le": "<=", "gt": ">", "ge": ">="}[atom.op]
    return f"{ref} {op} {_cel_value(atom.value)}"


def schema_yaml(spec: Spec) -> str:
    lines = ["agent:", "  team: string", "tools:"]
    for tool, shape in sorted(spec.tools.items()):
        args = ", ".join(f"{k}: {v}" for k, v in ARGS[shape].items())
        lines += [f"  {tool}:", f"    description: generated {shape} tool", f"    args: {{{args}}}"]
    lines += [
        "context:",
        "  business_hours: bool",
        "settings:",
        "  default_effect: deny",
        "  combining: deny-overrides",
    ]
    return "\n".join(lines) + "\n"


def policy_yaml(policy: BenchPolicy) -> str:
    lines = [
        f"policy: {policy.tool}",
        "owner: bench",
        f"description: generated {policy.shape} rules for {policy.tool}",
        "impact: medium",
        "target:",
        f"  agents: {{roles: [{', '.join(policy.roles)}]}}",
        f"  actions: [{policy.tool}]",
        "rules:",
    ]
    for rule in policy.rules:
        when = " && ".join(cel_atom(a) for a in rule.atoms)
        lines += [
            f"  - id: {rule.id}",
            f"    effect: {rule.effect}",
            f"    when: {json.dumps(when)}",
            f"    reason: {rule.id}",
        ]
    return "\n".join(lines) + "\n"


def write_policy_dir(spec: Spec, directory: Path) -> None:
    (directory / "schema.yaml").write_text(schema_yaml(spec), encoding="utf-8")
    for policy in spec.policies:
        (directory / f"{policy.tool}.yaml").write_text(policy_yaml(policy), encoding="utf-8")


def ordinance_ruleset(spec: Spec) -> Ruleset:
    with tempfile.TemporaryDirectory(prefix=f"ordinance-bench-{spec.name}-") as tmp:
        write_policy_dir(spec, Path(tmp))
        return load_ruleset(Path(tmp))


# -- the floor: plain Python, one function per tool ------------------------------------------


def _py_ref(ref: str) -> str:
    root, name = ref.split(".")
    var = {"args": "x", "agent": "a", "context": "c"}[root]
    return f"{var}[{name!r}]"


def _py_atom(atom: Atom, consts: dict[str, Any]) -> str:
    ref = _py_ref(atom.ref)
    if atom.op in ("in", "not_in"):
        name = f"_k{len(consts)}"
        consts[name] = frozenset(atom.value)
        return f"{ref} {'in' if atom.op == 'in' else 'not in'} {name}"
    if atom.op == "prefix":
        return f"{ref}.startswith({atom.value!r})"
    op = {"eq": "==", "lt": "<", "le": "<=", "gt": ">", "ge": ">="}[atom.op]
    return f"{ref} {op} {atom.value!r}"


def floor_source(policies: Sequence[BenchPolicy], fn: str, consts: dict[str, Any]) -> str:
    """What a programmer would write by hand for one tool: denies, then approvals, then
    allows, each behind its policy's role check; no validation or canonicalisation."""
    lines = [f"def {fn}(a, x, c):", "    roles = a.get('roles', ())"]
    for n, policy in enumerate(policies):
        name = f"_k{len(consts)}"
        consts[name] = frozenset(policy.roles)
        lines.append(f"    g{n} = not {name}.isdisjoint(roles)")
    for effect in ("deny", "require_approval", "allow"):
        for n, policy in enumerate(policies):
            for rule in policy.rules:
                if rule.effect == effect:
                    cond = " and ".join(_py_atom(a, consts) for a in rule.atoms)
                    lines += [f"    if g{n} and {cond}:", f"        return {effect!r}"]
    lines.append("    return 'deny'")
    return "\n".join(lines) + "\n"


def make_floor(spec: Spec) -> Decide:
    consts: dict[str, Any] = {}
    namespace: dict[str, Any] = {}
    table: dict[str, Callable[[Any, Any, Any], str]] = {}
    for n, tool in enumerate(sorted(spec.tools)):
        source = floor_source([p for p in spec.policies if p.tool == tool], f"_t{n}", consts)
        namespace.update(consts)
        exec(compile(source, f"<floor {tool}>", "exec"), namespace)
        table[tool] = namespace[f"_t{n}"]

    def floor(request: Request) -> str:
        try:
            action = request["action"]
            fn = table.get(action["tool"].lower())
            if fn is None:
                return "deny"
            return fn(request["agent"], action["args"], request["context"])
        except Exception:  # fail closed, like the engine
            return "deny"

    return floor


# -- Cedar ---------------------------------------------------------------------------------


def _cedar_value(value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    return json.dumps(value)


def cedar_atom(atom: Atom) -> str:
    root, name = atom.ref.split(".")
    ref = f"context.{name}" if root == "context" else f"context.{root}.{name}"
    if atom.op in ("in", "not_in"):
        test = f"[{', '.join(_cedar_value(v) for v in atom.value)}].contains({ref})"
        return test if atom.op == "in" else f"!({test})"
    if atom.op == "prefix":
        assert not any(ch in atom.value for ch in '*"\\'), atom.value
        return f'{ref} like "{atom.value}*"'
    op = {"eq": "==", "lt": "<", "le": "<=", "gt": ">", "ge": ">="}[atom.op]
    return f"{ref} {op} {_cedar_value(atom.value)}"


def cedar_policies(spec: Spec, tool: str | None = None) -> str:
    """deny -> forbid; require_approval and allow -> permit, told apart by ``@effect``.
    ``tool``: only the policies of that tool (for the per-tool policy sets)."""
    out = []
    for policy in spec.policies:
        if tool is not None and policy.tool != tool:
            continue
        roles = ", ".join(json.dumps(r) for r in policy.roles)
        for rule in policy.rules:
            head = "forbid" if rule.effect == "deny" else "permit"
            conds = [f"context.agent.roles.containsAny([{roles}])"]
            conds += [cedar_atom(a) for a in rule.atoms]
            out.append(
                f'@id("{policy.tool}/{rule.id}")\n'
                f'@effect("{rule.effect}")\n'
                f'{head}(principal, action == Action::"{policy.tool}", resource)\n'
                f"when {{ {' && '.join(conds)} }};\n"
            )
    return "\n".join(out)


def cedar_request(request: Request) -> dict[str, Any]:
    """The enforcer's translation of an agent request: Cedar ids are case-sensitive, so the
    tool name is lower-cased; agent attributes travel in the context (no entity store)."""
    agent = request["agent"]
    action = request["action"]
    tool = action["tool"].lower()
    return {
        "principal": {"type": "Agent", "id": agent["id"]},
        "action": {"type": "Action", "id": tool},
        "resource": {"type": "Tool", "id": tool},
        "context": {
            "agent": {"roles": agent.get("roles", []), "team": agent["team"]},
            "args": action["args"],
            "business_hours": request["context"]["business_hours"],
        },
    }


def make_cedar(
    spec: Spec, per_tool: bool = False
) -> tuple[Decide, Callable[[list[Request]], list[str]] | None]:
    """One Cedar policy set for everything (plus its batch form), or (``per_tool``) one set
    per tool picked by the enforcer before the call: indexing Cedar does not do itself."""
    import cedarpy

    entities = cedarpy.Entities.from_json_str("[]")
    approval = frozenset(
        f"{p.tool}/{r.id}" for p in spec.policies for r in p.rules if r.effect == "require_approval"
    )
    allow = cedarpy.Decision.Allow

    def effect_of(result: Any) -> str:
        diagnostics = result.diagnostics
        if result.decision is not allow or diagnostics.errors:
            return "deny"  # forbid, no permit, or an evaluation error (Ordinance: deny)
        names = diagnostics.id_annotations_by_reason
        if any(names.get(p) in approval for p in diagnostics.reasons):
            return "require_approval"
        return "allow"

    if per_tool:
        by_tool = {t: cedarpy.PolicySet.from_str(cedar_policies(spec, t)) for t in spec.tools}

        def decide_per_tool(request: Request) -> str:
            try:
                cedar = cedar_request(request)
                policy_set = by_tool.get(cedar["action"]["id"])
                if policy_set is None:
                    return "deny"  # a tool no policy governs
                result = cedarpy.is_authorized(cedar, policy_set, entities)
            except Exception:
                return "deny"
            return effect_of(result)

        return decide_per_tool, None

    whole = cedarpy.PolicySet.from_str(cedar_policies(spec))

    def decide(request: Request) -> str:
        try:
            result = cedarpy.is_authorized(cedar_request(request), whole, entities)
        except Exception:
            return "deny"
        return effect_of(result)

    def decide_batch(requests: list[Request]) -> list[str]:
        results = cedarpy.is_authorized_batch([cedar_request(r) for r in requests], whole, entities)
        return [effect_of(r) for r in results]

    return decide, decide_batch


# -- Rego ----------------------------------------------------------------------------------

REGO_PACKAGE = "ordinance_bench"
REGO_ENTRYPOINT = f"{REGO_PACKAGE}/decision"


def _rego_value(value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    return json.dumps(value)


def rego_atom(atom: Atom) -> str:
    ref = f"input.{atom.ref}"
    if atom.op in ("in", "not_in"):
        test = f"{ref} in {{{', '.join(_rego_value(v) for v in atom.value)}}}"
        return test if atom.op == "in" else f"not {test}"
    if atom.op == "prefix":
        return f"startswith({ref}, {_rego_value(atom.value)})"
    op = {"eq": "==", "lt": "<", "le": "<=", "gt": ">", "ge": ">="}[atom.op]
    return f"{ref} {op} {_rego_value(atom.value)}"


def rego_module(spec: Spec, package: str = REGO_PACKAGE, tool: str | None = None) -> str:
    sets = {"deny": "deny", "require_approval": "approval", "allow": "allow"}
    lines = [f"package {package}", "", "import rego.v1", ""]
    for policy in spec.policies:
        if tool is not None and policy.tool != tool:
            continue
        roles = ", ".join(json.dumps(r) for r in policy.roles)
        for rule in policy.rules:
            lines.append(f'{sets[rule.effect]} contains "{policy.tool}/{rule.id}" if {{')
            lines.append(f"    input.tool == {json.dumps(policy.tool)}")
            lines.append("    some role in input.agent.roles")
            lines.append(f"    role in {{{roles}}}")
            lines += [f"    {rego_atom(a)}" for a in rule.atoms]
            lines += ["}", ""]
    lines += [
        "# deny > require_approval > allow; nothing applies -> default deny",
        'default decision := "deny"',
        "",
        'decision := "deny" if {',
        "    count(deny) > 0",
        '} else := "require_approval" if {',
        "    count(approval) > 0",
        '} else := "allow" if {',
        "    count(allow) > 0",
        "}",
    ]
    return "\n".join(lines) + "\n"


def rego_input(request: Request) -> dict[str, Any]:
    agent = request["agent"]
    action = request["action"]
    return {
        "tool": action["tool"].lower(),
        "agent": {"roles": agent.get("roles", []), "team": agent["team"]},
        "args": action["args"],
        "context": request["context"],
    }


def make_rego(spec: Spec, per_tool: bool = False) -> Decide:
    """One package for everything (entrypoint ``ordinance_bench/decision``), or
    (``per_tool``) one bundle per tool, picked by the enforcer before the query."""
    from regopy import Interpreter

    builders: list[Any] = []  # bundles refer to their builder; keep them alive

    def build(name: str, module: str, entrypoint: str) -> Any:
        builder = Interpreter()
        builder.add_module(name, module)
        bundle = builder.build(None, [entrypoint])
        if not bundle.ok():
            raise RuntimeError(f"the generated Rego module {name} did not compile")
        builders.append(builder)
        return bundle

    by_tool: dict[str, tuple[Any, str]] = {}
    if per_tool:
        for n, tool in enumerate(sorted(spec.tools)):
            entrypoint = f"{REGO_PACKAGE}/t{n}/decision"
            module = rego_module(spec, f"{REGO_PACKAGE}.t{n}", tool)
            by_tool[tool] = (build(f"t{n}.rego", module, entrypoint), entrypoint)
        whole = None
    else:
        whole = build("ordinance_bench.rego", rego_module(spec), REGO_ENTRYPOINT)
    rego = Interpreter()

    def decide(request: Request) -> str:
        try:
            data = rego_input(request)
            if per_tool:
                found = by_tool.get(data["tool"])
                if found is None:
                    return "deny"  # a tool no policy governs
                bundle, entrypoint = found
            else:
                bundle, entrypoint = whole, REGO_ENTRYPOINT
            rego.set_input(data)
            output = rego.query_bundle_entrypoint(bundle, entrypoint)
        except Exception:
            return "deny"
        if not output.ok() or not output.results:
            return "deny"
        effect = output.results[0].expressions[0]
        return effect if effect in EFFECTS else "deny"

    decide.__dict__["_keep"] = builders
    return decide


# -- engines -------------------------------------------------------------------------------


@dataclass
class Engine:
    name: str
    decide: Decide  # raw agent request -> effect; also the timed call unless `timed` is set
    setup_s: float
    batch: Callable[[list[Request]], list[str]] | None = None
    timed: Callable[[Request], Any] | None = None


def build_engines(spec: Spec) -> tuple[Ruleset, list[Engine]]:
    engines: list[Engine] = []
    clock = time.perf_counter

    t = clock()
    ruleset = ordinance_ruleset(spec)
    evaluate = ruleset.evaluate

    def ordinance(request: Request) -> str:
        return evaluate(request).effect

    # timed: `Ruleset.evaluate` itself, returning the full Decision
    engines.append(Engine("ordinance", ordinance, clock() - t, timed=evaluate))
    t = clock()
    engines.append(Engine("python floor", make_floor(spec), clock() - t))
    t = clock()
    cedar, cedar_batch = make_cedar(spec)
    engines.append(Engine("cedarpy", cedar, clock() - t, cedar_batch))
    t = clock()
    cedar_indexed, _ = make_cedar(spec, per_tool=True)
    engines.append(Engine("cedarpy, per-tool sets", cedar_indexed, clock() - t))
    t = clock()
    engines.append(Engine("regopy", make_rego(spec), clock() - t))
    t = clock()
    engines.append(Engine("regopy, per-tool bundles", make_rego(spec, True), clock() - t))
    return ruleset, engines


@dataclass
class Agreement:
    requests: int
    effects: dict[str, int]  # Ordinance's effects over the benchmark requests
    agree: dict[str, int]  # engine -> requests on which it agrees with Ordinance
    mismatches: list[dict[str, Any]] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return all(n == self.requests for n in self.agree.values())


def check_agreement(engines: Sequence[Engine], requests: Sequence[Request]) -> Agreement:
    reference = engines[0]
    expected = [reference.decide(r) for r in requests]
    agreement = Agreement(len(requests), dict(Counter(expected)), {})
    for engine in engines:
        got = [engine.decide(r) for r in requests]
        if engine.batch is not None:
            batch = engine.batch(list(requests))
            got = [a if a == b else f"{a} (batch: {b})" for a, b in zip(got, batch, strict=True)]
        agreement.agree[engine.name] = sum(g == e for g, e in zip(got, expected, strict=True))
        for g, e, r in zip(got, expected, requests, strict=True):
            if g != e and len(agreement.mismatches) < 5:
                agreement.mismatches.append(
                    {"engine": engine.name, "got": g, "ordinance": e, "request": r}
                )
    return agreement


# -- timing --------------------------------------------------------------------------------


@dataclass
class Timing:
    p50_us: float
    p99_us: float | None
    per_second: float
    calls: int  # individually timed calls (or decisions, for a batch)


def timer_overhead_ns() -> int:
    pc = time.perf_counter_ns
    samples = []
    for _ in range(20000):
        t0 = pc()
        t1 = pc()
        samples.append(t1 - t0)
    samples.sort()
    return samples[len(samples) // 2]


def _latencies(
    fn: Callable[[Request], Any], requests: Sequence[Request], budget_ns: int
) -> list[int]:
    pc = time.perf_counter_ns
    samples: list[int] = []
    append = samples.append
    deadline = pc() + budget_ns
    while True:
        for request in requests:
            t0 = pc()
            fn(request)
            t1 = pc()
            append(t1 - t0)
            if t1 >= deadline:
                return samples


def _throughput(
    fn: Callable[[Request], Any], requests: Sequence[Request], budget_ns: int, chunk: int
) -> float:
    pc = time.perf_counter_ns
    chunks = [requests[i : i + chunk] for i in range(0, len(requests), chunk)]
    done = 0
    start = pc()
    deadline = start + budget_ns
    while True:
        for part in chunks:
            for request in part:
                fn(request)
            done += len(part)
            if pc() >= deadline:
                return done / ((pc() - start) / 1e9)


def measure(
    fn: Callable[[Request], Any],
    requests: Sequence[Request],
    budget_s: float,
    repeats: int,
    overhead_ns: int,
) -> Timing:
    budget_ns = int(budget_s * 1e9)
    _latencies(fn, requests, budget_ns // 4)  # warm-up
    p50s: list[float] = []
    p99s: list[float] = []
    rates: list[float] = []
    calls = 0
    for repeat in range(repeats):
        # a slow engine may not get through every request in the budget: start each
        # repeat at a different request so that the repeats together cover the mix
        start = repeat * len(requests) // repeats
        ordered = [*requests[start:], *requests[:start]]
        gc.collect()
        samples = _latencies(fn, ordered, budget_ns)
        calls += len(samples)
        samples.sort()
        p50s.append(max(samples[len(samples) // 2] - overhead_ns, 0) / 1000)
        p99s.append(
            max(samples[min(len(samples) - 1, int(len(samples) * 0.99))] - overhead_ns, 0) / 1000
        )
        # chunk so that the deadline is checked every ~5 ms whatever the engine's speed
        chunk = max(1, min(len(requests), int(5000 / max(p50s[-1], 0.05))))
        gc.collect()
        rates.append(_throughput(fn, ordered, budget_ns, chunk))
    return Timing(statistics.median(p50s), statistics.median(p99s), statistics.median(rates), calls)


def measure_batch(
    fn: Callable[[list[Request]], list[str]],
    requests: Sequence[Request],
    budget_s: float,
    repeats: int,
) -> Timing:
    """Amortised cost per decision of one batch call over all the requests."""
    batch = list(requests)
    fn(batch)  # warm-up
    per_decision: list[float] = []
    calls = 0
    pc = time.perf_counter_ns
    for _ in range(repeats):
        gc.collect()
        times: list[int] = []
        deadline = pc() + int(budget_s * 1e9)
        while True:
            t0 = pc()
            fn(batch)
            t1 = pc()
            times.append(t1 - t0)
            calls += len(batch)
            if t1 >= deadline:
                break
        per_decision.append(statistics.median(times) / len(batch) / 1000)
    p50 = statistics.median(per_decision)
    return Timing(p50, None, 1e6 / p50, calls)


# -- the run -------------------------------------------------------------------------------


@dataclass
class Row:
    set: str
    rules: int
    engine: str
    p50_us: float
    p99_us: float | None
    per_second: float
    ratio: float  # p50 / Ordinance p50
    calls: int
    setup_s: float | None


@dataclass
class Report:
    quick: bool
    environment: dict[str, Any]
    agreement: dict[str, Agreement]
    rows: list[Row] = field(default_factory=list)
    targets: list[dict[str, Any]] = field(default_factory=list)


def environment() -> dict[str, Any]:
    def pkg(name: str) -> str:
        try:
            return version(name)
        except PackageNotFoundError:
            return "not installed"

    return {
        "python": platform.python_version(),
        "implementation": platform.python_implementation(),
        "machine": platform.machine(),
        "cpus": os.cpu_count(),
        "loadavg_at_start": [round(x, 2) for x in os.getloadavg()],
        "cedarpy": pkg("cedarpy"),
        "regopy": pkg("regopy"),
        "timer_resolution_ns": time.get_clock_info("perf_counter").resolution * 1e9,
    }


SETS = ("small", "large")


def prepare(quick: bool) -> dict[str, tuple[Spec, list[Engine], list[Request], Agreement]]:
    """Build every engine for both sets and check that all agree with Ordinance."""
    prepared = {}
    for name in SETS:
        spec = build_spec(name)
        _, engines = build_engines(spec)
        requests = make_requests(spec, 96 if quick else 256)
        prepared[name] = (spec, engines, requests, check_agreement(engines, requests))
    return prepared


def run(quick: bool, log: Callable[[str], None] = lambda s: None) -> Report:
    budget, repeats = (0.04, 1) if quick else (0.5, 5)
    report = Report(quick, environment(), {})
    prepared = prepare(quick)
    for name, (_, _, _, agreement) in prepared.items():
        report.agreement[name] = agreement
        if not agreement.ok:
            return report
    overhead = timer_overhead_ns()
    report.environment["timer_overhead_ns"] = overhead
    for name, (spec, engines, requests, _) in prepared.items():
        base: float | None = None
        for engine in engines:
            log(f"timing {engine.name} on the {name} set ...")
            t = measure(engine.timed or engine.decide, requests, budget, repeats, overhead)
            base = t.p50_us if base is None else base
            report.rows.append(
                Row(name, spec.rule_count, engine.name, t.p50_us, t.p99_us, t.per_second,
                    t.p50_us / base if base else float("inf"), t.calls, engine.setup_s)
            )  # fmt: skip
            if engine.batch is not None and not quick:
                log(f"timing {engine.name} batch on the {name} set ...")
                b = measure_batch(engine.batch, requests, budget, repeats)
                report.rows.append(
                    Row(name, spec.rule_count, f"{engine.name} (batch of {len(requests)})",
                        b.p50_us, None, b.per_second, b.p50_us / base if base else float("inf"),
                        b.calls, None)
                )  # fmt: skip
    report.targets = targets(report.rows)
    return report


def targets(rows: Sequence[Row]) -> list[dict[str, Any]]:
    def p50(set_name: str, engine: str) -> float:
        return next(r.p50_us for r in rows if r.set == set_name and r.engine == engine)

    out = []
    for set_name, limit in (("small", TARGET_P50_SMALL_US), ("large", TARGET_P50_LARGE_US)):
        value = p50(set_name, "ordinance")
        out.append(
            {"target": f"Ordinance p50 on the {set_name} set <= {limit:g} µs",
             "measured": f"{value:.2f} µs", "met": value <= limit}
        )  # fmt: skip
    for set_name in SETS:
        for peer in ("cedarpy", "cedarpy, per-tool sets"):
            ratio = p50(set_name, peer) / p50(set_name, "ordinance")
            out.append(
                {"target": f"Ordinance >= {TARGET_CEDAR_RATIO:g}x faster than {peer} "
                           f"({set_name} set, p50)",
                 "measured": f"{ratio:.1f}x", "met": ratio >= TARGET_CEDAR_RATIO}
            )  # fmt: skip
    return out


def _fmt(value: float | None, digits: int = 2) -> str:
    if value is None:
        return "–"
    if value >= 100:
        return f"{value:,.0f}"
    return f"{value:.{digits}f}"


def markdown(report: Report) -> str:
    env = report.environment
    lines = [
        f"Ordinance evaluation benchmark ({'quick' if report.quick else 'full'} run) — "
        f"Python {env['python']}, {env['cpus']} CPUs, load at start {env['loadavg_at_start']}, "
        f"cedarpy {env['cedarpy']}, regopy {env['regopy']}"
        + (
            f", timer overhead {env['timer_overhead_ns']} ns (subtracted)"
            if "timer_overhead_ns" in env
            else ""
        ),
        "",
    ]
    for name, a in report.agreement.items():
        mix = ", ".join(f"{e} {a.effects.get(e, 0)}" for e in EFFECTS)
        agree = ", ".join(f"{k} {v}/{a.requests}" for k, v in a.agree.items())
        lines.append(f"Agreement with Ordinance, {name} set ({mix}): {agree}")
    lines.append("")
    if not report.rows:
        return "\n".join(lines)
    lines += [
        "| set | rules | engine | p50 µs | p99 µs | decisions/s | p50 vs Ordinance | setup s |",
        "|---|---:|---|---:|---:|---:|---:|---:|",
    ]
    for r in report.rows:
        lines.append(
            f"| {r.set} | {r.rules} | {r.engine} | {_fmt(r.p50_us)} | {_fmt(r.p99_us)} | "
            f"{r.per_second:,.0f} | {_fmt(r.ratio)}x | {_fmt(r.setup_s, 3)} |"
        )
    lines += ["", "Targets:"]
    for t in report.targets:
        lines.append(f"- {t['target']}: {t['measured']} — {'met' if t['met'] else 'NOT MET'}")
    return "\n".join(lines)


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0] if __doc__ else None)
    parser.add_argument("--quick", action="store_true", help="short CI smoke run (< 20 s)")
    parser.add_argument("--json", action="store_true", help="print the results as JSON")
    args = parser.parse_args(argv)
    report = run(args.quick, log=lambda s: print(s, file=sys.stderr, flush=True))
    if args.json:
        print(json.dumps(asdict(report), indent=2, default=str))
    else:
        print(markdown(report))
    failed = [(n, a) for n, a in report.agreement.items() if not a.ok]
    for name, a in failed:
        print(f"\nengines disagree with Ordinance on the {name} set:", file=sys.stderr)
        for m in a.mismatches:
            print(json.dumps(m, default=str), file=sys.stderr)
    return 1 if failed else 0


if __name__ == "__main__":
    raise SystemExit(main())
