"""``ordinance schemas``: the wire contract as the installed package knows it.

The Avro schemas live in one place, inside the package (``ordinance/streams/schemas/``,
retired writer versions in ``history/``), so nothing is ever copied by hand. Tools in
other languages get a generated view: ``ordinance schemas --export DIR`` writes the same
files, byte for byte, and the listing names each schema's fingerprint — the 8 bytes after
the ``C3 01`` marker of every record value (docs/log.md).
"""

from __future__ import annotations

import argparse
import json
from collections.abc import Callable
from importlib import resources
from importlib.resources.abc import Traversable
from pathlib import Path
from typing import Any

from rich.markup import escape
from rich.table import Table

from ordinance.commands.output import EXIT_FAILED, EXIT_OK, console, emit_json, report_failure

Command = Callable[[str, str], argparse.ArgumentParser]


def register(command: Command) -> None:
    p = command(
        "schemas",
        "list the Avro wire schemas (current and retired versions, with fingerprints),"
        " or export them for tools in other languages",
    )
    p.add_argument(
        "--export",
        default=None,
        metavar="DIR",
        help="write every .avsc (current, and history/) into DIR, byte for byte",
    )


def run(args: argparse.Namespace) -> int | None:
    if args.command != "schemas":
        return None
    return cmd_schemas(args.export, args.json)


def schema_root() -> Traversable:
    """The one copy of the wire contract: the package's ``streams/schemas``."""
    return resources.files("ordinance.streams").joinpath("schemas")


def _files(root: Traversable) -> list[tuple[str, Traversable]]:
    """(relative path, file) of every schema file, current first, in name order."""
    out = [(p.name, p) for p in root.iterdir() if p.is_file() and p.name.endswith(".avsc")]
    history = root.joinpath("history")
    if history.is_dir():
        out += [
            (f"history/{p.name}", p)
            for p in history.iterdir()
            if p.is_file() and p.name.endswith(".avsc")
        ]
    return sorted(out, key=lambda item: (item[0].startswith("history/"), item[0]))


def schema_listing() -> list[dict[str, Any]]:
    """One row per schema file: record name, path, current or retired, fingerprint."""
    from fastavro import parse_schema

    from ordinance.streams.serde import schema_fingerprint

    rows = []
    for rel, path in _files(schema_root()):
        parsed = parse_schema(json.loads(path.read_text(encoding="utf-8")), named_schemas={})
        assert isinstance(parsed, dict)  # every wire schema is a named record
        rows.append(
            {
                "name": str(parsed["name"]).rsplit(".", 1)[-1],
                "file": rel,
                "current": not rel.startswith("history/"),
                "fingerprint": schema_fingerprint(parsed).hex(),
            }
        )
    return rows


def export_schemas(directory: Path) -> list[str]:
    """Write every schema file under ``directory`` (created), returning what was written."""
    written = []
    for rel, path in _files(schema_root()):
        target = directory / rel
        target.parent.mkdir(parents=True, exist_ok=True)
        target.write_bytes(path.read_bytes())
        written.append(rel)
    return written


def cmd_schemas(export: str | None, as_json: bool) -> int:
    if export is not None:
        try:
            written = export_schemas(Path(export))
        except OSError as exc:
            return report_failure(f"cannot export to {export}: {exc}", as_json, EXIT_FAILED)
        if as_json:
            emit_json({"exported": str(export), "files": written})
        else:
            console().print(f"wrote {len(written)} schema files to {escape(export)}")
        return EXIT_OK
    rows = schema_listing()
    if as_json:
        emit_json({"schemas": rows})
        return EXIT_OK
    table = Table("schema", "file", "fingerprint (hex, as on the wire)")
    for row in rows:
        if row["current"]:
            table.add_row(row["name"], row["file"], row["fingerprint"])
    for row in rows:
        if not row["current"]:
            table.add_row(f"[dim]{row['name']}[/]", f"[dim]{row['file']}[/]", row["fingerprint"])
    console().print(table)
    return EXIT_OK
