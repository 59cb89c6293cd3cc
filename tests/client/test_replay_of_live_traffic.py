"""`replay verify` over what the real pipeline recorded: clean with list arguments.

The regression: every decision with a list argument (``email.send``'s ``to``) was a
``decision_mismatch`` whose recorded and recomputed values printed identically — the
decoded list was compared with the recomputed tuple."""

from __future__ import annotations

from ordinance.client import SyncClient
from ordinance.replay.source import open_source
from ordinance.replay.verify import verify

from .conftest import Pipeline

ANSWER = 10.0


def _mail(agent: str, to: list[str], **extra: object) -> dict[str, object]:
    return {
        "agent": {"id": agent, "team": "ops"},
        "action": {
            "tool": "email.send",
            "args": {"to": to, "subject": "fyi", "body": "x", **extra},
        },
    }


def test_replay_verify_is_clean_over_list_arguments(pipeline: Pipeline) -> None:
    requests = [
        _mail("assistant-1", ["dana@acme.example"]),
        _mail("assistant-1", ["dana@acme.example", "lee@globex.example"], attachments=2),
        _mail("assistant-2", ["dana@acme.example", "someone@gmail.example"], attachments=1),
        _mail("assistant-2", ["dana@acme.example"], cc=["drop@protonmail.example"], attachments=1),
    ]
    with SyncClient(pipeline.url) as client:
        effects = [client.decide(r, timeout=ANSWER).effect for r in requests]
    assert set(effects) >= {"allow", "require_approval"}  # the lists reached the rules
    source, log = open_source(pipeline.url, None)
    try:
        report = verify(source)
    finally:
        if log is not None:
            log.close()
    assert report.decisions >= len(requests)
    assert report.findings == [], [f.message for f in report.findings]
