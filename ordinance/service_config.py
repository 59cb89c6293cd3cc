"""One configuration file for the long-running processes: ``serve``, ``monitor`` and
``gateway`` (docs/deploy.md).

```yaml
version: 1
log: kafka://kafka:29092        # shared keys: every process that has the option uses them
prefix: ordinance.
serve:
  http: 0.0.0.0:9464
monitor:
  http: 0.0.0.0:9465
  thresholds: monitor.yaml      # the monitor's thresholds file (its --config)
gateway:
  http: 0.0.0.0:8080
  drain: 5
```

Each process reads its own section and the shared keys at the top (a key in the section
wins over the same key at the top). Every option is also an environment variable: a
section key is ``ORDINANCE_<PROCESS>_<KEY>`` (``ORDINANCE_SERVE_HTTP``,
``ORDINANCE_GATEWAY_MAX_BODY``); a shared key is ``ORDINANCE_<KEY>`` too
(``ORDINANCE_LOG``), the per-process name winning. Precedence: command-line flag >
environment > file > default. The file is named by ``--service-config FILE`` or
``$ORDINANCE_CONFIG`` (``monitor --config`` stays the thresholds file).

The file is checked whole, whichever process reads it: an unknown section or key, or a
value of the wrong kind, is an error naming the key at file:line:column, so a typo never
silently means "the default". Relative paths in the file are relative to the file.

This module is the one schema: the parsers of the three commands take their defaults
from here (`prepare_parser`), and docs/deploy.md's reference is `reference_markdown()`
(a test keeps the two equal).
"""

from __future__ import annotations

import argparse
import math
import os
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Final, Literal

from ordinance.errors import OrdinanceError

CONFIG_ENV: Final = "ORDINANCE_CONFIG"
CONFIG_VERSION: Final = 1
DEFAULT_PREFIX: Final = "ordinance."
MAX_BODY_BYTES: Final = 4 * 1024 * 1024  # identity.http_signing.MAX_SIGNED_BODY_BYTES

Kind = Literal[
    "url", "text", "path", "host_port", "seconds", "seconds_or_off", "duration_or_off", "bytes"
]


class ServiceConfigError(OrdinanceError):
    """The service configuration (file, environment or flags) cannot be used."""


class _Unset:
    def __repr__(self) -> str:
        return "<unset>"


UNSET: Final = _Unset()
"""The argparse default of every option this module resolves: "no flag given"."""


@dataclass(frozen=True)
class Option:
    key: str  # the key in the file; the environment variable's tail
    kind: Kind
    default: Any
    help: str
    dest: str = ""  # the argparse dest, when not the key
    required: bool = False
    low: float = 0.0  # numbers: inclusive bounds (seconds) or 1..high (bytes)
    high: float = float("inf")
    low_open: bool = False  # low itself is not allowed

    @property
    def attr(self) -> str:
        return self.dest or self.key

    @property
    def flag(self) -> str:
        return "--" + self.attr.replace("_", "-")


_LOG = Option("log", "url", None, "the log: sqlite:///path.db or kafka://host:port", required=True)
_PREFIX = Option("prefix", "text", DEFAULT_PREFIX, "topic name prefix (one per environment)")
_TARGET = Option("target", "text", "default", "deployment target")
_TRUST = Option(
    "trust",
    "path",
    None,
    "trust file: accept only signed, authorised policy changes (also $ORDINANCE_TRUST)",
)

SHARED_KEYS: Final = ("log", "prefix", "target", "trust")
"""Keys that may stand at the top of the file for every process that has the option."""

