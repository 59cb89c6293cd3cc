"""The monitor's dashboard (`GET /`), served and then driven in a real browser: Debian's
chromium under Playwright. The page shows the numbers of `/v1/report`, the open alerts
with their evidence and the canary's arms; strings from the log that carry markup are
shown as text and never run; more decisions show up without a reload; a server that goes
away shows as "disconnected". Skipped only when chromium cannot start here (`.ci/run`
installs it)."""

from __future__ import annotations

import datetime as dt
import json
import os
import re
import shutil
import threading
import time
import tomllib
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from playwright.sync_api import Browser, Page, expect, sync_playwright
from playwright.sync_api import Error as PlaywrightError

from ordinance.processors.controller_loop import run_controller
from ordinance.processors.http_server import HttpServer
from ordinance.processors.monitor.config import MonitorConfig
from ordinance.processors.monitor.dashboard import PAGE, page
from ordinance.processors.monitor.fold import alert_datum
from ordinance.processors.monitor.http import build_app
from ordinance.processors.monitor.runner import AutoRollback, Monitor
from ordinance.processors.policy_log import publish_bundle
from ordinance.streams import Log, open_log
from tests.processors.http_client import http_get
from tests.processors.monitor.helpers import (
    T0,
    armed,
    canary_swap,
    decision,
    write_decisions,
    write_records,
)
from tests.processors.test_rollout import (
    BUNDLE_ID,
    CANDIDATE_FILES,
    FILES,
    _change,
    _enforce,
    _send,
)
from tests.processors.test_rollout import CANDIDATE as ROLLOUT_CANDIDATE
from tests.processors.test_rollout import T0 as ROLLOUT_T0

CHROMIUM = "/usr/bin/chromium"
CHROMIUM_ARGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
]
CANDIDATE = "sha256:" + "cd" * 32
# Strings an agent (or whoever writes the log) controls, each of which would set
# window.__pwned if the page ever parsed it as HTML.
HOSTILE_TOOL = '<img src=x onerror="window.__pwned=1">'
HOSTILE_TOOL_2 = "<script>window.__pwned=2</script>"
HOSTILE_MESSAGE = 'denied <img src=x onerror="window.__pwned=3"> <script>window.__pwned=4</script>'
HOSTILE_ALERT_ID = "drift:99:0"


def artifact(name: str) -> Path:
    """Where a screenshot is left for people to look at after the run (CI keeps the
    clone's build/test-artifacts/; $ORDINANCE_TEST_ARTIFACTS moves it)."""
    default = Path(__file__).resolve().parents[3] / "build" / "test-artifacts"
    directory = Path(os.environ.get("ORDINANCE_TEST_ARTIFACTS") or default)
    directory.mkdir(parents=True, exist_ok=True)
    return directory / name


# -- the page as served (no browser) ----------------------------------------------


def test_the_page_is_self_contained_and_served_with_a_strict_policy(tmp_path: Path) -> None:
    with open_log(f"sqlite:///{tmp_path / 'log.db'}") as log:
        monitor = Monitor(log, read_only=True)
        server = HttpServer(build_app(monitor), "127.0.0.1", 0)
        server.start()
        try:
            base = f"http://127.0.0.1:{server.bound_port}"
            with urllib.request.urlopen(base + "/", timeout=10) as response:
                headers = dict(response.headers)
                body = response.read()
            again = http_get(base + "/dashboard")
        finally:
            server.stop()
    html = body.decode()
    assert again == (200, body)
    assert headers["content-type"].startswith("text/html")
    assert body == page()[0]  # the packaged file, read with importlib.resources
    policy = headers["content-security-policy"]
    assert "default-src 'none'" in policy and "connect-src 'self'" in policy
    assert "require-trusted-types-for 'script'" in policy
    assert "unsafe-inline" not in policy and "unsafe-eval" not in policy
    assert len(re.findall(r"'sha256-[A-Za-z0-9+/=]+'", policy)) == 2  # its script and style
    # Nothing loaded from anywhere: no src/href, no URL but the report's, no HTML sink.
    assert not re.search(r"\b(src|href)\s*=", html)
    assert "http://" not in html and "https://" not in html and "//cdn" not in html
    assert not re.search(r"innerHTML|outerHTML|insertAdjacentHTML|document\.write", html)
    assert PAGE == "dashboard.html"


