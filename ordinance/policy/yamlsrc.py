"""YAML with source positions, so every policy error can point at file:line:column.

We compose (rather than load) with ruamel.yaml to keep each node's marks, and build
plain values ourselves: YAML floats become exact ``Decimal`` (policies reason about
money), and YAML 1.2 rules mean ``no``/``on`` stay strings.

Policy files arrive from authors and from ``policy.changes``, so composing is bounded
(docs/policy-language.md, "Limits"): anchors and aliases are refused (an alias is a
reference, and nine nested levels of nine aliases — "billion laughs" — expand to 10^9
values in every walk of the tree), nesting deeper than :data:`MAX_YAML_DEPTH` and files
larger than :data:`MAX_SOURCE_CHARS` are refused, and so is any string holding a lone
surrogate (YAML's ``"\\ud83d"`` escapes produce them; no UTF-8 consumer can carry one).
Each refusal is a located :class:`SyntaxProblem`, never a traceback.
"""

from __future__ import annotations

import re
from decimal import Decimal, InvalidOperation
from typing import Any

from ruamel.yaml import YAML
from ruamel.yaml.composer import Composer
from ruamel.yaml.error import MarkedYAMLError
from ruamel.yaml.events import AliasEvent
from ruamel.yaml.nodes import MappingNode, Node, ScalarNode, SequenceNode
from ruamel.yaml.reader import ReaderError

from ordinance.policy.errors import Location, PolicyError, SyntaxProblem

MAX_SOURCE_CHARS = 1_048_576  # one policy or schema file; real ones are a few KiB
MAX_YAML_DEPTH = 64  # nested mappings and sequences; a policy needs fewer than ten
_SURROGATE = re.compile("[\ud800-\udfff]")

__all__ = [
    "MappingNode",
    "Node",
    "ScalarNode",
    "SequenceNode",
    "SourceFile",
]


class SourceFile:
    """One YAML file: its text, its name, and position lookups for its nodes."""

    def __init__(self, text: str, name: str):
        self.text = text
        self.name = name
        self.lines = text.splitlines()

    def location(self, line0: int, col0: int, length: int = 1) -> Location:
        source_line = self.lines[line0] if 0 <= line0 < len(self.lines) else ""
        return Location(self.name, line0 + 1, col0 + 1, source_line, length)

    def node_location(self, node: Node) -> Location:
        mark = node.start_mark
        length = 1
        if node.end_mark.line == mark.line:
            length = max(1, node.end_mark.column - mark.column)
        return self.location(mark.line, mark.column, length)

    def offset_location(self, node: ScalarNode, offset: int, length: int = 1) -> Location:
        """Where character ``offset`` of a scalar's value sits in the file.

        The value is rebuilt from source segments (one per source line) joined the way
        YAML joins them for this style; when the rebuild matches, offsets map exactly.
        Otherwise (escapes in quoted scalars, unusual folding) the scalar's start is used."""
        value: str = node.value
        if node.style in ("|", ">"):
            value = value.rstrip("\n")  # chomping indicators only add trailing newlines
        for segments, joiner in self._segment_candidates(node):
            if joiner.join(text for _, _, text in segments) != value:
                continue
            position = 0
            for line0, col0, text in segments:
                if offset <= position + len(text):
                    return self.location(line0, col0 + offset - position, length)
                position += len(text) + len(joiner)
        return self.node_location(node)

    def _segment_candidates(self, node: ScalarNode) -> list[tuple[list[tuple[int, int, str]], str]]:
        start, end = node.start_mark, node.end_mark
        if node.style in ("|", ">"):
            first = start.line + 1
            body = self.lines[first : end.line + 1]
            content = [ln for ln in body if ln.strip()]
            if not content:
                return []
            indent = min(len(ln) - len(ln.lstrip(" ")) for ln in content)
            segments = [(first + i, indent, ln[indent:].rstrip("\n")) for i, ln in enumerate(body)]
            while segments and not segments[-1][2].strip():
                segments.pop()
            if node.style == "|":
                return [(segments, "\n")]
            return [
                (
                    [(ln0, c0 + len(t) - len(t.lstrip(" ")), t.strip()) for ln0, c0, t in segments],
                    " ",
                )
            ]
        quote = 1 if node.style in ("'", '"') else 0
        if start.line == end.line:
            text = self.text[start.index + quote : end.index - quote]
            return [([(start.line, start.column + quote, text)], "")]
        segments = []
        for line0 in range(start.line, end.line + 1):
            raw = self.lines[line0]
            if line0 == start.line:
                col0, text = start.column + quote, raw[start.column + quote :].rstrip()
            elif line0 == end.line:
                text_full = raw[: end.column - quote]
                col0, text = len(text_full) - len(text_full.lstrip()), text_full.strip()
            else:
                col0, text = len(raw) - len(raw.lstrip()), raw.strip()
            segments.append((line0, col0, text))
        return [(segments, " ")]

    def index_location(self, index: int) -> Location:
        """Where character ``index`` of the text is."""
        line0 = self.text.count("\n", 0, index)
        col0 = index - (self.text.rfind("\n", 0, index) + 1)
        return self.location(line0, col0)

    # -- parsing -------------------------------------------------------------------
    def compose(self) -> Node | None:
        if len(self.text) > MAX_SOURCE_CHARS:
            raise SyntaxProblem(
                f"the file has {len(self.text)} characters; at most {MAX_SOURCE_CHARS} are allowed",
                self.location(0, 0),
                "split the policy set into more files",
            )
        if found := _SURROGATE.search(self.text):
            raise SyntaxProblem(
                f"not valid Unicode text: lone surrogate U+{ord(found.group()):04X}",
                self.index_location(found.start()),
            )
        yaml = YAML(typ="rt", pure=True)
        yaml.Composer = _StrictComposer
        try:
            node: Node | None = yaml.compose(self.text)
        except _Refused as exc:
            mark = exc.problem_mark
            raise SyntaxProblem(
                str(exc.problem), self.location(mark.line, mark.column), exc.hint
            ) from None
        except MarkedYAMLError as exc:
            mark = exc.problem_mark or exc.context_mark
            loc = self.location(mark.line, mark.column) if mark else self.location(0, 0)
            raise SyntaxProblem(f"invalid YAML: {exc.problem or exc.context}", loc) from None
        except ReaderError as exc:  # a character YAML does not allow, with its index
            loc = self.index_location(max(0, int(exc.position)))
            raise SyntaxProblem(f"invalid YAML: {exc.reason}", loc) from None
        except PolicyError:
            raise
        except Exception as exc:  # ruamel raises assorted types for non-marked problems
            raise SyntaxProblem(f"invalid YAML: {exc}", self.location(0, 0)) from None
        _check_scalars(node, self)
        return node


