"""`serve --http`: the enforcer's /metrics, /healthz and /readyz. Ready once a verified
bundle is in force and partitions are owned, not ready again once stopping; the counters
equal what the log holds."""

from __future__ import annotations

import json
import threading
import time
from pathlib import Path
from typing import Any

from prometheus_client.parser import text_string_to_metric_families

from ordinance.cli import main
from ordinance.processors.enforcer import Enforcer
from ordinance.processors.http_server import HttpServer
from ordinance.processors.serve_http import build_serve_app
from ordinance.streams import open_log
from tests.processors.http_client import http_get
from tests.processors.identity_helpers import decisions, intent, send_records, signed
from tests.processors.test_enforcer import EXAMPLES, T0, publish


def test_ready_health_and_counters(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'log.db'}"
    with open_log(url, create=True):
        pass
    stop = threading.Event()
    with open_log(url) as log:
        enforcer = Enforcer(log, clock=lambda: T0, max_clock_skew_s=None)
        stopping = threading.Event()
        server = HttpServer(build_serve_app(enforcer, stopping=stopping), "127.0.0.1", 0)
        server.start()
        base = f"http://127.0.0.1:{server.bound_port}"
        try:
            status, body = http_get(base + "/readyz")
            assert status == 503 and json.loads(body)["ready"] is False  # nothing in force yet
            thread = threading.Thread(target=lambda: enforcer.run(stop=stop))
            thread.start()
            publish(url, EXAMPLES)
            deadline = time.monotonic() + 60
            while http_get(base + "/readyz")[0] != 200 and time.monotonic() < deadline:
                time.sleep(0.1)
            status, body = http_get(base + "/readyz")
            assert status == 200 and json.loads(body)["bundle_id"].startswith("sha256:"), body
            send_records(url, *(signed(intent(f"r{i}", "billing-bot"), None) for i in range(5)))
            while enforcer.report.decided < 5 and time.monotonic() < deadline:
                time.sleep(0.1)
            assert http_get(base + "/healthz")[0] == 200

            def scrape() -> dict[str, Any]:
                text = http_get(base + "/metrics")[1].decode()
                return {f.name: f for f in text_string_to_metric_families(text)}

            # The state's size is noted by the enforcer's loop once a second.
            families = scrape()
            while families["ordinance_enforcer_state_request_ids"].samples[0].value < 5:
                assert time.monotonic() < deadline
                time.sleep(0.2)
                families = scrape()
            stopping.set()  # SIGTERM: not ready while the enforcer finishes and closes
            status, body = http_get(base + "/readyz")
            assert status == 503 and json.loads(body)["stopping"] is True, body
        finally:
            stop.set()
            thread.join(timeout=30)
            server.stop()
    decided = [d for _, _, n, d in decisions(url) if n == "Decision"]
    [sample] = [
        s for s in families["ordinance_enforcer_decided"].samples if s.name.endswith("_total")
    ]
    assert sample.value == len(decided) == 5
    [info] = families["ordinance_enforcer_bundle_info"].samples
    assert info.labels["bundle"] == decided[0]["bundle_id"] and info.value == 1
    # Five request ids remembered; every transfer was allowed, so five window events.
    [ids] = families["ordinance_enforcer_state_request_ids"].samples
    [events] = families["ordinance_enforcer_state_window_events"].samples
    assert (ids.value, events.value) == (5, sum(d["effect"] == "allow" for d in decided))


def test_a_bad_address_is_a_usage_error(tmp_path: Path) -> None:
    assert main(["serve", "--log", f"sqlite:///{tmp_path / 'log.db'}", "--http", "nowhere"]) == 2
