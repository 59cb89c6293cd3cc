"""The replay and policy-history commands on a recorded demo run: JSON forms, exit codes,
offline replay of an exported slice, point-in-time lookups around the hot swap."""

from __future__ import annotations

import datetime as dt
import json
from pathlib import Path
from typing import Any

import pytest

from ordinance.cli import main
from ordinance.commands.demo_pipeline import stricter
from ordinance.replay.times import iso

from .conftest import Recorded, rewrite


def _json(capsys: pytest.CaptureFixture[str], *argv: str, code: int = 0) -> Any:
    capsys.readouterr()
    assert main([*argv, "--json"]) == code
    return json.loads(capsys.readouterr().out)


def _alter_counter(
    recorded: Recorded, tmp_path: Path, index: int = 0
) -> tuple[Path, tuple[int, int]]:
    """Alter the counter input of the index-th allowed fs.read (one finding, nothing cascades)."""
    db = recorded.copy(tmp_path)
    record, _ = [
        (r, d)
        for r, d in recorded.records("agent.decisions")
        if d.name == "Decision" and d.value["tool"] == "fs.read" and d.value["effect"] == "allow"
    ][index]
    rewrite(
        db,
        "agent.decisions",
        record.partition,
        record.offset,
        lambda d: {**d, "args": {"path": "/elsewhere"}},
    )
    return db, (record.partition, record.offset)