PROCESSES: Final[dict[str, tuple[Option, ...]]] = {
    "serve": (
        _LOG,
        _PREFIX,
        Option(_TARGET.key, "text", "default", "deployment target whose bundle to enforce"),
        _TRUST,
        Option("enforcer_id", "text", None, "stable name of this enforcer (default: random)"),
        Option("mask_config", "path", None, "masking file: arguments stored as keyed hashes"),
        Option("signing_key", "path", None, "run the audit checkpointer with this Ed25519 key"),
        Option(
            "controller_key",
            "path",
            None,
            "with trust: the controller signs policy.active with this key (its registry principal)",
        ),
        Option(
            "controller_id",
            "text",
            "policy-controller",
            "the registry principal (role policy-controller) controller_key belongs to",
        ),
        Option(
            "state_dir",
            "path",
            None,
            "RocksDB state cache directory: incremental snapshots, so a restart folds only the"
            ' tail (docs/log.md, "The state cache")',
        ),
        Option(
            "max_clock_skew",
            "seconds_or_off",
            300.0,
            "deny an action whose event time is further than this from the clock; off: no bound",
        ),
        Option(
            "dedupe_horizon",
            "duration_or_off",
            7 * 86400.0,
            "how long request ids and window history are remembered (7d, 12h; off: forever)",
        ),
        Option("http", "host_port", None, "serve /metrics, /healthz and /readyz here"),
    ),
    "monitor": (
        _LOG,
        _PREFIX,
        Option(_TARGET.key, "text", "default", "the deployment target rollbacks name"),
        Option("http", "host_port", None, "serve the dashboard, /metrics, /healthz, /readyz"),
        Option(
            "thresholds",
            "path",
            None,
            "the monitor's thresholds file (docs/monitor.md; the flag is --config)",
            dest="config",
        ),
        Option(
            "rollback_actor", "text", None, "roll back --auto-rollback canaries as this principal"
        ),
        Option("key", "path", None, "sign rollbacks with this key (also $ORDINANCE_KEY)"),
    ),
    "gateway": (
        _LOG,
        _PREFIX,
        Option("http", "host_port", None, "where the decision API listens", required=True),
        Option(
            "timeout",
            "seconds",
            5.0,
            "how long a decide waits for the enforcer before denying",
            low=0.0,
            high=600.0,
            low_open=True,
        ),
        Option(
            "max_body",
            "bytes",
            1024 * 1024,
            "largest request body accepted (413 beyond)",
            low=1,
            high=MAX_BODY_BYTES,
        ),
        Option(
            "drain",
            "seconds",
            0.0,
            "on SIGTERM: seconds /readyz answers 503 while requests are still served",
            high=300.0,
        ),
    ),
}


def options(process: str) -> tuple[Option, ...]:
    return PROCESSES[process]


def env_names(process: str, option: Option) -> list[str]:
    """The environment variables for one option, the one that wins first."""
    key = option.key.upper()
    names = [f"ORDINANCE_{process.upper()}_{key}"]
    if option.key in SHARED_KEYS:
        names.append(f"ORDINANCE_{key}")
    return names


# -- values ----------------------------------------------------------------------------


def skew_seconds(text: str) -> float | None:
    """Seconds >= 0 (finite), or ``off`` (None). ValueError otherwise."""
    if text.strip().lower() == "off":
        return None
    try:
        seconds = float(text)
    except ValueError:
        raise ValueError(f"not a number of seconds or 'off': {text!r}") from None
    if not seconds >= 0 or seconds == float("inf"):
        raise ValueError(f"must be a finite number of seconds >= 0: {text!r}")
    return seconds


def horizon_seconds(text: str) -> float | None:
    """A duration such as ``7d`` or ``90m``, or ``off`` (None). ValueError otherwise."""
    from ordinance.policy.typecheck import parse_duration

    if text.strip().lower() == "off":
        return None
    seconds = parse_duration(text.strip())
    if seconds is None:
        raise ValueError(f"not a duration such as 7d, 12h, 90m or 'off': {text!r}")
    return float(seconds)


