"""The MCP gateway's mapping file: which upstream tool is which policy tool.

```yaml
version: 1
tools:                      # upstream MCP tool name -> policy tool name
  read_file: fs.read
  write_file: fs.write
  transfer: payments.transfer
unmapped: deny              # a tool not listed above: deny (default) or decide
unmapped_prefix: "mcp."     # with `decide`: the policy tool is prefix + upstream name
```

Tool names are matched exactly (the MCP name the agent sent, byte for byte): a call to
``READ_FILE`` is not a call to ``read_file``. With ``unmapped: deny`` a tool that is not
listed is refused by the gateway itself, never forwarded, and left out of ``tools/list``;
with ``unmapped: decide`` it is put to the policy engine like any other call (and the
policy set's default effect, deny, answers a tool no policy names).

Unknown keys and wrong types are errors that name the key, so a typo never silently
means "the default".
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ruamel.yaml import YAML
from ruamel.yaml.error import YAMLError

from ordinance.errors import OrdinanceError
from ordinance.policy.decision import Effect

MAPPING_VERSION = 1
UNMAPPED_DENY = Effect.DENY
UNMAPPED_DECIDE = "decide"
_KEYS = frozenset({"version", "tools", "unmapped", "unmapped_prefix"})


class MappingError(OrdinanceError):
    """The gateway's mapping file cannot be used."""


@dataclass(frozen=True)
class ToolMapping:
    tools: Mapping[str, str] = field(default_factory=dict)
    unmapped: str = UNMAPPED_DENY
    unmapped_prefix: str = "mcp."

    def policy_tool(self, upstream_name: str) -> str | None:
        """The policy tool an upstream tool call is judged as; None: refused unjudged."""
        mapped = self.tools.get(upstream_name)
        if mapped is not None:
            return mapped
        if self.unmapped == UNMAPPED_DECIDE:
            return self.unmapped_prefix + upstream_name
        return None

    def listed(self, upstream_name: str) -> bool:
        """Whether ``tools/list`` shows the tool: not when every call to it is refused."""
        return self.policy_tool(upstream_name) is not None

    @classmethod
    def from_file(cls, path: Path) -> ToolMapping:
        try:
            raw = YAML(typ="safe").load(path.read_text(encoding="utf-8"))
        except (OSError, YAMLError, UnicodeDecodeError) as exc:
            raise MappingError(f"{path}: cannot read the mapping file ({exc})") from exc
        return cls.from_mapping(raw, str(path))

    @classmethod
    def from_mapping(cls, raw: Any, where: str = "mapping") -> ToolMapping:
        if not isinstance(raw, dict):
            raise MappingError(f"{where}: expected a mapping with a 'tools' section")
        unknown = sorted(str(k) for k in raw if k not in _KEYS)
        if unknown:
            raise MappingError(
                f"{where}: unknown key(s) {', '.join(unknown)} (known: {', '.join(sorted(_KEYS))})"
            )
        version = raw.get("version", MAPPING_VERSION)
        if version != MAPPING_VERSION:
            raise MappingError(
                f"{where}: version {version!r} is not one this gateway reads ({MAPPING_VERSION})"
            )
        tools = raw.get("tools")
        if tools is None:
            tools = {}
        if not isinstance(tools, dict):
            raise MappingError(f"{where}: 'tools' must map upstream tool names to policy tools")
        checked: dict[str, str] = {}
        for upstream, policy in tools.items():
            if not isinstance(upstream, str) or not upstream:
                raise MappingError(f"{where}: tools: {upstream!r} is not an upstream tool name")
            if not isinstance(policy, str) or not policy.strip():
                raise MappingError(
                    f"{where}: tools.{upstream}: expected a policy tool name, got {policy!r}"
                )
            checked[upstream] = policy
        unmapped = raw.get("unmapped", UNMAPPED_DENY)
        if unmapped not in (UNMAPPED_DENY, UNMAPPED_DECIDE):
            raise MappingError(
                f"{where}: unmapped: expected {UNMAPPED_DENY!r} or {UNMAPPED_DECIDE!r},"
                f" got {unmapped!r}"
            )
        prefix = raw.get("unmapped_prefix", "mcp.")
        if not isinstance(prefix, str):
            raise MappingError(f"{where}: unmapped_prefix must be a string, got {prefix!r}")
        if not checked and unmapped == UNMAPPED_DENY:
            raise MappingError(
                f"{where}: no tools are mapped and unmapped tools are denied: every call"
                " would be refused"
            )
        return cls(checked, unmapped, prefix)
