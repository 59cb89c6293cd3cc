"""Schema compatibility: which changes of ``schema.yaml`` break requests that are valid
under the schema in force (docs/lifecycle.md, "Schema compatibility").

A request the enforcer accepts today must still be accepted after a new bundle is put in
force, or agents that did nothing new start being denied. The changes that break that:

| change | why it breaks live traffic |
|---|---|
| ``removed-tool`` | every request to the tool is denied (``tool is not in the schema``) |
| ``removed-arg`` | tool arguments are strict: a request still sending it is refused |
| ``new-required`` | a new required field, or an optional one made required: requests without it are refused |
| ``narrowed-type`` | some value of the old type is not one of the new (``decimal`` → ``int``, ``string`` → ``path``, an enum added) |
| ``removed-enum-value`` | a request with that value is refused |

Adding a tool, an optional field or an enum value, ``int`` → ``decimal``, a canonical
string type → ``string``, and removing an agent, resource or context field (those
records accept extra fields) break nothing. Each break is a ``Finding`` of kind
``schema-break`` (its id ``schema-break:…``) so the analysis gate's acknowledgements
(``acknowledgements.ack``) accept it like any other finding.
"""

from __future__ import annotations

from collections.abc import Collection, Iterator
from dataclasses import dataclass

from ordinance.policy.analysis.checks import Finding
from ordinance.policy.errors import UNKNOWN, Location
from ordinance.policy.schema import Field, Fields, Schema
from ordinance.policy.types import Type
from ordinance.policy.yamlsrc import MappingNode, Node, ScalarNode, SourceFile

KIND = "schema-break"
CHANGES = ("removed-tool", "removed-arg", "new-required", "narrowed-type", "removed-enum-value")


@dataclass(frozen=True)
class SchemaBreak:
    change: str  # one of CHANGES
    tool: str  # the tool, or "*" for an agent, resource or context field
    field: str  # "action.tool", "action.args.amount", "context.env", "action.args.country=kp"
    message: str
    location: Location  # in the new schema.yaml, where the change is (or would be)
    before: str = ""
    after: str = ""

    def finding(self, against: tuple[str, ...] = ()) -> Finding:
        return Finding(
            KIND,
            self.tool,
            (self.field,),
            self.message,
            details={
                "change": self.change,
                "location": str(self.location),
                "before": self.before,
                "after": self.after,
                "against": list(against),
            },
        )


def schema_breaks(
    old: Schema, new: Schema, new_text: str = "", filename: str = "schema.yaml"
) -> list[SchemaBreak]:
    """Every change from ``old`` to ``new`` that refuses a request ``old`` accepts, located
    in ``new_text`` (the new ``schema.yaml``) where it can be."""
    where = _Locator(new_text, filename)
    out: list[SchemaBreak] = []
    for name, tool in sorted(old.tools.items()):
        if name not in new.tools:
            out.append(
                SchemaBreak(
                    "removed-tool",
                    name,
                    "action.tool",
                    f"tool {name} was removed: every request to it will be denied",
                    where.at("tools", key=True),
                )
            )
            continue
        new_args = new.tools[name].args
        for arg in sorted(set(tool.args) - set(new_args)):
            out.append(
                SchemaBreak(
                    "removed-arg",
                    name,
                    f"action.args.{arg}",
                    f"argument {arg} of {name} was removed: a request still sending it is "
                    "refused (tool arguments are strict)",
                    where.at("tools", name, "args"),
                    str(tool.args[arg].type),
                )
            )
        out += _fields(tool.args, new_args, name, "action.args", where, ("tools", name, "args"))
    for record in ("agent", "resource", "context"):
        old_fields: Fields = getattr(old, record)
        new_fields: Fields = getattr(new, record)
        out += _fields(old_fields, new_fields, "*", record, where, (record,))
    return sorted(out, key=lambda b: (b.location.line, b.location.column, b.field))


