"""Compile a policy set into an immutable, content-addressed :class:`Ruleset`, and evaluate.

Evaluation never raises and never allows by accident: unknown tools, requests that do not
fit the schema and rules that cannot be evaluated all end as a deny with a machine-readable
code (see :mod:`ordinance.policy.decision`).
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from fnmatch import fnmatchcase
from typing import Any

from ordinance.jsonutil import canonical_json
from ordinance.policy import canon
from ordinance.policy.approvers import combine
from ordinance.policy.codegen import RUNTIME, Constants, compile_condition
from ordinance.policy.decision import (
    APPROVAL_CONFLICT,
    DEFAULT,
    DENY,
    EVALUATION_ERROR,
    INVALID_REQUEST,
    MATCHED,
    REQUIRE_APPROVAL,
    UNKNOWN_TOOL,
    Decision,
    Effect,
)
from ordinance.policy.document import Assertion, Policy, Rule, Target
from ordinance.policy.errors import (
    UNKNOWN,
    Location,
    PolicyError,
    PolicyErrors,
    SchemaProblem,
    TypeProblem,
)
from ordinance.policy.program import (
    RUNTIME_NAMES,
    TIER_OF_EFFECT,
    Layout,
    RequestProblem,
    RuleCode,
    ToolProgram,
    deny_overrides_body,
    first_applicable_body,
    program_source,
)
from ordinance.policy.request import CanonicalRequest, canonical_request
from ordinance.policy.schema import Schema, Tool
from ordinance.policy.typecheck import check_condition
from ordinance.policy.types import converter
from ordinance.policy.window import WindowState
from ordinance.policy.yamlsrc import closest

BUNDLE_FORMAT = "ordinance.bundle/1"
EFFECT_OF_TIER = (Effect.DENY, Effect.REQUIRE_APPROVAL, Effect.ALLOW)
_TOOL_CACHE_LIMIT = 4096  # distinct raw spellings of tool names remembered
_TOOL_CACHE_NAME_CHARS = 128  # longer raw names are canonicalised each time, never kept
_DECISION_CACHE_LIMIT = 65536  # distinct multi-rule decisions remembered
_DEFAULT_KEY = (-1, ())  # the cached default decision, beside the per-(tier, rules) ones


def bundle_content(schema: Schema, policies: Iterable[Policy]) -> dict[str, Any]:
    """The canonical form a bundle id hashes: independent of file order and YAML layout."""
    return {
        "format": BUNDLE_FORMAT,
        "schema": schema.canonical(),
        "policies": [p.canonical() for p in sorted(policies, key=lambda p: p.id)],
    }


def bundle_id_of(schema: Schema, policies: Iterable[Policy]) -> str:
    digest = hashlib.sha256(canonical_json(bundle_content(schema, policies))).hexdigest()
    return f"sha256:{digest}"


@dataclass(frozen=True, slots=True)
class CompiledRule:
    qualified_id: str  # "policy-id/rule-id"
    policy: Policy
    rule: Rule

    @property
    def reason(self) -> str:
        return self.rule.reason or f"rule {self.qualified_id} matched"


def _describe_error(exc: BaseException) -> str:
    if isinstance(exc, KeyError):
        return f"missing attribute {exc.args[0]!r}"
    if isinstance(exc, ZeroDivisionError):
        return "division by zero"
    if isinstance(exc, ArithmeticError):
        return "decimal result is not exact"
    if isinstance(exc, AttributeError) and "NoneType" in str(exc):
        return "the rule uses a window function but no window state was provided"
    return f"{type(exc).__name__}: {exc}"


def _decision_of(tier: int, rules: list[CompiledRule], bundle_id: str) -> Decision:
    effect = EFFECT_OF_TIER[tier]
    ids = tuple(cr.qualified_id for cr in rules)
    if effect != REQUIRE_APPROVAL:
        reasons = tuple(cr.reason for cr in rules)
        obligations = tuple(o for cr in rules for o in cr.rule.obligations)
        return Decision(effect, ids, reasons, obligations, bundle_id, MATCHED)
    requirement = combine(cr.rule.approval for cr in rules)
    if requirement is None:
        # Fail closed: no one role satisfies every applicable rule (ordinance.policy.approvers).
        sets = "; ".join(
            f"{cr.qualified_id}: {', '.join(cr.rule.approval.roles)}"
            for cr in rules
            if cr.rule.approval.roles
        )
        detail = f"the approval rules' approver roles have no role in common ({sets})"
        return Decision(DENY, ids, (detail,), (), bundle_id, APPROVAL_CONFLICT, detail)
    return Decision(
        effect,
        ids,
        tuple(cr.reason for cr in rules),
        tuple(o for cr in rules for o in cr.rule.obligations),
        bundle_id,
        MATCHED,
        approval_roles=requirement.roles,
        approvals_required=requirement.approvals,
    )


# Types whose converter returns a value of this Python type unchanged (a str only if
# ASCII: NFKC leaves ASCII alone); any other value goes through the converter.
_IDENTITY = {"string": str, "int": int, "bool": bool}


def _arg_converters(tool: Tool) -> dict[str, tuple[Callable[[Any], Any], type | None]]:
    return {
        # A folding or enum string converts every value, so it has no identity shortcut.
        name: (
            converter(spec.type),
            _IDENTITY.get(spec.type.name)
            if spec.type.name != "string" or spec.type.is_plain_string
            else None,
        )
        for name, spec in tool.args.items()
    }


@dataclass(frozen=True)
class Ruleset:
    """An immutable, compiled policy set. Safe to share between threads."""

    bundle_id: str
    schema: Schema
    policies: tuple[Policy, ...]
    rules: tuple[CompiledRule, ...]
    programs: Mapping[str, ToolProgram]
    _tool_cache: dict[str, str] = field(default_factory=dict, repr=False, compare=False)
    _decisions: dict[tuple[int, tuple[int, ...]], Decision] = field(
        default_factory=dict, repr=False, compare=False
    )
    # tool -> argument name -> (converter, identity type), for evaluate_canonical
    _converters: dict[str, dict[str, tuple[Callable[[Any], Any], type | None]]] = field(
        default_factory=dict, repr=False, compare=False
    )

    @property
    def default_effect(self) -> str:
        return self.schema.settings.default_effect

    def __post_init__(self) -> None:
        effect = self.default_effect
        self._decisions[_DEFAULT_KEY] = Decision(
            effect,
            (),
            (f"no rule applies; default {effect}",),
            (),
            self.bundle_id,
            DEFAULT,
            approvals_required=1 if effect == REQUIRE_APPROVAL else None,
        )

    def _deny(self, code: str, detail: str) -> Decision:
        return Decision(DENY, (), (detail,), (), self.bundle_id, code, detail)

    def _matched(self, tier: int, hits: list[int]) -> Decision:
        key = (tier, tuple(hits))
        found = self._decisions.get(key)
        if found is None:
            found = _decision_of(tier, [self.rules[i] for i in hits], self.bundle_id)
            if len(self._decisions) < _DECISION_CACHE_LIMIT:
                self._decisions[key] = found
        return found

    def _errored(self, hits: list[int], errors: list[tuple[int, BaseException]]) -> Decision:
        ids = [self.rules[i].qualified_id for i in hits]
        reasons = [self.rules[i].reason for i in hits]
        for i, exc in errors:
            ids.append(self.rules[i].qualified_id)
            reasons.append(
                f"rule {self.rules[i].qualified_id} could not be evaluated: {_describe_error(exc)}"
            )
        return Decision(
            DENY, tuple(ids), tuple(reasons), (), self.bundle_id, EVALUATION_ERROR, reasons[-1]
        )

    def canonical_tool(self, raw: str) -> str:
        cached = self._tool_cache.get(raw)
        if cached is None:
            cached = canon.canonical_tool(raw)  # bounded: CanonError past MAX_DOMAIN_CHARS
            # Bounded by count and by key size: at most 4096 x 128 characters are kept.
            if len(raw) <= _TOOL_CACHE_NAME_CHARS and len(self._tool_cache) < _TOOL_CACHE_LIMIT:
                self._tool_cache[raw] = cached
        return cached

    def canonical(self, request: Mapping[str, Any]) -> CanonicalRequest:
        """The request in canonical form (raises RequestProblem if it does not fit)."""
        return canonical_request(self.schema, request)

    def evaluate(self, request: Mapping[str, Any], windows: WindowState | None = None) -> Decision:
        """Decide one request. Never raises; anything unexpected is a deny with a reason."""
        return self._evaluate(request, windows)[0]

    def evaluate_canonical(
        self, request: Mapping[str, Any], windows: WindowState | None = None
    ) -> tuple[Decision, str, dict[str, Any]]:
        """The decision and the canonical tool and arguments the enforcer records (window
        counters, audit), or ``("", {})`` where ``canonical`` refuses the request. The same
        as ``evaluate`` then ``canonical``, without validating the request a second time:
        a request the tool's program accepted is one ``canonical_request`` accepts (the
        reference test), so only its arguments are converted again."""
        decision, program = self._evaluate(request, windows)
        if program is None:
            if decision.code == INVALID_REQUEST:
                return decision, "", {}
            # Unknown tool, or an internal error: what ``canonical`` says (rare).
            try:
                canonical = self.canonical(request)
            except (RequestProblem, KeyError, TypeError, AttributeError):
                return decision, "", {}
            return decision, canonical.tool, canonical.args
        converters = self._converters.get(program.tool)
        if converters is None:
            converters = self._converters[program.tool] = _arg_converters(
                self.schema.tools[program.tool]
            )
        args: dict[str, Any] = {}
        raw: Mapping[str, Any] = request["action"].get("args", {})
        for key, value in raw.items():
            convert, kind = converters[key]
            # Where the converter would return the value itself, it is not called.
            same = type(value) is str and value.isascii() if kind is str else type(value) is kind
            args[key] = value if same else convert(value)
        return decision, program.tool, args

    def _evaluate(
        self, request: Mapping[str, Any], windows: WindowState | None
    ) -> tuple[Decision, ToolProgram | None]:
        """The decision, and the program that validated the request (None if none did)."""
        try:
            action = request["action"]
            # Canonical names are fixed points, so the common case needs no normalisation.
            program = self.programs.get(action["tool"])
            if program is None:
                raw_tool = action["tool"]
                if not isinstance(raw_tool, str):
                    return self._deny(INVALID_REQUEST, "action.tool must be a string"), None
                program = self.programs.get(self.canonical_tool(raw_tool))
                if program is None:
                    return self._deny(UNKNOWN_TOOL, f"tool {raw_tool!r} is not in the schema"), None
            outcome = program.run(request, action, windows)
        except (RequestProblem, canon.CanonError) as exc:  # CanonError: an over-long tool name
            return self._deny(INVALID_REQUEST, str(exc)), None
        except (KeyError, TypeError, AttributeError) as exc:
            return self._deny(INVALID_REQUEST, f"malformed request: {_describe_error(exc)}"), None
        except Exception as exc:  # a bug must still fail closed
            return self._deny(
                EVALUATION_ERROR, f"internal error: {type(exc).__name__}: {exc}"
            ), None
        if outcome is None:
            return self._decisions[_DEFAULT_KEY], program
        if isinstance(outcome, Decision):
            return outcome, program
        tier, hits, errors = outcome
        if errors:
            return self._errored(hits, errors), program
        return self._matched(tier, hits), program


# -- compilation ------------------------------------------------------------------------


def _target_guard(target: Target, consts: Constants) -> str:
    parts = []
    agent_tests = []
    if target.roles:
        agent_tests.append(f"not {consts.add(frozenset(target.roles))}.isdisjoint(roles)")
    if target.agent_ids:
        agent_tests.append(f"aid in {consts.add(frozenset(target.agent_ids))}")
    if agent_tests:
        parts.append("(" + " or ".join(agent_tests) + ")")
    if target.resources:
        parts.append(f"rk in {consts.add(frozenset(target.resources))}")
    return " and ".join(parts)


def tools_matching(globs: tuple[str, ...], schema: Schema) -> set[str]:
    if not globs:
        return set(schema.tools)
    return {t for t in schema.tools for g in globs if fnmatchcase(t, g)}


def _check_globs(
    globs: tuple[str, ...], schema: Schema, policy: Policy, where: str, location: Location
) -> list[PolicyError]:
    errors: list[PolicyError] = []
    for glob in globs:
        if not any(fnmatchcase(t, glob) for t in schema.tools):
            guess = closest(glob, list(schema.tools))
            errors.append(
                SchemaProblem(
                    f"`{glob}` in {where} of policy `{policy.id}` matches no tool in the schema",
                    location,
                    f"did you mean `{guess}`?" if guess else "check the tool names in schema.yaml",
                )
            )
    return errors


def _too_complex(item: Rule | Assertion, exc: BaseException) -> PolicyError:
    cond = item.condition
    return TypeProblem(
        f"this condition is too complex to compile ({type(exc).__name__})",
        cond.location(0, max(1, len(cond.text))),
        "split it into several rules",
    )


def _uncompilable(
    codes: list[RuleCode], compiled: list[CompiledRule], exc: BaseException
) -> list[PolicyError]:
    found: list[PolicyError] = []
    for rc in codes:
        try:
            compile(rc.condition, "<rule>", "eval")
        except (SyntaxError, RecursionError, MemoryError) as own:
            found.append(_too_complex(compiled[rc.index].rule, own))
    return found or [TypeProblem(f"the compiled policy set is refused by Python: {exc}", UNKNOWN)]


def first_applicable_order(cr: CompiledRule, index: int) -> tuple[int, int, int]:
    """Higher priority first; ties go to the stronger effect, then to policy id and file order
    (``index`` already follows policy id, then position in the file)."""
    return (-cr.rule.priority, TIER_OF_EFFECT[cr.rule.effect], index)


def compile_ruleset(schema: Schema, policies: Iterable[Policy]) -> Ruleset:
    """Type-check and compile; raises :class:`PolicyErrors` listing every problem."""
    ordered = tuple(sorted(policies, key=lambda p: p.id))
    errors: list[PolicyError] = []
    seen_ids: dict[str, Policy] = {}
    for p in ordered:
        if p.id in seen_ids:
            errors.append(
                SchemaProblem(
                    f"policy id `{p.id}` is also used in {seen_ids[p.id].file}", p.rules[0].location
                )
            )
        seen_ids[p.id] = p
    compiled: list[CompiledRule] = [
        CompiledRule(f"{p.id}/{r.id}", p, r) for p in ordered for r in p.rules
    ]
    consts = Constants()
    per_tool: dict[str, list[RuleCode]] = {name: [] for name in schema.tools}
    layouts = {name: Layout(tool, schema) for name, tool in schema.tools.items()}
    guards = {p.id: _target_guard(p.target, consts) for p in ordered}
    for p in ordered:
        errors += _check_globs(p.target.actions, schema, p, "target.actions", p.target.location)
        for r in p.rules:
            errors += _check_globs(r.actions, schema, p, f"rule `{r.id}` actions", r.location)
    reported: set[str] = set()

    def report(exc: PolicyError) -> None:
        if exc.render() not in reported:
            reported.add(exc.render())
            errors.append(exc)

    for index, cr in enumerate(compiled):
        rule_tools = tools_matching(cr.rule.actions, schema)
        tools = tools_matching(cr.policy.target.actions, schema) & rule_tools
        if not tools:
            # The rule can never apply (the analysis reports it as dead), but it is still
            # type-checked against the tools it names: an unchecked rule would compile
            # `action.args.nonexistent > "x" + 5` and come alive when the target widens.
            for tool_name in sorted(rule_tools):
                try:
                    check_condition(schema, schema.tools[tool_name], cr.rule.condition)
                except PolicyError as exc:
                    report(exc)
                except (RecursionError, MemoryError) as exc:
                    report(_too_complex(cr.rule, exc))
            continue
        for tool_name in sorted(tools):
            tool: Tool = schema.tools[tool_name]
            try:
                typed = check_condition(schema, tool, cr.rule.condition)
                source = compile_condition(typed, cr.rule.condition, consts, layouts[tool_name])
            except PolicyError as exc:
                report(exc)
                continue
            except (RecursionError, MemoryError) as exc:
                # The parser's limits keep conditions far from the stack's end; this is
                # the backstop that keeps a compile from ever ending in a traceback.
                report(_too_complex(cr.rule, exc))
                continue
            per_tool[tool_name].append(
                RuleCode(index, TIER_OF_EFFECT[cr.rule.effect], source, guards[cr.policy.id])
            )
    for p in ordered:
        for assertion in p.assertions:
            for tool_name in sorted(tools_matching(p.target.actions, schema)):
                try:
                    check_condition(schema, schema.tools[tool_name], assertion.condition)
                except PolicyError as exc:
                    report(exc)
                except (RecursionError, MemoryError) as exc:
                    report(_too_complex(assertion, exc))
    if errors:
        raise PolicyErrors(errors)

    first_applicable = schema.settings.combining == "first-applicable"
    bundle_id = bundle_id_of(schema, ordered)
    single = [_decision_of(TIER_OF_EFFECT[cr.rule.effect], [cr], bundle_id) for cr in compiled]
    namespace: dict[str, Any] = {"__builtins__": {}, **RUNTIME, **RUNTIME_NAMES, "_single": single}
    programs: dict[str, ToolProgram] = {}
    for n, (tool_name, codes) in enumerate(sorted(per_tool.items())):
        fn_name = f"_tool_{n}"
        if first_applicable:
            in_order = sorted(
                codes, key=lambda rc: first_applicable_order(compiled[rc.index], rc.index)
            )
            decide = first_applicable_body(in_order)
        else:
            decide = deny_overrides_body(codes)
        source = program_source(fn_name, layouts[tool_name], consts, decide)
        namespace.update(consts.values)
        try:
            code = compile(source, f"<ordinance tool {n}>", "exec")
        except (SyntaxError, RecursionError, MemoryError) as exc:
            # Python refuses code nested past its own limits (200 parentheses); name the
            # rules of this tool whose code is refused on its own, never a traceback.
            raise PolicyErrors(_uncompilable(codes, compiled, exc)) from None
        exec(code, namespace)
        programs[tool_name] = ToolProgram(tool_name, namespace[fn_name], source)
    return Ruleset(
        bundle_id=bundle_id,
        schema=schema,
        policies=ordered,
        rules=tuple(compiled),
        programs=programs,
    )
