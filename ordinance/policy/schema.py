"""The schema: what agents, tools (and their arguments), resources and context look like.

Policies are type-checked against it (a typo in an attribute is a compile error, not a
silent non-match) and requests are validated and canonicalised by it before evaluation.

Format (``schema.yaml``)::

    agent:    {team: string, clearance?: int}          # id and roles are built in
    tools:
      payments.transfer:
        description: Move money.
        args: {amount: decimal, currency: string, memo?: string}
    resource: {owner?: string}                         # kind and id are built in
    context:  {environment?: string}
    settings: {default_effect: deny, combining: deny-overrides}

A field's type is a type name, or for strings (and lists of strings) a mapping that states
how values are normalised and which are accepted::

    country:     {type: string, normalize: nfkc_casefold_trim, enum: [de, fr, kp, ir]}
    environment: {type: string, normalize: nfkc_casefold_trim, enum: [dev, staging, prod]}
    body:        {type: string, normalize: none}

``normalize`` is ``nfkc`` (the default), ``none`` or ``nfkc_casefold_trim``; a value not in
``enum`` (after normalisation) is an invalid request, so ``"kp"`` is either matched (a
case-folding field) or refused (an enum that does not hold it), never silently neither.

A field name ending in ``?`` is optional: reading it without ``has(...)`` on a request
that lacks it is an evaluation error (a deny), never a silent false. The built-in
``agent.roles`` is the one exception: absent roles are the empty set.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ordinance.policy import canon
from ordinance.policy.decision import Effect
from ordinance.policy.errors import SchemaProblem
from ordinance.policy.types import SET_STRING, STRING, Type, ValueProblem, list_of, parse_type
from ordinance.policy.types import converter as converter_of
from ordinance.policy.yamlsrc import Mapping, MappingNode, Node, ScalarNode, SourceFile

EFFECTS = tuple(Effect)
COMBINING = ("deny-overrides", "first-applicable")


@dataclass(frozen=True, slots=True)
class Field:
    type: Type
    optional: bool = False


Fields = dict[str, Field]


@dataclass(frozen=True, slots=True)
class Tool:
    name: str  # canonical (NFKC + casefold)
    args: Fields
    description: str = ""


@dataclass(frozen=True, slots=True)
class Settings:
    default_effect: str = Effect.DENY
    combining: str = "deny-overrides"


BUILTIN_AGENT: Fields = {"id": Field(STRING), "roles": Field(SET_STRING, optional=True)}
BUILTIN_RESOURCE: Fields = {"kind": Field(STRING), "id": Field(STRING, optional=True)}


@dataclass(frozen=True, slots=True)
class Schema:
    agent: Fields
    tools: dict[str, Tool]
    resource: Fields
    context: Fields
    settings: Settings = field(default_factory=Settings)

    def canonical(self) -> dict[str, Any]:
        """A plain, order-independent form: part of what the bundle id hashes."""

        def fields(fs: Fields) -> dict[str, str]:
            return {
                name + ("?" if f.optional else ""): str(f.type) for name, f in sorted(fs.items())
            }

        return {
            "agent": fields(self.agent),
            "tools": {
                name: {"args": fields(tool.args), "description": tool.description}
                for name, tool in sorted(self.tools.items())
            },
            "resource": fields(self.resource),
            "context": fields(self.context),
            "settings": {
                "default_effect": self.settings.default_effect,
                "combining": self.settings.combining,
            },
        }


def _fields(m: Mapping | None, what: str, builtin: Fields) -> Fields:
    result: Fields = dict(builtin)
    if m is None:
        return result
    for raw_name, (key, value) in m.entries.items():
        optional = raw_name.endswith("?")
        name = raw_name[:-1] if optional else raw_name
        if not name.isidentifier():
            raise SchemaProblem(
                f"`{name}` in {what} is not a valid field name", m.source.node_location(key)
            )
        if name in builtin:
            raise SchemaProblem(
                f"`{name}` is built into {what} and cannot be redeclared",
                m.source.node_location(key),
            )
        result[name] = Field(_field_type(value, m.source, f"{what}.{name}"), optional)
    return result


def _field_type(value: Node, source: SourceFile, what: str) -> Type:
    if isinstance(value, MappingNode):
        return _string_options(Mapping(value, source, f"the type of `{what}`"))
    if not isinstance(value, ScalarNode):
        raise SchemaProblem(
            f"the type of `{what}` must be a type name such as `string`",
            source.node_location(value),
        )
    try:
        return parse_type(str(value.value))
    except ValueError as exc:
        raise SchemaProblem(str(exc), source.node_location(value)) from None


def _string_options(spec: Mapping) -> Type:
    """``{type: string | list<string>, normalize: ..., enum: [...]}``."""
    spec.allow_only({"type", "normalize", "enum"})
    base = spec.required_string("type").strip()
    if base not in ("string", "list<string>"):
        raise SchemaProblem(
            "only `string` and `list<string>` take options (normalize, enum)",
            spec.loc(spec.require("type")),
        )
    norm = spec.string("normalize", canon.NORMALIZE_NFKC) or canon.NORMALIZE_NFKC
    if norm not in canon.NORMALIZATIONS:
        raise SchemaProblem(
            f"normalize must be one of {', '.join(canon.NORMALIZATIONS)}",
            spec.key_location("normalize"),
        )
    enum: frozenset[str] | None = None
    if spec.has("enum"):
        plain = Type("string", norm=norm)
        values = set()
        for raw in spec.string_list("enum"):
            try:
                values.add(converter_of(plain)(raw))
            except ValueProblem as exc:
                raise SchemaProblem(
                    f"enum value {raw!r}: {exc}", spec.key_location("enum")
                ) from None
        if not values:
            raise SchemaProblem("an enum must list at least one value", spec.key_location("enum"))
        enum = frozenset(values)
    elem = Type("string", norm=norm, enum=enum)
    return elem if base == "string" else list_of(elem)


def _sub(m: Mapping, key: str, what: str) -> Mapping | None:
    node = m.node_of(key)
    if node is None:
        return None
    return Mapping(node, m.source, what)


def parse_schema(text: str, filename: str = "schema.yaml") -> Schema:
    source = SourceFile(text, filename)
    root_node = source.compose()
    if root_node is None:
        raise SchemaProblem(
            "the schema is empty: it must declare at least one tool", source.location(0, 0)
        )
    root = Mapping(root_node, source, "the schema")
    root.allow_only({"agent", "tools", "resource", "context", "settings", "schema"})

    tools_map = _sub(root, "tools", "tools")
    if tools_map is None or not tools_map.entries:
        raise SchemaProblem("the schema declares no tools", source.node_location(root_node))
    tools: dict[str, Tool] = {}
    for raw_name, (key, value) in tools_map.entries.items():
        name = canon.canonical_tool(raw_name)
        if name != raw_name:
            raise SchemaProblem(
                f"tool name `{raw_name}` is not in canonical form",
                source.node_location(key),
                f"write `{name}` (tool names are NFKC-normalised and case-folded)",
            )
        spec = Mapping(value, source, f"tool `{name}`")
        spec.allow_only({"args", "description"})
        args = _fields(_sub(spec, "args", f"action.args of `{name}`"), "action.args", {})
        tools[name] = Tool(name, args, spec.string("description") or "")

    settings_map = _sub(root, "settings", "settings")
    settings = Settings()
    if settings_map is not None:
        settings_map.allow_only({"default_effect", "combining"})
        default = settings_map.string("default_effect", Effect.DENY) or Effect.DENY
        combining = settings_map.string("combining", "deny-overrides") or "deny-overrides"
        if default not in EFFECTS:
            raise SchemaProblem(
                f"default_effect must be one of {', '.join(EFFECTS)}",
                settings_map.key_location("default_effect"),
            )
        if combining not in COMBINING:
            raise SchemaProblem(
                f"combining must be one of {', '.join(COMBINING)}",
                settings_map.key_location("combining"),
            )
        settings = Settings(default, combining)

    return Schema(
        agent=_fields(_sub(root, "agent", "agent"), "agent", BUILTIN_AGENT),
        tools=tools,
        resource=_fields(_sub(root, "resource", "resource"), "resource", BUILTIN_RESOURCE),
        context=_fields(_sub(root, "context", "context"), "context", {}),
        settings=settings,
    )


def load_schema(path: Path) -> Schema:
    return parse_schema(path.read_text(encoding="utf-8"), str(path))
