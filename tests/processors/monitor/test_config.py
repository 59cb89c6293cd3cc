"""The monitor config: defaults, a versioned file, and errors that name the setting."""

from __future__ import annotations

from pathlib import Path

import pytest

from ordinance.processors.monitor.config import MonitorConfig, MonitorConfigError


def test_defaults_and_a_file_round_trip(tmp_path: Path) -> None:
    path = tmp_path / "monitor.yaml"
    path.write_text("version: 1\nwindow_s: 30\ndrift:\n  threshold: 0.1\nlag:\n  max_records: 5\n")
    config = MonitorConfig.from_file(path)
    assert (config.window_s, config.drift.threshold, config.lag.max_records) == (30.0, 0.1, 5)
    assert config.drift.min_samples == MonitorConfig().drift.min_samples
    assert MonitorConfig.from_mapping(config.to_json()) == config


@pytest.mark.parametrize(
    ("raw", "message"),
    [
        ({"version": 2}, "version 2 is not one this monitor reads"),
        ({"windw_s": 5}, "unknown setting(s) windw_s"),
        ({"drift": {"treshold": 0.1}}, "drift: unknown setting(s) treshold"),
        ({"drift": {"threshold": 0}}, "threshold must be between"),
        ({"drift": {"min_samples": 2.5}}, "min_samples must be a whole number"),
        ({"fail_closed": {"fraction": "half"}}, "fraction must be a number"),
        ({"window_s": 120, "baseline_s": 60}, "baseline_s must be at least window_s"),
        ({"silence": 5}, "silence must be a mapping"),
        ([1, 2], "expected a mapping"),
    ],
)
def test_mistakes_are_errors_that_name_the_setting(raw: object, message: str) -> None:
    with pytest.raises(MonitorConfigError) as caught:
        MonitorConfig.from_mapping(raw)
    assert message in str(caught.value)


def test_an_unreadable_file_is_an_error(tmp_path: Path) -> None:
    with pytest.raises(MonitorConfigError, match="cannot read"):
        MonitorConfig.from_file(tmp_path / "missing.yaml")
    bad = tmp_path / "bad.yaml"
    bad.write_text("drift: [unclosed")
    with pytest.raises(MonitorConfigError, match="cannot read"):
        MonitorConfig.from_file(bad)