class _Refused(MarkedYAMLError):
    """A YAML construct policies do not accept, at its mark, with a hint for the author."""

    def __init__(self, problem: str, mark: Any, hint: str):
        super().__init__(None, None, problem, mark)
        self.hint = hint


class _StrictComposer(Composer):
    """ruamel's composer, refusing anchors, aliases and deep nesting before they are built."""

    def compose_node(self, parent: Any, index: Any) -> Any:
        event = self.parser.peek_event()
        if isinstance(event, AliasEvent):
            raise _Refused(
                f"YAML aliases (`*{event.anchor}`) are not allowed in policy files",
                event.start_mark,
                "write the value out where it is used",
            )
        if event.anchor is not None:
            raise _Refused(
                f"YAML anchors (`&{event.anchor}`) are not allowed in policy files",
                event.start_mark,
                "write the value out where it is used; aliases can expand without bound",
            )
        nesting: int = getattr(self, "_nesting", 0)  # our own count: any ruamel version
        if nesting >= MAX_YAML_DEPTH:
            raise _Refused(
                f"YAML nests deeper than {MAX_YAML_DEPTH} levels",
                event.start_mark,
                "flatten the structure",
            )
        self._nesting = nesting + 1
        try:
            return super().compose_node(parent, index)
        finally:
            self._nesting = nesting


def _check_scalars(root: Node | None, source: SourceFile) -> None:
    """Refuse strings that no UTF-8 consumer can carry, and undo ruamel's fold marks: its
    round-trip composer marks fold points of ``>`` scalars with BEL, which can never
    appear raw in YAML, so removing them restores the value YAML defines. Iterative: the
    tree is at most MAX_YAML_DEPTH deep, but wide."""
    stack = [root] if root is not None else []
    while stack:
        node = stack.pop()
        if isinstance(node, ScalarNode):
            if node.style == ">" and "\a" in node.value:
                node.value = node.value.replace("\a", "")
            if isinstance(node.value, str) and (found := _SURROGATE.search(node.value)):
                raise SyntaxProblem(
                    f"this string holds a lone surrogate (U+{ord(found.group()):04X}), which "
                    "is not a character",
                    source.node_location(node),
                    "write the character itself, or one \\U escape such as \\U0001F600 "
                    "rather than a \\u pair",
                )
        elif isinstance(node, SequenceNode):
            stack.extend(node.value)
        elif isinstance(node, MappingNode):
            for key, child in node.value:
                stack.extend((key, child))


