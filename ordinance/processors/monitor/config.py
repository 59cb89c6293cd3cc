"""The monitor's thresholds: one versioned file, every knob named, every value checked.

```yaml
version: 1
window_s: 60            # the observed window (by decision evaluation time)
baseline_s: 900         # the trailing baseline right before it
drift:
  min_samples: 50       # decisions in the window before a rate is judged
  min_baseline: 200     # and in the baseline
  threshold: 0.2        # |deny rate - baseline deny rate| that counts as drift
  alpha: 0.001          # two-proportion z-test: the change must be this unlikely by chance
fail_closed:
  min_count: 20         # fail-closed denies in the window before it is a spike
  fraction: 0.5         # of all decisions in the window
canary:
  min_samples: 50       # decisions in each arm before the arms are compared
  threshold: 0.1        # canary deny rate - control deny rate that counts as a regression
  alpha: 0.001          # one-sided z-test; spent over the looks (m, 2m, 4m... canary decisions)
silence:
  after_s: 30           # actions waiting this long with no decision: the enforcer is silent
lag:
  max_records: 10000    # a processor group this far behind its input is lagging
```

Absent keys take these defaults; unknown keys and out-of-range values are errors that
name the key, so a typo never silently means "the default".
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field, fields
from pathlib import Path
from typing import Any

from ruamel.yaml import YAML
from ruamel.yaml.error import YAMLError

from ordinance.errors import OrdinanceError

CONFIG_VERSION = 1


class MonitorConfigError(OrdinanceError):
    """The monitor configuration cannot be used."""


@dataclass(frozen=True)
class Drift:
    min_samples: int = 50
    min_baseline: int = 200
    threshold: float = 0.2
    alpha: float = 0.001


@dataclass(frozen=True)
class FailClosed:
    min_count: int = 20
    fraction: float = 0.5


@dataclass(frozen=True)
class Canary:
    min_samples: int = 50
    threshold: float = 0.1
    alpha: float = 0.001


@dataclass(frozen=True)
class Silence:
    after_s: float = 30.0


@dataclass(frozen=True)
class Lag:
    max_records: int = 10_000


@dataclass(frozen=True)
class MonitorConfig:
    version: int = CONFIG_VERSION
    window_s: float = 60.0
    baseline_s: float = 900.0
    drift: Drift = field(default_factory=Drift)
    fail_closed: FailClosed = field(default_factory=FailClosed)
    canary: Canary = field(default_factory=Canary)
    silence: Silence = field(default_factory=Silence)
    lag: Lag = field(default_factory=Lag)

    def to_json(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_file(cls, path: Path) -> MonitorConfig:
        try:
            raw = YAML(typ="safe").load(path.read_text(encoding="utf-8"))
        except (OSError, YAMLError, UnicodeDecodeError) as exc:
            raise MonitorConfigError(f"{path}: cannot read the monitor config ({exc})") from exc
        return cls.from_mapping(raw if raw is not None else {}, str(path))

    @classmethod
    def from_mapping(cls, raw: Any, where: str = "monitor config") -> MonitorConfig:
        if not isinstance(raw, dict):
            raise MonitorConfigError(f"{where}: expected a mapping of settings")
        version = raw.get("version", CONFIG_VERSION)
        if version != CONFIG_VERSION:
            raise MonitorConfigError(
                f"{where}: version {version!r} is not one this monitor reads ({CONFIG_VERSION})"
            )
        top: MonitorConfig = _build(cls, raw, where, nested=_SECTIONS)
        if top.baseline_s < top.window_s:
            raise MonitorConfigError(f"{where}: baseline_s must be at least window_s")
        return top


_SECTIONS: dict[str, type] = {
    "drift": Drift,
    "fail_closed": FailClosed,
    "canary": Canary,
    "silence": Silence,
    "lag": Lag,
}
# (lowest, highest) allowed, inclusive; fractions and probabilities within (0, 1].
_RANGES: dict[str, tuple[float, float]] = {
    "window_s": (1, 86_400),
    "baseline_s": (1, 30 * 86_400),
    "min_samples": (1, 10**9),
    "min_baseline": (1, 10**9),
    "threshold": (1e-9, 1),
    "alpha": (1e-12, 0.5),
    "min_count": (1, 10**9),
    "fraction": (1e-9, 1),
    "after_s": (0.1, 86_400),
    "max_records": (1, 10**12),
}


def _build(kind: type, raw: dict[str, Any], where: str, nested: dict[str, type]) -> Any:
    known = {f.name: f for f in fields(kind)}
    unknown = sorted(set(raw) - set(known))
    if unknown:
        raise MonitorConfigError(
            f"{where}: unknown setting(s) {', '.join(unknown)}; known: {', '.join(known)}"
        )
    values: dict[str, Any] = {}
    for name, value in raw.items():
        if name == "version":
            values[name] = value
        elif name in nested:
            if not isinstance(value, dict):
                raise MonitorConfigError(f"{where}: {name} must be a mapping")
            values[name] = _build(nested[name], value, f"{where}: {name}", {})
        else:
            values[name] = _number(name, value, known[name].type, where)
    return kind(**values)


def _number(name: str, value: Any, declared: Any, where: str) -> float | int:
    integral = declared in (int, "int")
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise MonitorConfigError(f"{where}: {name} must be a number, not {value!r}")
    if integral and not isinstance(value, int):
        raise MonitorConfigError(f"{where}: {name} must be a whole number, not {value!r}")
    low, high = _RANGES[name]
    if not low <= value <= high:
        raise MonitorConfigError(f"{where}: {name} must be between {low:g} and {high:g}")
    return value if integral else float(value)