def _fields(
    old: Fields, new: Fields, tool: str, prefix: str, where: _Locator, path: tuple[str, ...]
) -> Iterator[SchemaBreak]:
    for name, after in sorted(new.items()):
        before = old.get(name)
        field = f"{prefix}.{name}"
        subject = f"{field} of {tool}" if tool != "*" else field
        if before is None and not after.optional:
            yield SchemaBreak(
                "new-required",
                tool,
                field,
                f"{subject} is a new required field: requests without it are refused",
                where.at(*path, name, key=True),
                "",
                str(after.type),
            )
            continue
        if before is None:
            continue
        if before.optional and not after.optional:
            yield SchemaBreak(
                "new-required",
                tool,
                field,
                f"{subject} was optional and is now required: requests without it are refused",
                where.at(*path, name, key=True),
                _spelled(before),
                _spelled(after),
            )
        yield from _types(before.type, after.type, tool, field, subject, where.at(*path, name))


def _spelled(f: Field) -> str:
    return str(f.type) + ("?" if f.optional else "")


def _types(
    old: Type, new: Type, tool: str, field: str, subject: str, location: Location
) -> Iterator[SchemaBreak]:
    if accepts(old, new):
        return
    old_elem, new_elem = _strings(old), _strings(new)
    if (
        old_elem is not None
        and new_elem is not None
        and old_elem.norm == new_elem.norm
        and old_elem.enum is not None
        and new_elem.enum is not None
    ):
        for value in sorted(old_elem.enum - new_elem.enum):
            yield SchemaBreak(
                "removed-enum-value",
                tool,
                f"{field}={value}",
                f"{value!r} was removed from the values of {subject}: a request with it is refused",
                location,
                str(old),
                str(new),
            )
        return
    yield SchemaBreak(
        "narrowed-type",
        tool,
        field,
        f"{subject} changed type from {old} to {new}: some values valid before are refused",
        location,
        str(old),
        str(new),
    )


def _strings(t: Type) -> Type | None:
    """The string type of a string or list-of-string field (where enums live)."""
    if t.name == "string":
        return t
    if t.name == "list" and t.elem is not None and t.elem.name == "string":
        return t.elem
    return None


def accepts(old: Type, new: Type) -> bool:
    """Whether every value valid under ``old`` is valid under ``new``."""
    if old == new:
        return True
    if old.name == "int" and new.name == "decimal":
        return True
    if old.name == "list" and new.name == "list":
        return old.elem is None or (new.elem is not None and accepts(old.elem, new.elem))
    if new.name == "string" and old.is_stringlike:
        if new.enum is None:
            return True  # any string is accepted (normalised differently, perhaps)
        if old.name != "string" or old.enum is None or old.norm != new.norm:
            return False  # values outside the new enum, or normalised into other values
        return old.enum <= new.enum
    return False


class _Locator:
    """Positions in the new schema.yaml by key path (raw names may carry a ``?``)."""

    def __init__(self, text: str, filename: str) -> None:
        self.source = SourceFile(text, filename)
        try:
            self.root: Node | None = self.source.compose() if text else None
        except Exception:  # it compiled, so this does not happen; a location is a nicety
            self.root = None

    def at(self, *path: str, key: bool = False) -> Location:
        node, key_node = self.root, None
        for name in path:
            if not isinstance(node, MappingNode):
                return UNKNOWN if node is None else self.source.node_location(node)
            found = None
            for k, v in node.value:
                if isinstance(k, ScalarNode) and str(k.value).rstrip("?") == name:
                    found = (k, v)
            if found is None:
                return self.source.node_location(key_node or node)
            key_node, node = found
        if node is None:
            return UNKNOWN
        target = key_node if key and key_node is not None else node
        return self.source.node_location(target)


def unacknowledged_breaks(
    old: Schema, new: Schema, acknowledged: Collection[str]
) -> list[SchemaBreak]:
    """The breaks from ``old`` to ``new`` whose finding id is not in ``acknowledged`` —
    for a reader of the log (a controller) that has the ids a publisher acknowledged
    (``checks.acknowledgements[].finding`` of kind ``schema-break`` on the published
    event) rather than the acknowledgements file."""
    done = set(acknowledged)
    return [b for b in schema_breaks(old, new) if b.finding().id not in done]
