"""The adversarial agent both adapter tests drive: what a confused or hostile model sends
through a framework's tool calls, and what Ordinance must answer. The bypass classes are
the ones the example policies' tests and tests/conformance cover — traversal (plain,
percent-encoded, full-width, backslashes), secrets behind ``./`` and ``..``, sanctioned
countries in another case, width or padding, amounts in exponent form, oversized or not a
number, unsupported currencies, cloud metadata URLs, mail addresses hiding a second
recipient — with allowed calls in between, so a guard that refused everything would fail.

The model's arguments are JSON, as a model sends them; the tools declare ``path: str``,
``amount: Decimal`` ... so the framework validates them before the adapter judges them.
"""

from __future__ import annotations

import threading
from typing import Any

PAY = {"currency": "EUR", "iban": "DE89370400440532013000"}

RAN, DENY, APPROVAL = "ran", "deny", "approval"
UNSENDABLE = "unsendable"  # refused by the client before publishing: no wire form
INVALID = "invalid"  # refused by the framework's own validation: never judged, never run

# (tool name the model called, its JSON arguments, what must happen)
SCRIPT: list[tuple[str, dict[str, Any], str]] = [
    ("read_file", {"path": "/workspace/src/main.py"}, RAN),
    ("read_file", {"path": "/workspace/../etc/shadow"}, DENY),
    ("read_file", {"path": "/workspace%2f..%2fetc%2fpasswd"}, DENY),
    ("read_file", {"path": "/workspace/．．/etc/shadow"}, DENY),
    ("read_file", {"path": "/workspace\\..\\etc／passwd"}, DENY),
    ("read_file", {"path": "/workspace/./src/../.ssh/id_rsa"}, DENY),
    ("read_file", {"path": "/workspace/notes.txt", "mode": "rb"}, RAN),  # undeclared: dropped by the schema
    ("transfer", {"amount": "50", "country": "DE", **PAY}, RAN),
    ("transfer", {"amount": "10", "country": "kp", **PAY}, DENY),
    ("transfer", {"amount": "10", "country": "ＩＲ", **PAY}, DENY),
    ("transfer", {"amount": "10", "country": " sy ", **PAY}, DENY),
    ("transfer", {"amount": "10", "country": "DE", **PAY, "currency": "XMR"}, DENY),
    ("transfer", {"amount": "1e5", "country": "FR", **PAY}, DENY),  # 100000: over the daily budget
    ("transfer", {"amount": "1e400", "country": "FR", **PAY}, UNSENDABLE),  # past the wire's range
    ("transfer", {"amount": "-5", "country": "FR", **PAY}, DENY),
    ("transfer", {"amount": "NaN", "country": "FR", **PAY}, INVALID),
    ("transfer", {"amount": "25000", "country": "FR", **PAY}, APPROVAL),
    ("fetch", {"url": "https://api.github.com/repos/acme/ordinance", "method": "GET"}, RAN),
    ("fetch", {"url": "http://169.254.169.254/latest/meta-data/", "method": "GET"}, DENY),
    ("fetch", {"url": "https://api.github.com@169.254.169.254/latest", "method": "GET"}, DENY),
    ("fetch", {"url": "https://api.github.com.evil.example/x", "method": "GET"}, DENY),
    ("fetch", {"url": "https://api.github.com/repos/acme/ordinance/issues", "method": "post"}, APPROVAL),
    ("send_email", {"to": ["dana@acme.example <eve@evil.example>"], "subject": "hi", "body": "x"}, DENY),
    ("send_email", {"to": ["dana@acme.example"], "subject": "q3", "body": "x", "attachments": 2}, RAN),
]  # fmt: skip

MAPPING = {
    "read_file": "fs.read",
    "transfer": "payments.transfer",
    "fetch": "http.fetch",
    "send_email": "email.send",
}

AGENT = {"roles": ["billing"], "attributes": {"team": "ops"}}


class Recorder:
    """What the tool bodies ran with, and what the client was asked to decide — the same
    objects, if what is judged is what is executed."""

    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.ran: list[tuple[str, dict[str, Any]]] = []
        self.judged: list[tuple[str, dict[str, Any]]] = []

    def body(self, name: str, **args: Any) -> str:
        with self.lock:
            self.ran.append((name, args))
        return f"{name} done"

    def decided(self, request: Any) -> None:
        action = request["action"] if isinstance(request, dict) and "action" in request else request
        if isinstance(action, dict):
            with self.lock:
                self.judged.append((action["tool"], dict(action["args"])))


def check_ran_exactly_what_was_judged(recorder: Recorder) -> None:
    """Every body ran on the very objects that were decided, and only after an allow."""
    expected = [(MAPPING[name], args) for name, args, outcome in SCRIPT if outcome == RAN]
    assert [
        (MAPPING[name], {k: str(v) for k, v in args.items()}) for name, args in recorder.ran
    ] == [(tool, {k: str(v) for k, v in args.items() if k != "mode"}) for tool, args in expected]
    by_tool = {}
    for tool, args in recorder.judged:
        by_tool.setdefault(tool, []).append(args)
    for name, ran_args in recorder.ran:
        # The body's arguments are, one by one, the objects the policy engine was sent.
        candidates = by_tool[MAPPING[name]]
        assert any(
            judged.keys() == ran_args.keys() and all(judged[k] is ran_args[k] for k in ran_args)
            for judged in candidates
        ), (name, ran_args)


def approve(url: str, request_id: str, *, yes: bool = True) -> None:
    """A human answers, as ``ordinance approvals approve|reject`` does."""
    from ordinance.processors.approvals import answer
    from ordinance.streams import open_log

    with open_log(url) as log:
        answer(log, request_id, approve=yes, approver="dana")