def test_a_packaged_install_ships_the_page() -> None:
    """setuptools copies only the package data pyproject names; a wheel without the page
    would answer / with a 500 (checked by building a wheel once: the page is in it)."""
    pyproject = tomllib.loads((Path(__file__).parents[3] / "pyproject.toml").read_text())
    data = pyproject["tool"]["setuptools"]["package-data"]
    assert PAGE in data["ordinance.processors.monitor"]


# -- in the browser -------------------------------------------------------------------


@pytest.fixture(scope="module")
def browser() -> Iterator[Browser]:
    if shutil.which(CHROMIUM) is None:
        pytest.skip(f"{CHROMIUM} is missing: apt-get install -y chromium (.ci/run does)")
    with sync_playwright() as playwright:
        try:
            chromium = playwright.chromium.launch(
                executable_path=CHROMIUM, args=CHROMIUM_ARGS, timeout=30_000
            )
        except PlaywrightError as exc:
            pytest.skip(f"{CHROMIUM} cannot start here: {exc}")
        try:
            yield chromium
        finally:
            chromium.close()


def _traffic() -> tuple[list[tuple[str, dict[str, Any]]], int]:
    """A canary of CANDIDATE that regresses (its arm denies half, control one in 32),
    shadow disagreements, fail-closed denies, approvals, and tools named with markup."""
    records: list[tuple[str, dict[str, Any]]] = [
        ("RulesetSwap", canary_swap(CANDIDATE, percent=20))
    ]
    for n in range(400):
        arm = "canary" if n % 5 == 0 else "control"
        deny = (n // 5) % 2 == 0 if arm == "canary" else n % 40 == 1
        records.append(("Decision", armed(n, arm, deny, CANDIDATE)))
    at = T0 + dt.timedelta(seconds=400)
    for n, tool in enumerate([HOSTILE_TOOL, HOSTILE_TOOL, HOSTILE_TOOL_2]):
        denied = decision(1000 + n, at=at, effect="deny", tool=tool)
        denied["reasons"] = [HOSTILE_MESSAGE]  # shown among the recent denials, as text
        records.append(("Decision", denied))
    for n in range(4):
        shadowed = decision(2000 + n, at=at)
        shadowed["shadow"] = {
            "bundle_id": CANDIDATE,
            "effect": "deny",
            "rule_ids": [],
            "code": "matched",
            "detail": "",
        }
        records.append(("Decision", shadowed))
    for n in range(2):
        records.append(
            ("Decision", decision(3000 + n, at=at, effect="deny", code="no_ruleset", tool=""))
        )
    for n in range(5):
        records.append(("Decision", decision(4000 + n, at=at, effect="require_approval")))
    return records, len(records) - 1  # decisions (the swap is no decision)


def _shown(page_: Page) -> dict[str, Any]:
    """What the page shows, read from its DOM (text as rendered; bundle ids in full from
    the cells' data attributes, since the text shortens them)."""
    shown: dict[str, Any] = page_.evaluate(
        """() => {
      const text = (e) => e.textContent;
      const cells = (tr) => [...tr.cells].map((td) =>
        td.dataset.full !== undefined ? td.dataset.full : td.textContent);
      const rows = (id) => [...document.querySelectorAll(`#${id} tbody tr`)]
        .filter((tr) => !tr.querySelector("td.empty")).map(cells);
      const totals = {};
      for (const card of document.querySelectorAll("#totals .card"))
        totals[card.dataset.total] = text(card.querySelector(".value"));
      const canaries = {};
      for (const box of document.querySelectorAll("#canaries .canary"))
        canaries[box.dataset.partition] = [...box.querySelectorAll("tbody tr")].map(cells);
      const alerts = [...document.querySelectorAll("#alerts tbody tr")].map((tr) => ({
        id: tr.dataset.alertId,
        severity: text(tr.querySelector('[data-field="severity"]')),
        kind: text(tr.querySelector('[data-field="kind"]')),
        message: text(tr.querySelector('[data-field="message"]')),
        evidence: Object.fromEntries([...tr.querySelectorAll("dl.evidence dt")].map(
          (dt) => [text(dt), text(dt.nextElementSibling)])),
      }));
      return {
        totals, canaries, alerts,
        decisions: rows("decisions"), arms: rows("arms"), shadow: rows("shadow"),
        timeline: rows("timeline"), denials: rows("denials"),
        lag: rows("lag"), records: text(document.getElementById("records")),
        ready: text(document.getElementById("ready")),
        connection: text(document.getElementById("connection")),
      };
    }"""
    )
    return shown


def _expected(report: dict[str, Any]) -> dict[str, Any]:
    """What the page should show for ``report``."""

    def count(n: int) -> str:
        return f"{n:,}"

    effects = {k: v for k, v in report["totals"].items() if k != "fail_closed"}
    totals = {k: count(v) for k, v in effects.items()}
    totals["all"] = count(sum(effects.values()))
    totals["fail_closed"] = count(report["totals"].get("fail_closed", 0))
    canaries = {}
    for c in report["canaries"]:
        arms = []
        for arm in ("control", "canary"):
            a = c["arms"][arm]
            rate = f"{100 * a['denies'] / a['decisions']:.1f}%" if a["decisions"] else "–"
            arms.append([arm, count(a["decisions"]), count(a["denies"]), rate])
        canaries[str(c["partition"])] = arms
    return {
        "totals": totals,
        "canaries": canaries,
        "decisions": [
            [d["bundle_id"], d["tool"] or "(none)", d["effect"], d["code"], count(d["decisions"])]
            for d in report["decisions"]
        ],
        "arms": [
            [a["arm"], a["bundle_id"], a["effect"], count(a["decisions"])]
            for a in report["arm_decisions"]
        ],
        "shadow": [
            [
                s["bundle_id"],
                s["effect"],
                s["shadow_bundle_id"],
                s["shadow_effect"],
                count(s["decisions"]),
            ]
            for s in report["shadow_disagreements"]
        ],
        "lag": [[g, count(n)] for g, n in sorted(report["lag"].items())],
        "timeline": [_timeline_row(e) for e in reversed(report["timeline"])],
        "denials": [_denial_row(d) for d in report["denials"]],
        "records": count(report["records"]),
        "alerts": [
            {
                "id": a["alert_id"],
                "severity": a["severity"],
                "kind": a["kind"],
                "message": a["message"],
                "evidence": {
                    k: json.dumps(v) if isinstance(v, dict | list) else _as_text(v)
                    for k, v in a["details"].items()
                },
            }
            for a in report["open_alerts"]
        ],
    }


def _clock(iso: str) -> str:
    """An ISO time as the page shows it (HH:MM:SS UTC)."""
    return dt.datetime.fromisoformat(iso).astimezone(dt.UTC).strftime("%H:%M:%S UTC")


def _timeline_row(e: dict[str, Any]) -> list[str]:
    """A timeline entry as the page shows it (newest first)."""
    if e["event"] == "swap":
        event = f"swap: {e['mode']}"
        if e["mode"] == "canary":
            event = f"swap: canary {e['canary_percent']}%"
            event += ", auto-rollback" if e["auto_rollback"] else ""
        parts = e["partitions"]
        details = ("partition " if len(parts) == 1 else "partitions ") + ", ".join(map(str, parts))
        details += f" ({e['swaps']} swaps)" if e["swaps"] > len(parts) else ""
        details += f" · last at {_clock(e['last_at'])}" if e["last_at"] != e["at"] else ""
    else:
        event = {
            "canary_regression": "canary regression alert opened",
            "canary_regression_resolved": "canary regression alert resolved",
            "rolled_back": "rolled back by this monitor",
        }[e["event"]]
        ids = [("for alert " if e["event"] == "rolled_back" else "alert ") + e["alert_id"]]
        ids += [f"closes {e['opened_by']}"] if e.get("opened_by") else []
        if "rollout_policy_offset" in e:
            ids.append(f"ends the rollout of policy offset {e['rollout_policy_offset']}")
        details = e["message"] + " · ".join(ids)
    bundle = e["bundle_id"] if e["event"] == "swap" else ""
    return [
        _clock(e["at"]),
        f"{e['policy_offset']:,}",
        event,
        bundle,
        e.get("candidate_bundle_id") or "",
        details,
    ]


def _denial_row(d: dict[str, Any]) -> list[str]:
    reason = d["reason"] if d["reason"] is not None else d["detail"]
    reason += f" (+{d['reasons'] - 1} more)" if d["reasons"] > 1 else ""
    return [
        _clock(d["at"]),
        d["agent_id"],
        d["tool"] or "(none)",
        d["code"],
        ", ".join(d["rule_ids"]) or "—",
        reason or "—",
        d["bundle_id"] or "",
        d["arm"] or "—",
    ]


def _as_text(value: Any) -> str:
    """A JSON value as the page's textContent writes it (JavaScript's String())."""
    if value is True or value is False:
        return str(value).lower()
    if value is None:
        return ""
    return str(value)


def _matches(
    page_: Page, base: str, timeout: float = 10.0
) -> tuple[dict[str, Any], dict[str, Any]]:
    """Poll until the page shows what the report says (both move while the monitor runs)."""
    deadline = time.monotonic() + timeout
    while True:
        report = json.loads(http_get(base + "/v1/report")[1])
        shown = {k: v for k, v in _shown(page_).items() if k not in ("ready", "connection")}
        if shown == _expected(report) or time.monotonic() > deadline:
            return shown, report
        time.sleep(0.2)


def _run_monitor(log_url: str, stop: threading.Event, ready: list[Monitor]) -> None:
    with open_log(log_url) as log:
        monitor = Monitor(log, check_every_s=0.2)
        ready.append(monitor)
        monitor.run(stop)


def _write(log_url: str, write: Any) -> None:
    with open_log(log_url) as log:
        write(log)


def test_the_dashboard_shows_the_report_live_escapes_the_log_and_says_when_it_is_cut_off(
    browser: Browser, tmp_path: Path
) -> None:
    log_url = f"sqlite:///{tmp_path / 'log.db'}"
    records, decided = _traffic()

    def first(log: Log) -> None:
        write_records(log, records)

    _write(log_url, first)
    stop, started = threading.Event(), list[Monitor]()
    loop = threading.Thread(target=_run_monitor, args=(log_url, stop, started), daemon=True)
    loop.start()
    deadline = time.monotonic() + 10
    while not started and time.monotonic() < deadline:
        time.sleep(0.02)
    [monitor] = started
    # An alert whose message and evidence quote hostile log content (the fold's own
    # messages quote at most 19 characters of a bundle id; evidence quotes ids in full).
    with monitor.lock:
        monitor.state.open_alerts[(99, "drift")] = alert_datum(
            HOSTILE_ALERT_ID,
            "drift",
            "warning",
            T0,
            HOSTILE_MESSAGE,
            {"partition": 99, "tool": HOSTILE_TOOL_2},
            HOSTILE_TOOL,
        )
    server = HttpServer(build_app(monitor), "127.0.0.1", 0)
    server.start()
    base = f"http://127.0.0.1:{server.bound_port}"
    context = browser.new_context(viewport={"width": 1400, "height": 1000})
    tab = context.new_page()
    dialogs: list[str] = []
    errors: list[str] = []
    console: list[str] = []
    tab.on("dialog", lambda d: (dialogs.append(d.message), d.dismiss()))
    tab.on("pageerror", lambda e: errors.append(str(e)))
    tab.on("console", lambda m: console.append(m.text) if m.type == "error" else None)
    try:
        tab.goto(base + "/?every=0.5")
        expect(tab.locator("#connection")).to_have_text("connected", timeout=10_000)
        expect(tab.locator("#records")).to_have_text(f"{decided + 1:,}", timeout=10_000)
        shown, report = _matches(tab, base)
        assert shown == _expected(report)
        # The numbers are the traffic's, not merely the page agreeing with itself.
        assert report["totals"] == {
            "allow": 310 + 40 + 4,
            "deny": 10 + 40 + 3 + 2,
            "require_approval": 5,
            "fail_closed": 2,
        }
        assert shown["totals"]["all"] == f"{decided:,}"
        assert shown["canaries"]["0"] == [
            ["control", "320", "10", "3.1%"],
            ["canary", "80", "40", "50.0%"],
        ]
        expect(tab.locator("#ready")).to_have_text("ready")
        expect(tab.locator("#health")).to_have_text("healthy")
        # The canary's regression is an open critical alert with its evidence.
        [regression] = [a for a in shown["alerts"] if a["kind"] == "canary_regression"]
        assert regression["severity"] == "critical"
        assert regression["evidence"]["candidate_bundle_id"] == CANDIDATE
        assert regression["evidence"]["canary_sample"] == "50"  # when it opened
        canary_row = tab.locator("#alerts tr", has_text="canary_regression")
        expect(canary_row).to_be_visible()
        expect(tab.locator("#canaries .canary.regressing")).to_have_count(1)
        # Hostile strings are text: shown verbatim, never parsed, never run.
        [hostile] = [a for a in shown["alerts"] if a["id"] == HOSTILE_ALERT_ID]
        assert hostile["message"] == HOSTILE_MESSAGE
        assert hostile["evidence"]["tool"] == HOSTILE_TOOL_2
        tools = {row[1] for row in shown["decisions"]}
        assert {HOSTILE_TOOL, HOSTILE_TOOL_2} <= tools
        # The latest denials, newest first: the hostile tools' and the fail-closed ones.
        assert [row[2] for row in shown["denials"][:5]] == [
            "(none)",
            "(none)",
            HOSTILE_TOOL_2,
            HOSTILE_TOOL,
            HOSTILE_TOOL,
        ]
        assert shown["denials"][0][3] == "no_ruleset" and len(shown["denials"]) == 50
        assert shown["denials"][2][5] == HOSTILE_MESSAGE
        # The canary's swap and its regression alert, on the timeline.
        assert [row[2] for row in shown["timeline"]] == [
            "canary regression alert opened",
            "swap: canary 20%",
        ]
        expect(tab.get_by_text(HOSTILE_TOOL_2, exact=True).first).to_be_visible()
        expect(tab.get_by_text(HOSTILE_TOOL, exact=True).first).to_be_visible()
        expect(tab.get_by_text(HOSTILE_MESSAGE, exact=True).first).to_be_visible()
        assert tab.locator("img").count() == 0
        assert tab.locator("script").count() == 1  # the page's own
        assert tab.evaluate("window.__pwned") is None
        tab.screenshot(path=str(artifact("dashboard.png")), full_page=True)

        # More decisions: the page follows without a reload.
        later = T0 + dt.timedelta(seconds=500)
        more = [decision(5000 + i, at=later, tool="search.web") for i in range(60)]
        _write(log_url, lambda log: write_decisions(log, more, partition=1))
        expect(tab.locator("#records")).to_have_text(f"{decided + 1 + 60:,}", timeout=10_000)
        expect(tab.locator('#totals [data-total="all"] .value')).to_have_text(f"{decided + 60:,}")
        expect(tab.locator("#decisions td", has_text="search.web")).to_have_count(1)
        shown, report = _matches(tab, base)
        assert shown == _expected(report)
        assert report["totals"]["allow"] == 354 + 60

        # The server goes away: the page says so, and does not pass old numbers off as live.
        server.stop()
        expect(tab.locator("#connection")).to_have_text("disconnected", timeout=10_000)
        expect(tab.locator("#banner")).to_be_visible()
        expect(tab.locator("#banner")).to_contain_text("not current")
        expect(tab.locator("body")).to_have_class("disconnected")
        expect(tab.locator("#ready")).to_have_text("readiness unknown")
        expect(tab.locator("#health")).to_have_text("health unknown")
        tab.screenshot(path=str(artifact("dashboard-disconnected.png")), full_page=True)
        assert dialogs == [] and errors == []
        assert tab.evaluate("window.__pwned") is None
        # Nothing was even blocked by the Content-Security-Policy: nothing tried to run.
        assert not [m for m in console if "Content Security Policy" in m or "Trusted" in m]
        # The policy is in force (the page's script runs, so its hash is right): a string
        # written to an HTML sink throws.
        sink = "() => { try { document.createElement('p').innerHTML = '<b>'; return 'written' }"
        sink += " catch (e) { return e.name } }"
        assert tab.evaluate(sink) == "TypeError"
    finally:
        context.close()
        server.stop()
        stop.set()
        loop.join(timeout=10)


# -- an automatic rollback, end to end ----------------------------------------------------


def _timeline_events(page_: Page) -> list[str]:
    """The timeline's events as the page lists them, oldest first."""
    events: list[str] = page_.evaluate(
        """() => [...document.querySelectorAll("#timeline tbody tr[data-event]")]
          .map((tr) => tr.dataset.event).reverse()"""
    )
    return events


def test_the_dashboard_shows_a_canary_regression_and_the_rollback_the_monitor_wrote(
    browser: Browser, tmp_path: Path
) -> None:
    """The example policies stable, a candidate that denies the transfers they allow in a
    50 % canary with automatic rollback: the page shows the regression alert, the
    rollback on the timeline beside the swaps, and — once the controller ran and more
    traffic was enforced — the canary gone and the alert resolved."""
    url = f"sqlite:///{tmp_path / 'log.db'}"
    with open_log(url) as log:
        publish_bundle(log, FILES, BUNDLE_ID, actor="test", clock=lambda: ROLLOUT_T0)
        publish_bundle(
            log,
            CANDIDATE_FILES,
            ROLLOUT_CANDIDATE,
            actor="test",
            enforce=False,
            clock=lambda: ROLLOUT_T0,
        )
        run_controller(log, once=True, clock=lambda: ROLLOUT_T0)
    _change(
        url, "canary", ROLLOUT_CANDIDATE, target="default", canary_percent=50, auto_rollback=True
    )
    config = MonitorConfig.from_mapping({"canary": {"min_samples": 5}})
    stop, started = threading.Event(), list[Monitor]()

    def run_monitor() -> None:
        with open_log(url) as log:
            monitor = Monitor(
                log,
                config=config,
                clock=lambda: ROLLOUT_T0 + 700,
                check_every_s=0.5,
                auto_rollback=AutoRollback("monitor-bot", None, "default"),
            )
            started.append(monitor)
            monitor.run(stop)

    loop = threading.Thread(target=run_monitor, daemon=True)
    loop.start()
    deadline = time.monotonic() + 10
    while not started and time.monotonic() < deadline:
        time.sleep(0.02)
    [monitor] = started
    server = HttpServer(build_app(monitor), "127.0.0.1", 0)
    server.start()
    context = browser.new_context(viewport={"width": 1400, "height": 1000})
    tab = context.new_page()
    errors: list[str] = []
    tab.on("pageerror", lambda e: errors.append(str(e)))
    try:
        tab.goto(f"http://127.0.0.1:{server.bound_port}/?every=0.5")
        expect(tab.locator("#connection")).to_have_text("connected", timeout=10_000)
        for round_ in range(4):  # the candidate denies every one of these; control allows
            _send(url, f"r{round_}", round_)
        _enforce(url)

        # The regression: an open critical alert, the canary outlined, and the rollback
        # the monitor wrote on the timeline right after the alert it answers.
        # (one alert per partition that saw the regression; one rollback for the rollout)
        regression = tab.locator("#alerts tbody tr", has_text="canary_regression").first
        expect(regression).to_be_visible(timeout=15_000)
        expect(regression.locator('[data-field="severity"]')).to_have_text("critical")
        expect(tab.locator("#canaries .canary.regressing")).not_to_have_count(0)
        rolled_back = tab.locator('#timeline tr[data-event="rolled_back"]')
        expect(rolled_back).to_have_count(1, timeout=15_000)
        [rollback] = monitor.rollbacks
        assert rollback["candidate"] == ROLLOUT_CANDIDATE
        expect(rolled_back.locator('[data-field="details"]')).to_contain_text(rollback["alert_id"])
        expect(rolled_back.locator('[data-field="policy_offset"]')).to_have_text(
            f"{rollback['change_offset']:,}"
        )
        expect(tab.locator("#rollbacks tbody tr", has_text=rollback["alert_id"])).to_be_visible()
        events = _timeline_events(tab)
        assert events[-1] == "rolled_back"
        assert "swap" in events[: events.index("canary_regression")]
        # Denials of the canary arm, with the candidate's reason and rule.
        canary_denial = tab.locator("#denials tbody tr", has_text="canary").first
        expect(canary_denial.locator('[data-field="reason"]')).to_have_text(
            "no transfers to NL in the candidate"
        )
        expect(canary_denial.locator('[data-field="rule_ids"]')).to_have_text(
            "canary-candidate/no-nl"
        )
        tab.screenshot(path=str(artifact("rollback-alert.png")), full_page=True)

        # The controller ends the canary; the enforcers swap back on the next traffic.
        with open_log(url) as log:
            run_controller(log, once=True, clock=lambda: ROLLOUT_T0 + 700)
        _send(url, "after", 5)
        _enforce(url)
        expect(tab.locator("#canaries-empty")).to_be_visible(timeout=15_000)
        expect(tab.locator("#canaries .canary")).to_have_count(0)
        expect(tab.locator("#alerts tbody tr", has_text="canary_regression")).to_have_count(0)
        expect(tab.locator("#alert-count")).to_have_text("0")
        resolved = tab.locator('#timeline tr[data-event="canary_regression_resolved"]')
        expect(resolved.first).to_be_visible()
        events = _timeline_events(tab)
        after = events[events.index("rolled_back") :]
        assert after[:2] == ["rolled_back", "swap"] and "canary_regression_resolved" in after
        swap_back = tab.locator('#timeline tr[data-event="swap"]').first  # newest first
        expect(swap_back.locator('[data-field="event"]')).to_have_text("swap: stable")
        expect(swap_back.locator('[data-field="policy_offset"]')).to_have_text(
            f"{rollback['change_offset']:,}"
        )
        tab.screenshot(path=str(artifact("rollback.png")), full_page=True)
        assert errors == []
    finally:
        context.close()
        server.stop()
        stop.set()
        loop.join(timeout=10)