def convert(option: Option, value: Any, *, text: bool, base: Path | None = None) -> Any:
    """One value for ``option``: from the environment (``text``) or from YAML. Paths from
    a file are made relative to its directory ``base``. ValueError says what is wrong."""
    kind = option.kind
    if kind in ("url", "text", "path", "host_port"):
        if not isinstance(value, str) or not value.strip():
            what = "HOST:PORT" if kind == "host_port" else "a non-empty string"
            raise ValueError(f"must be {what}, not {value!r}")
        if kind == "host_port":
            from ordinance.processors.http_server import host_port

            host_port(value)  # only checked: the commands parse HOST:PORT themselves
        if kind == "path" and base is not None:
            return str(base / Path(value).expanduser())
        return value
    if kind == "seconds_or_off":
        return skew_seconds(value if text or isinstance(value, str) else _number(value))
    if kind == "duration_or_off":
        if not text and not isinstance(value, str):
            seconds = float(_number(value))
            if seconds <= 0:
                raise ValueError(f"must be a positive number of seconds, not {value!r}")
            return seconds
        return horizon_seconds(value)
    number = _parse_number(value, text, whole=kind == "bytes")
    low_ok = number > option.low if option.low_open else number >= option.low
    if not low_ok or number > option.high:
        bound = "<" if option.low_open else "<="
        low, high = _plain(option.low), _plain(option.high)
        raise ValueError(f"wants {low} {bound} value <= {high}, not {value!r}")
    return number


def _plain(bound: float) -> str:
    return str(int(bound)) if float(bound).is_integer() else str(bound)


def _number(value: Any) -> str:
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise ValueError(f"must be a number, not {value!r}")
    return str(value)


def _parse_number(value: Any, text: bool, *, whole: bool) -> float | int:
    if text:
        try:
            return int(value) if whole else float(value)
        except ValueError:
            kind = "a whole number" if whole else "a number"
            raise ValueError(f"must be {kind}, not {value!r}") from None
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise ValueError(f"must be a number, not {value!r}")
    if whole:
        if not isinstance(value, int):
            raise ValueError(f"must be a whole number, not {value!r}")
        return value
    if not math.isfinite(value):
        raise ValueError(f"must be a finite number, not {value!r}")
    return float(value)


# -- the file --------------------------------------------------------------------------


@dataclass(frozen=True)
class ServiceFile:
    """A checked configuration file: every value already converted."""

    path: Path
    shared: Mapping[str, Any]
    sections: Mapping[str, Mapping[str, Any]]

    def lookup(self, process: str, key: str) -> Any:
        section = self.sections.get(process, {})
        if key in section:
            return section[key]
        if key in SHARED_KEYS and key in self.shared:
            return self.shared[key]
        return UNSET


def _shared_option(key: str) -> Option:
    for opts in PROCESSES.values():
        for option in opts:
            if option.key == key:
                return option
    raise AssertionError(key)


def load_file(path: Path) -> ServiceFile:
    """Read and check the whole file. ServiceConfigError names the key and its place."""
    from ruamel.yaml import YAML
    from ruamel.yaml.comments import CommentedMap
    from ruamel.yaml.error import YAMLError

    try:
        raw = YAML(typ="rt").load(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError) as exc:
        raise ServiceConfigError(f"{path}: cannot read the service config ({exc})") from exc
    except YAMLError as exc:
        raise ServiceConfigError(f"{path}: not YAML: {exc}") from exc
    if raw is None:
        raw = CommentedMap()
    if not isinstance(raw, CommentedMap):
        raise ServiceConfigError(f"{path}:1:1: expected a mapping of settings")
    base = path.parent

    def where(mapping: Any, key: Any, value: bool = False) -> str:
        try:
            line, col = mapping.lc.value(key) if value else mapping.lc.key(key)
        except (KeyError, TypeError, AttributeError):
            return str(path)
        return f"{path}:{line + 1}:{col + 1}"

    def checked(mapping: Any, key: str, option: Option, scope: str) -> Any:
        try:
            return convert(option, mapping[key], text=False, base=base)
        except ValueError as exc:
            raise ServiceConfigError(f"{where(mapping, key, True)}: {scope}{key}: {exc}") from None

    shared: dict[str, Any] = {}
    sections: dict[str, dict[str, Any]] = {}
    known_top = ("version", *SHARED_KEYS, *PROCESSES)
    for key in raw:
        if key not in known_top:
            raise ServiceConfigError(
                f"{where(raw, key)}: unknown key {key!r}; known at the top: {', '.join(known_top)}"
            )
        if key == "version":
            if raw[key] != CONFIG_VERSION:
                raise ServiceConfigError(
                    f"{where(raw, key, True)}: version {raw[key]!r} is not one this Ordinance"
                    f" reads ({CONFIG_VERSION})"
                )
        elif key in SHARED_KEYS:
            shared[key] = checked(raw, key, _shared_option(key), "")
        else:
            section = raw[key]
            if section is None:
                section = CommentedMap()
            if not isinstance(section, CommentedMap):
                raise ServiceConfigError(f"{where(raw, key, True)}: {key} must be a mapping")
            by_key = {option.key: option for option in PROCESSES[key]}
            values: dict[str, Any] = {}
            for name in section:
                if name not in by_key:
                    raise ServiceConfigError(
                        f"{where(section, name)}: unknown key {key}.{name!s}; known in {key}:"
                        f" {', '.join(by_key)}"
                    )
                values[name] = checked(section, name, by_key[name], f"{key}.")
            sections[key] = values
    return ServiceFile(path, shared, sections)