def _tag(node: Node) -> str:
    tag = node.tag
    if tag is None:
        return ""
    return tag if isinstance(tag, str) else str(tag.value)


def scalar_value(node: ScalarNode) -> Any:
    """The plain value of a scalar under YAML 1.2 core-schema resolution."""
    tag = _tag(node)
    text: str = node.value
    if node.style is not None:  # quoted or block scalars are always strings
        return text
    if tag.endswith(":null"):
        return None
    if tag.endswith(":bool"):
        return text.lower() == "true"
    if tag.endswith(":int"):
        try:
            return int(text.replace("_", ""), 0)
        except ValueError:
            return text
    if tag.endswith(":float"):
        try:
            return Decimal(text.replace("_", ""))
        except InvalidOperation:
            return text
    return text


def plain(node: Node) -> Any:
    """Convert a node tree to Python values (dicts, lists, scalars)."""
    if isinstance(node, ScalarNode):
        return scalar_value(node)
    if isinstance(node, SequenceNode):
        return [plain(n) for n in node.value]
    if isinstance(node, MappingNode):
        return {str(plain(k)): plain(v) for k, v in node.value}
    raise TypeError(f"unsupported YAML node {node!r}")


def closest(word: str, candidates: list[str] | set[str] | tuple[str, ...]) -> str | None:
    """The candidate an author most likely meant, for "did you mean" hints."""
    import difflib

    found = difflib.get_close_matches(word, sorted(candidates), n=1, cutoff=0.6)
    return found[0] if found else None


class Mapping:
    """Typed, located access to a YAML mapping; unknown keys are errors with a suggestion."""

    def __init__(self, node: Node, source: SourceFile, what: str):
        if not isinstance(node, MappingNode):
            raise SyntaxProblem(f"{what} must be a mapping", source.node_location(node))
        self.node = node
        self.source = source
        self.what = what
        self.entries: dict[str, tuple[ScalarNode, Node]] = {}
        for key, value in node.value:
            if not isinstance(key, ScalarNode):
                raise SyntaxProblem(
                    f"keys in {what} must be plain names", source.node_location(key)
                )
            name = str(key.value)
            if name in self.entries:
                raise SyntaxProblem(f"duplicate key `{name}` in {what}", source.node_location(key))
            self.entries[name] = (key, value)

    def allow_only(self, known: set[str]) -> None:
        for name, (key, _) in self.entries.items():
            if name not in known:
                guess = closest(name, known)
                raise SyntaxProblem(
                    f"unknown key `{name}` in {self.what}",
                    self.source.node_location(key),
                    f"did you mean `{guess}`?"
                    if guess
                    else f"known keys: {', '.join(sorted(known))}",
                )

    def has(self, name: str) -> bool:
        return name in self.entries

    def node_of(self, name: str) -> Node | None:
        entry = self.entries.get(name)
        return entry[1] if entry else None

    def key_location(self, name: str) -> Location:
        return self.source.node_location(self.entries[name][0])

    def require(self, name: str) -> Node:
        entry = self.entries.get(name)
        if entry is None:
            raise SyntaxProblem(
                f"{self.what} is missing required key `{name}`",
                self.source.node_location(self.node),
            )
        return entry[1]

    def string(self, name: str, default: str | None = None) -> str | None:
        node = self.node_of(name)
        if node is None:
            return default
        if not isinstance(node, ScalarNode) or _tag(node).endswith(":null"):
            raise SyntaxProblem(f"`{name}` in {self.what} must be a string", self.loc(node))
        return str(node.value)

    def required_string(self, name: str) -> str:
        self.require(name)
        value = self.string(name)
        assert value is not None
        if not value.strip():
            raise SyntaxProblem(
                f"`{name}` in {self.what} must not be empty", self.loc(self.require(name))
            )
        return value

    def string_list(self, name: str) -> tuple[str, ...]:
        node = self.node_of(name)
        if node is None:
            return ()
        if isinstance(node, ScalarNode):
            return (str(node.value),)
        if not isinstance(node, SequenceNode) or not all(
            isinstance(n, ScalarNode) for n in node.value
        ):
            raise SyntaxProblem(
                f"`{name}` in {self.what} must be a list of strings", self.loc(node)
            )
        return tuple(str(n.value) for n in node.value)

    def loc(self, node: Node) -> Location:
        return self.source.node_location(node)
