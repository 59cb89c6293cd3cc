"""A bundle as files: what travels on the log (``PolicyChange.files``, ``PolicyBundle``).

A bundle is a policy directory flattened to ``{relative path: text}``. Compiling the files
gives the same Ruleset — and so the same content-addressed bundle id — as compiling the
directory, which is how the controller and the enforcer verify that a bundle's id matches
its content before anything is enforced.
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path, PurePosixPath

from ordinance.policy.document import Policy, parse_policy
from ordinance.policy.errors import PolicyError, PolicyErrors, SchemaProblem
from ordinance.policy.loader import SCHEMA_FILE, load_policy_set, policy_files
from ordinance.policy.ruleset import Ruleset, compile_ruleset
from ordinance.policy.schema import parse_schema
from ordinance.policy.yamlsrc import SourceFile

BundleFiles = Mapping[str, str]


def read_bundle_dir(directory: Path) -> dict[str, str]:
    """The schema and every policy file, keyed by path relative to ``directory``."""
    load_policy_set(directory)  # the same errors `check` reports, before anything is read
    paths = [directory / SCHEMA_FILE, *policy_files(directory)]
    return {p.relative_to(directory).as_posix(): p.read_text(encoding="utf-8") for p in paths}


def _safe_path(path: str) -> bool:
    pure = PurePosixPath(path)
    return bool(path) and not pure.is_absolute() and ".." not in pure.parts and "\\" not in path


def compile_bundle(files: BundleFiles) -> Ruleset:
    """Compile bundle files; raises :class:`PolicyErrors` naming every problem."""
    errors: list[PolicyError] = []
    for path in files:
        if not _safe_path(path):
            errors.append(
                SchemaProblem(
                    f"bundle path {path!r} is not a plain relative path",
                    SourceFile("", path).location(0, 0),
                )
            )
    schema_text = files.get(SCHEMA_FILE)
    if schema_text is None:
        errors.append(
            SchemaProblem(
                f"the bundle has no {SCHEMA_FILE}", SourceFile("", SCHEMA_FILE).location(0, 0)
            )
        )
    if errors:
        raise PolicyErrors(errors)
    assert schema_text is not None
    try:
        schema = parse_schema(schema_text, SCHEMA_FILE)
    except PolicyError as exc:
        raise PolicyErrors([exc]) from None
    policies: list[Policy] = []
    for path, text in sorted(files.items()):
        if path == SCHEMA_FILE or not path.endswith((".yaml", ".yml")):
            continue
        try:
            policies.append(parse_policy(text, path))
        except PolicyErrors as exc:
            errors.extend(exc.errors)
    if errors:
        raise PolicyErrors(errors)
    return compile_ruleset(schema, policies)