def test_verify_json_and_exit_codes(
    recorded: Recorded, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    report = _json(capsys, "replay", "verify", "--log", recorded.url)
    assert report["ok"] and report["findings"] == [] and report["decisions"] > 0
    db, where = _alter_counter(recorded, tmp_path)
    report = _json(capsys, "replay", "verify", "--log", f"sqlite:///{db}", code=1)
    assert [(f["partition"], f["offset"]) for f in report["findings"]] == [where]
    assert report["findings"][0]["differences"]["args"]["recorded"] == {"path": "/elsewhere"}
    assert report["finding_kinds"] == {"decision_mismatch": 1}


def test_an_exported_slice_replays_offline_with_the_same_findings(
    recorded: Recorded, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    db, where = _alter_counter(recorded, tmp_path, -1)  # the last one: inside the window
    url = f"sqlite:///{db}"
    times = sorted(
        d.value["event_time"]
        for _r, d in recorded.records("agent.decisions")
        if d.name == "Decision"
    )
    start = iso(times[len(times) // 3])
    assert start is not None
    out = tmp_path / "slice.avro"
    meta = _json(capsys, "replay", "export", "--log", url, "--from", start, "--out", str(out))
    assert meta["records"] > 0 and out.exists()
    live = _json(capsys, "replay", "verify", "--log", url, "--from", start, code=1)
    db.unlink()  # the auditor has only the file
    offline = _json(capsys, "replay", "verify", "--input", str(out), code=1)
    assert offline["window"]["from"] == live["window"]["from"]
    assert offline["decisions"] == live["decisions"]
    assert offline["findings"] == live["findings"]
    assert [(f["partition"], f["offset"]) for f in offline["findings"]] == [where]


def test_whatif_json_and_html(
    recorded: Recorded, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    html = tmp_path / "report.html"
    report = _json(
        capsys,
        "replay",
        "whatif",
        "--log",
        recorded.url,
        "--bundle",
        recorded.run.new_bundle[7:19],
        "--html",
        str(html),
    )
    # The stricter bundle changes exactly what the old one allowed or escalated to RU.
    assert report["changed"] > 0
    assert {(t["old_effect"], t["new_effect"]) for t in report["transitions"]} <= {
        ("allow", "deny"),
        ("require_approval", "deny"),
    }
    assert all(g["rules"] == "payments-guardrails/block-sanctioned" for g in report["groups"])
    text = html.read_text()
    assert "<svg" in text and "<script" not in text and str(report["changed"]) in text
    directory = tmp_path / "candidate"
    directory.mkdir()
    for path, content in stricter(recorded.files).items():
        (directory / path).write_text(content)
    by_dir = _json(capsys, "replay", "whatif", "--log", recorded.url, "--bundle", str(directory))
    assert by_dir["changed"] == report["changed"]
    _json(
        capsys,
        "replay",
        "whatif",
        "--log",
        recorded.url,
        "--bundle",
        str(directory),
        "--fail-on-change",
        code=5,
    )


def test_usage_errors(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    missing = f"sqlite:///{tmp_path / 'nothing.db'}"
    assert _json(capsys, "replay", "verify", "--log", missing, code=2)["ok"] is False
    assert not (tmp_path / "nothing.db").exists()  # replay never creates a log
    report = _json(capsys, "policy", "at", "yesterday-ish", "--log", missing, code=2)
    assert "error" in report


def test_policy_at_around_the_hot_swap(
    recorded: Recorded, capsys: pytest.CaptureFixture[str]
) -> None:
    history = _json(capsys, "policy", "history", "--log", recorded.url)["events"]
    enforced = [e for e in history if e["event"] == "enforced"]
    assert [e["bundle_id"] for e in enforced] == [recorded.run.old_bundle, recorded.run.new_bundle]
    assert all(e["outcome"] == "accepted" for e in history)
    # The demo's governed path: the publisher publishes, two other people approve, and
    # one of them enforces (the example policies are high impact).
    assert [(e["event"], e["actor"]) for e in history][:4] == [
        ("published", "demo"),
        ("approved", "demo-approver-a"),
        ("approved", "demo-approver-b"),
        ("enforced", "demo-approver-a"),
    ]
    first = dt.datetime.fromisoformat(enforced[0]["at"].replace("Z", "+00:00"))
    second = dt.datetime.fromisoformat(enforced[1]["at"].replace("Z", "+00:00"))
    before = _json(
        capsys, "policy", "at", iso(first - dt.timedelta(seconds=1)) or "", "--log", recorded.url
    )
    assert before["rollouts"] == [] and before["enforcers"] == []
    between = _json(
        capsys, "policy", "at", iso(first + (second - first) / 2) or "", "--log", recorded.url
    )
    assert [r["stable_bundle_id"] for r in between["rollouts"]] == [recorded.run.old_bundle]
    after = _json(capsys, "policy", "at", "now", "--log", recorded.url)
    assert [r["stable_bundle_id"] for r in after["rollouts"]] == [recorded.run.new_bundle]
    assert {e["bundle_id"] for e in after["enforcers"]} == {recorded.run.new_bundle}


def test_policy_show_and_diff(recorded: Recorded, capsys: pytest.CaptureFixture[str]) -> None:
    shown = _json(capsys, "policy", "show", recorded.run.old_bundle[:15], "--log", recorded.url)
    assert shown["content_matches_id"] and "payments-guardrails" in [
        p["policy"] for p in shown["policies"]
    ]
    diff = _json(
        capsys,
        "policy",
        "diff",
        recorded.run.old_bundle,
        recorded.run.new_bundle,
        "--log",
        recorded.url,
    )
    [policy] = diff["policies"]
    [rule] = policy["rules"]
    assert (policy["policy"], rule["rule"], rule["change"]) == (
        "payments-guardrails",
        "block-sanctioned",
        "changed",
    )
    [field] = rule["fields"]
    assert field["field"] == "when" and '"RU"' in field["new"] and '"RU"' not in field["old"]
    capsys.readouterr()
    assert (
        main(
            [
                "policy",
                "diff",
                recorded.run.old_bundle,
                recorded.run.new_bundle,
                "--log",
                recorded.url,
            ]
        )
        == 0
    )
    text = capsys.readouterr().out
    assert "rule block-sanctioned (changed)" in text and "+ when: action.args.country in" in text


def test_worker_processes_give_the_same_reports(
    recorded: Recorded, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    db, where = _alter_counter(recorded, tmp_path, -1)
    url = f"sqlite:///{db}"
    one = _json(capsys, "replay", "verify", "--log", url, code=1)
    two = _json(capsys, "replay", "verify", "--log", url, "--jobs", "2", code=1)
    assert [(f["partition"], f["offset"]) for f in two["findings"]] == [where]
    for report in (one, two):
        del report["seconds"], report["decisions_per_s"], report["bundle_compile_seconds"]
    assert one == two
    out = tmp_path / "all.avro"
    _json(capsys, "replay", "export", "--log", url, "--out", str(out))
    offline = _json(capsys, "replay", "verify", "--input", str(out), "--jobs", "2", code=1)
    assert offline["findings"] == one["findings"]
    bundle = recorded.run.new_bundle
    serial = _json(capsys, "replay", "whatif", "--log", url, "--bundle", bundle)
    forked = _json(capsys, "replay", "whatif", "--log", url, "--bundle", bundle, "--jobs", "2")
    for report in (serial, forked):
        del report["seconds"]
    assert serial == forked and serial["changed"] > 0


def test_the_readable_reports(
    recorded: Recorded, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    db, (partition, offset) = _alter_counter(recorded, tmp_path)
    capsys.readouterr()
    assert main(["replay", "verify", "--log", f"sqlite:///{db}", "--quiet"]) == 1
    text = capsys.readouterr().out
    assert f"decision_mismatch decisions[{partition}]@{offset}" in text
    assert 'args: recorded {"path": "/elsewhere"}' in text
    assert "1 finding(s)" in text and "findings by kind: decision_mismatch 1" in text
    assert (
        main(["replay", "whatif", "--log", recorded.url, "--bundle", recorded.run.new_bundle]) == 0
    )
    text = capsys.readouterr().out
    assert "allow → deny" in text and "payments-guardrails/block-sanctioned" in text
    assert main(["policy", "show", recorded.run.new_bundle, "--log", recorded.url]) == 0
    text = capsys.readouterr().out
    assert "content hashes to its id" in text
    assert 'matches("^/(etc|usr|boot|proc|sys|root)/")' in text  # brackets are not markup
    assert main(["policy", "at", "now", "--log", recorded.url]) == 0
    assert recorded.run.new_bundle in capsys.readouterr().out


def test_replay_and_policy_commands_write_nothing(
    recorded: Recorded, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    import sqlite3

    def snapshot() -> list[tuple[object, ...]]:
        with sqlite3.connect(recorded.db) as conn:
            return (
                conn.execute(
                    "SELECT topic_id, partition, offset, value FROM records ORDER BY 1, 2, 3"
                ).fetchall()
                + conn.execute("SELECT * FROM group_offsets ORDER BY 1, 2, 3").fetchall()
            )

    before = snapshot()
    url = recorded.url
    for argv in (
        ["replay", "verify", "--log", url, "--jobs", "2"],
        ["replay", "whatif", "--log", url, "--bundle", recorded.run.new_bundle],
        ["replay", "export", "--log", url, "--out", str(tmp_path / "s.avro")],
        ["policy", "at", "now", "--log", url],
        ["policy", "history", "--log", url],
        ["policy", "show", recorded.run.old_bundle, "--log", url],
    ):
        _json(capsys, *argv)
    assert snapshot() == before


def test_a_slice_of_one_agent_replays_like_the_log_does_for_that_agent(
    recorded: Recorded, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    out = tmp_path / "agent.avro"
    agent = ["--agent", "billing-bot-2"]
    meta = _json(capsys, "replay", "export", "--log", recorded.url, *agent, "--out", str(out))
    live = _json(capsys, "replay", "verify", "--log", recorded.url, *agent)
    offline = _json(capsys, "replay", "verify", "--input", str(out), *agent)
    assert live["ok"] and offline["ok"] and offline["decisions"] == live["decisions"] > 0
    every = sum(
        1
        for _r, d in recorded.records("agent.decisions")
        if d.name == "Decision" and d.value["agent_id"] == "billing-bot-2"
    )
    assert meta["counts"]["agent.decisions"] < len(recorded.records("agent.decisions"))
    assert live["decisions"] == every


def test_a_slice_replays_only_within_its_window(
    recorded: Recorded, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    times = sorted(
        d.value["event_time"]
        for _r, d in recorded.records("agent.decisions")
        if d.name == "Decision"
    )
    start, later = iso(times[len(times) // 2]), iso(times[3 * len(times) // 4])
    assert start is not None and later is not None
    out = tmp_path / "half.avro"
    _json(capsys, "replay", "export", "--log", recorded.url, "--from", start, "--out", str(out))
    inside = _json(capsys, "replay", "verify", "--input", str(out), "--from", later)
    assert inside["ok"] and inside["window"]["from"] == later
    outside = _json(capsys, "replay", "verify", "--input", str(out), "--from", "0", code=2)
    assert "replay it within that window" in outside["error"]
