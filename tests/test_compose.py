"""docker-compose.yml and infra/Dockerfile cannot run here (no Docker), so keep what can be
checked checked: every Ordinance service runs a real command of the image's entry point,
reads the mounted service config, publishes and health-checks the port that config makes
it listen on, stops on SIGTERM with time to drain; Prometheus scrapes exactly the
processes that serve /metrics, on those ports."""

from __future__ import annotations

import argparse
import re
import shlex
import tomllib
from pathlib import Path
from typing import Any

import pytest
from ruamel.yaml import YAML

from ordinance import service_config as sc
from ordinance.cli import build_parser

ROOT = Path(__file__).resolve().parents[1]
PROCESSES = ("serve", "monitor", "gateway")


def compose() -> dict[str, Any]:
    loaded: dict[str, Any] = YAML(typ="safe").load((ROOT / "docker-compose.yml").read_text())
    return loaded


def ordinance_services() -> dict[str, dict[str, Any]]:
    return {
        name: service
        for name, service in compose()["services"].items()
        if service.get("build", {}).get("dockerfile") == "infra/Dockerfile"
    }


def dockerfile() -> dict[str, list[str]]:
    """Each instruction's arguments (JSON form where the Dockerfile uses it)."""
    import json

    text = (ROOT / "infra" / "Dockerfile").read_text()
    text = re.sub(r"\\\n", " ", text)
    found: dict[str, list[str]] = {}
    for raw in text.splitlines():
        line = raw.strip()
        if not line or line.startswith("#"):
            continue
        word, _, rest = line.partition(" ")
        rest = rest.strip()
        value = json.loads(rest) if rest.startswith("[") else shlex.split(rest)
        found.setdefault(word.upper(), []).extend(value)
        found.setdefault(word.upper() + "#lines", []).append(rest)
    return found


def parse(argv: list[str]) -> argparse.Namespace:
    return build_parser().parse_args(argv)


def resolved(name: str, service: dict[str, Any]) -> argparse.Namespace:
    """What the process in this service runs with: its command, its environment, and the
    config file mounted where $ORDINANCE_CONFIG points, read from the repository."""
    args = parse(service["command"])
    env = {k: str(v) for k, v in (service.get("environment") or {}).items()}
    mounts = {
        target: source for source, target, *_ in (v.split(":") for v in service.get("volumes", []))
    }
    assert env[sc.CONFIG_ENV] in mounts, name
    env[sc.CONFIG_ENV] = str(ROOT / mounts[env[sc.CONFIG_ENV]])
    return sc.resolve(args.command, args, env)


def seconds(text: str) -> float:
    match = re.fullmatch(r"(\d+)(s|m)", text)
    assert match, text
    return int(match[1]) * (60 if match[2] == "m" else 1)


def test_the_image_runs_the_ordinance_command_and_its_default_config_is_the_example() -> None:
    instructions = dockerfile()
    scripts = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["scripts"]
    assert instructions["ENTRYPOINT"] == ["ordinance"] and "ordinance" in scripts
    with pytest.raises(SystemExit) as done:  # CMD: arguments to the entry point
        parse(instructions["CMD"])
    assert done.value.code == 0
    for copied in instructions["COPY#lines"]:
        *sources, _target = shlex.split(copied)
        for source in sources:
            assert (ROOT / source).exists(), source
    assert "ORDINANCE_CONFIG=/etc/ordinance/ordinance.yaml" in instructions["ENV"]
    assert "COPY examples/ordinance.yaml /etc/ordinance/ordinance.yaml" in [
        "COPY " + line for line in instructions["COPY#lines"]
    ]
    assert instructions["STOPSIGNAL"] == ["SIGTERM"]


def test_every_ordinance_service_runs_a_real_command() -> None:
    services = ordinance_services()
    commands = {service["command"][0] for service in services.values()}
    assert {"topics", *PROCESSES} <= commands
    for name, service in services.items():
        args = parse(service["command"])  # exits (fails the test) on an unknown flag
        assert args.command == service["command"][0], name


@pytest.mark.parametrize("process", PROCESSES)
def test_each_process_reads_the_mounted_config_and_is_health_checked_on_its_port(
    process: str,
) -> None:
    [(name, service)] = [
        (n, s) for n, s in ordinance_services().items() if s["command"][0] == process
    ]
    args = resolved(name, service)
    assert args.log == "kafka://kafka:29092" and "kafka" in compose()["services"]
    host, _, port = args.http.rpartition(":")
    assert host == "0.0.0.0", "a container must listen beyond its loopback"
    assert f"{port}:{port}" in service["ports"]
    test = service["healthcheck"]["test"]
    assert test[0] == "CMD" and f"http://127.0.0.1:{port}/readyz" in test[-1]
    # graceful stop: SIGTERM, and a grace period beyond the gateway's drain + one decide
    assert service.get("stop_signal", "SIGTERM") == "SIGTERM"
    grace = seconds(service["stop_grace_period"])
    if process == "gateway":
        assert grace > args.drain + args.timeout, (grace, args.drain, args.timeout)
        assert args.drain > 0, "a rolling restart needs /readyz to turn 503 before closing"
    else:
        assert grace >= 10


def test_prometheus_scrapes_every_process_that_serves_metrics() -> None:
    serving = {}
    for name, service in ordinance_services().items():
        if service["command"][0] in ("serve", "monitor"):  # the gateway has no /metrics
            serving[name] = f"{name}:{resolved(name, service).http.rpartition(':')[2]}"
    prometheus = YAML(typ="safe").load((ROOT / "infra" / "prometheus.yml").read_text())
    scraped = {
        t
        for job in prometheus["scrape_configs"]
        for c in job["static_configs"]
        for t in c["targets"]
    }
    assert scraped == set(serving.values()) and len(scraped) == 2
    assert set(compose()["services"]["prometheus"]["depends_on"]) == set(serving)
