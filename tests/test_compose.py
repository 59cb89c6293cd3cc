"""docker-compose.yml cannot run here (no Docker), so keep what can be checked checked:
Prometheus scrapes exactly the services that serve --http, on the ports they listen on."""

from __future__ import annotations

from pathlib import Path

from ruamel.yaml import YAML

ROOT = Path(__file__).resolve().parents[1]


def test_prometheus_scrapes_every_service_that_serves_metrics() -> None:
    compose = YAML(typ="safe").load((ROOT / "docker-compose.yml").read_text())
    serving = {}
    for name, service in compose["services"].items():
        command = service.get("command") or []
        if "--http" in command:
            port = command[command.index("--http") + 1].rpartition(":")[2]
            serving[name] = f"{name}:{port}"
            assert f"{port}:{port}" in service.get("ports", []), name
    prometheus = YAML(typ="safe").load((ROOT / "infra" / "prometheus.yml").read_text())
    scraped = {
        t
        for job in prometheus["scrape_configs"]
        for c in job["static_configs"]
        for t in c["targets"]
    }
    assert scraped == set(serving.values()) and len(scraped) == 2
