"""Policy errors: every one points at file:line:column and shows the line with a caret."""

from __future__ import annotations

from dataclasses import dataclass

from ordinance.errors import OrdinanceError


@dataclass(frozen=True, slots=True)
class Location:
    """A 1-based position in a source file; ``source_line`` is the text of that line."""

    file: str
    line: int
    column: int
    source_line: str = ""
    length: int = 1

    def __str__(self) -> str:
        return f"{self.file}:{self.line}:{self.column}"


UNKNOWN = Location("<unknown>", 0, 0)

_EXCERPT = 100  # characters of a long source line shown on each side of the caret


def _excerpt(line: str, column: int) -> tuple[str, int]:
    """A long line (a hostile 160,000-character condition) shown as a window around
    ``column``, and the caret's column in that window."""
    if len(line) <= 2 * _EXCERPT:
        return line, column
    start = max(0, column - 1 - _EXCERPT)
    end = column - 1 + _EXCERPT
    prefix = "…" if start > 0 else ""
    suffix = "…" if end < len(line) else ""
    return prefix + line[start:end] + suffix, column - start + len(prefix)


class PolicyError(OrdinanceError):
    """A problem in a policy, schema or request document, located in its source."""

    kind = "policy"
    severity = "error"  # a `GradedProblem` may be a warning

    def __init__(self, message: str, location: Location = UNKNOWN, hint: str | None = None):
        super().__init__(message)
        self.message = message
        self.location = location
        self.hint = hint

    def render(self) -> str:
        """The human form: ``file:line:col: kind error: message``, the line, a caret, a hint."""
        loc = self.location
        out = [f"{loc}: {self.kind} {self.severity}: {self.message}"]
        if loc.source_line:
            gutter = f"{loc.line:>5} | "
            text, column = _excerpt(loc.source_line.rstrip("\n"), loc.column)
            out.append(gutter + text)
            length = min(loc.length, len(text) - column + 2)
            caret = "^" + "~" * max(0, length - 1)
            out.append(" " * (len(gutter) + column - 1) + caret)
        if self.hint:
            out.append(f"hint: {self.hint}")
        return "\n".join(out)

    def to_json(self) -> dict[str, object]:
        return {
            "kind": self.kind,
            "message": self.message,
            "file": self.location.file,
            "line": self.location.line,
            "column": self.location.column,
            "hint": self.hint,
        }

    def __str__(self) -> str:
        return self.render()


class GradedProblem(PolicyError):
    """A finding that is a warning or, where the author asks for strictness, an error
    (lint and static checks); its JSON says which."""

    def __init__(self, message: str, location: Location, hint: str | None, severity: str):
        super().__init__(message, location, hint)
        self.severity = severity  # "warning" | "error"

    def to_json(self) -> dict[str, object]:
        return {**super().to_json(), "severity": self.severity}


class SyntaxProblem(PolicyError):
    """Malformed YAML or condition text."""

    kind = "syntax"


class TypeProblem(PolicyError):
    """A condition that does not type-check against the schema."""

    kind = "type"


class SchemaProblem(PolicyError):
    """A malformed schema, or a policy that names something the schema does not know."""

    kind = "schema"


class PolicyErrors(OrdinanceError):
    """Several policy errors found in one pass, so authors fix them all at once."""

    def __init__(self, errors: list[PolicyError]):
        super().__init__("\n\n".join(e.render() for e in errors))
        self.errors = errors