# -- the command line ------------------------------------------------------------------


def prepare_parser(parser: argparse.ArgumentParser, process: str) -> None:
    """Add ``--service-config`` and make every option this module resolves default to
    UNSET (and not required), so `resolve` can tell a flag from its absence."""
    parser.add_argument(
        "--service-config",
        default=None,
        metavar="FILE",
        help=f"the service config file (default ${CONFIG_ENV}; docs/deploy.md): flags win"
        " over ORDINANCE_* variables, which win over the file",
    )
    dests = {option.attr for option in PROCESSES[process]}
    for action in parser._actions:
        if action.dest in dests:
            action.required = False
    parser.set_defaults(**dict.fromkeys(dests, UNSET))


def resolve(
    process: str, args: argparse.Namespace, environ: Mapping[str, str] | None = None
) -> argparse.Namespace:
    """Fill every option not given as a flag: from the environment, then the file, then
    the default. ServiceConfigError when a value is wrong or a required one is missing."""
    env = os.environ if environ is None else environ
    named = getattr(args, "service_config", None) or env.get(CONFIG_ENV) or None
    loaded = load_file(Path(named)) if named else None
    for option in PROCESSES[process]:
        if getattr(args, option.attr, UNSET) is not UNSET:
            continue
        value: Any = UNSET
        for name in env_names(process, option):
            text = env.get(name, "")
            if text:  # an empty variable counts as unset
                try:
                    value = convert(option, text, text=True)
                except ValueError as exc:
                    raise ServiceConfigError(f"${name}: {exc}") from None
                break
        if value is UNSET and loaded is not None:
            value = loaded.lookup(process, option.key)
        if value is UNSET:
            if option.required:
                raise ServiceConfigError(
                    f"{process} needs {option.key}: give {option.flag}, "
                    f"${env_names(process, option)[-1]} or {option.key}: in the service config"
                )
            value = option.default
        setattr(args, option.attr, value)
    return args


# -- documentation ---------------------------------------------------------------------


def _default_text(option: Option) -> str:
    if option.required:
        return "required"
    if option.default is None:
        if option.kind in ("seconds_or_off", "duration_or_off"):
            return "off"
        return "—"
    if option.kind == "duration_or_off" and option.default == 7 * 86400.0:
        return "7d"
    if isinstance(option.default, float) and option.default.is_integer():
        return str(int(option.default))
    return str(option.default)


def reference_markdown() -> str:
    """The reference table of docs/deploy.md, generated from the schema above."""
    lines = [
        "| section | key | flag | environment | kind | default | what |",
        "|---|---|---|---|---|---|---|",
    ]
    for process, opts in PROCESSES.items():
        for option in opts:
            shared = " (shared)" if option.key in SHARED_KEYS else ""
            envs = ", ".join(f"`{name}`" for name in env_names(process, option))
            lines.append(
                f"| `{process}` | `{option.key}`{shared} | `{option.flag}` | {envs} |"
                f" {option.kind} | {_default_text(option)} | {option.help} |"
            )
    return "\n".join(lines) + "\n"


if __name__ == "__main__":
    print(reference_markdown(), end="")
