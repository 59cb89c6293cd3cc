"""Masking: tool arguments the decision log must not hold in clear (docs/audit.md,
"Masking").

A deployment's masking file names the fields and the key::

    key_file: mask.key            # relative to this file; `ordinance keys mask-key`
    fields:
      - action.args.card_number   # on every tool that has the argument
      - payments.*:action.args.iban

Before a Decision is written its masked arguments become
``"hmac-sha256:" + hex(HMAC-SHA256(key, text))``, where ``text`` is the argument's
canonical value as text (strings as they are, numbers in canonical decimal form,
``true``/``false``, lists and maps as canonical JSON). Equal values give equal masks, so
an investigator holding the key can still ask "which decisions involved this card"
(`ordinance audit mask-value`), while the log, its chain and its checkpoints never see
the clear value. The chain covers the stored (masked) bytes, so it verifies as usual.

A masked argument cannot feed ``window.sum``: the window state is a fold of the decision
log, which only holds the mask. An enforcer refuses a bundle that does that.
"""

from __future__ import annotations

import dataclasses
import fnmatch
import hashlib
import hmac
import secrets
from dataclasses import dataclass, field
from decimal import Decimal
from pathlib import Path
from typing import Any

from ruamel.yaml import YAML
from ruamel.yaml.error import YAMLError

from ordinance.errors import OrdinanceError
from ordinance.jsonutil import canonical_json
from ordinance.policy.cel.ast import Call, Ident, Select
from ordinance.policy.ruleset import Ruleset

PREFIX = "hmac-sha256:"
_FIELD = "action.args."


class MaskingError(OrdinanceError):
    """The masking file or its key is missing or malformed."""


def _text(value: Any) -> bytes:
    if isinstance(value, str):
        return value.encode()
    if isinstance(value, bool):
        return b"true" if value else b"false"
    if isinstance(value, int | Decimal):
        return str(value).encode()
    return canonical_json(value)


@dataclass(frozen=True)
class Masking:
    key: bytes = field(repr=False)
    fields: tuple[tuple[str, str], ...]  # (tool glob, argument name)
    _by_tool: dict[str, frozenset[str]] = field(default_factory=dict, compare=False, repr=False)

    def mask(self, value: Any) -> str:
        return PREFIX + hmac.new(self.key, _text(value), hashlib.sha256).hexdigest()

    def masked_args(self, tool: str) -> frozenset[str]:
        found = self._by_tool.get(tool)
        if found is None:
            found = frozenset(name for glob, name in self.fields if fnmatch.fnmatchcase(tool, glob))
            self._by_tool[tool] = found
        return found

    def apply(self, decision: dict[str, Any]) -> None:
        """Mask a Decision datum's arguments in place (before it is folded or written)."""
        names = self.masked_args(decision.get("tool") or "")
        args = decision.get("args")
        if names and args:
            decision["args"] = {k: self.mask(v) if k in names else v for k, v in args.items()}

    def conflicts(self, ruleset: Ruleset) -> list[str]:
        """Rules whose ``window.sum`` sums an argument this masking hides."""
        problems = []
        for compiled in ruleset.rules:
            for name in _summed_args(compiled.rule.condition.expr):
                tools = [t for t in ruleset.programs if name in self.masked_args(t)]
                if tools:
                    problems.append(
                        f"rule {compiled.qualified_id} sums action.args.{name} in a window, "
                        f"but it is masked on {', '.join(sorted(tools))}"
                    )
        return problems

    @classmethod
    def from_file(cls, path: Path) -> Masking:
        try:
            config = YAML(typ="safe").load(path.read_text())
            key_path = path.parent / str(config["key_file"])
            key = bytes.fromhex(key_path.read_text().strip())
            entries = config["fields"]
            if not isinstance(entries, list):
                raise TypeError("fields must be a list")
        except (OSError, YAMLError, KeyError, TypeError, ValueError) as exc:
            raise MaskingError(f"{path}: not a usable masking file ({exc})") from exc
        if len(key) < 16:
            raise MaskingError(f"{key_path}: a mask key needs at least 16 bytes")
        fields = []
        for entry in entries:
            glob, _, spec = str(entry).rpartition(":")
            if not spec.startswith(_FIELD) or "." in spec[len(_FIELD) :]:
                raise MaskingError(
                    f"{path}: {entry!r} is not action.args.NAME or TOOL_GLOB:action.args.NAME"
                )
            fields.append((glob or "*", spec[len(_FIELD) :]))
        return cls(key, tuple(fields))


def generate_key(path: Path) -> None:
    if path.exists():
        raise MaskingError(f"{path} exists; refusing to overwrite a mask key")
    path.parent.mkdir(parents=True, exist_ok=True)
    path.touch(mode=0o600)
    path.write_text(secrets.token_hex(32) + "\n")


def _summed_args(expr: Any) -> set[str]:
    """Argument names summed by ``window.sum`` anywhere in a condition."""
    found: set[str] = set()
    stack = [expr]
    while stack:
        node = stack.pop()
        if isinstance(node, tuple):
            stack.extend(node)
            continue
        if not dataclasses.is_dataclass(node):
            continue
        if (
            isinstance(node, Call)
            and node.name == "sum"
            and isinstance(node.target, Ident)
            and node.target.name == "window"
            and node.args
        ):
            value = node.args[0]
            if (
                isinstance(value, Select)
                and isinstance(value.operand, Select)
                and value.operand.name == "args"
            ):
                found.add(value.name)
        stack.extend(getattr(node, f.name) for f in dataclasses.fields(node))
    return found
