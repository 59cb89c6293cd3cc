"""Load a policy directory: ``schema.yaml`` plus one policy per ``*.yaml`` file below it."""

from __future__ import annotations

from pathlib import Path

from ordinance.policy.document import Policy, parse_policy
from ordinance.policy.errors import PolicyError, PolicyErrors, SchemaProblem
from ordinance.policy.ruleset import Ruleset, compile_ruleset
from ordinance.policy.schema import Schema, parse_schema
from ordinance.policy.yamlsrc import SourceFile

SCHEMA_FILE = "schema.yaml"


def policy_files(directory: Path) -> list[Path]:
    files = [p for ext in ("*.yaml", "*.yml") for p in directory.rglob(ext)]
    return sorted(p for p in files if p.name != SCHEMA_FILE and p.is_file())


def load_policy_set(directory: Path) -> tuple[Schema, list[Policy]]:
    """Parse the schema and every policy; raises :class:`PolicyErrors` with all problems."""
    if not directory.is_dir():
        raise PolicyErrors(
            [
                SchemaProblem(
                    f"{directory} is not a directory", SourceFile("", str(directory)).location(0, 0)
                )
            ]
        )
    errors: list[PolicyError] = []
    schema_path = directory / SCHEMA_FILE
    schema: Schema | None = None
    if not schema_path.is_file():
        errors.append(
            SchemaProblem(
                f"no {SCHEMA_FILE} in {directory}",
                SourceFile("", str(schema_path)).location(0, 0),
                "a policy set needs a schema that types agents, tools, resources and context",
            )
        )
    else:
        try:
            schema = parse_schema(schema_path.read_text(encoding="utf-8"), str(schema_path))
        except PolicyError as exc:
            errors.append(exc)
    policies: list[Policy] = []
    for path in policy_files(directory):
        try:
            policies.append(parse_policy(path.read_text(encoding="utf-8"), str(path)))
        except PolicyErrors as exc:
            errors.extend(exc.errors)
        except UnicodeDecodeError as exc:
            errors.append(
                SchemaProblem(f"not UTF-8 text: {exc}", SourceFile("", str(path)).location(0, 0))
            )
    if errors:
        raise PolicyErrors(errors)
    assert schema is not None
    return schema, policies


def load_ruleset(directory: Path) -> Ruleset:
    schema, policies = load_policy_set(directory)
    return compile_ruleset(schema, policies)
