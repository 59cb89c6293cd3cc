"""The adversarial corpus, run against models of the real consumers.

A canonical type is sound when every value it accepts has a canonical form equal to what
its consumer acts on: the Linux kernel for paths (a real directory tree under tmp_path,
plus a lexical model of the kernel's resolution), urllib3 and the WHATWG parser for URLs,
Python's ``email`` parsing (as ``smtplib.send_message`` uses it) for addresses, and the
JSON number grammar for decimals. So these tests fail when the engine and a consumer
disagree — not when a string changes. A Hypothesis property drives random strings, biased
to the dangerous characters, through the same models.
"""

from __future__ import annotations

import json
import os
import time
from decimal import Decimal
from email.headerregistry import Address
from email.utils import getaddresses
from pathlib import Path
from typing import Any

import pytest
from ada_url import URL
from hypothesis import example, given, settings
from hypothesis import strategies as st
from ruamel.yaml import YAML
from urllib3.util import parse_url

from ordinance.decimals import DecimalSyntaxError, parse_decimal
from ordinance.policy import canon
from ordinance.policy.loader import load_ruleset
from ordinance.policy.program import RequestProblem

CORPUS: dict[str, list[dict[str, Any]]] = YAML(typ="safe").load(
    (Path(__file__).parent / "adversarial" / "corpus.yaml").read_text(encoding="utf-8")
)
EXAMPLES = Path(__file__).resolve().parents[2] / "examples" / "policies"


# -- consumer models ---------------------------------------------------------------------


def kernel_lexical(raw: str) -> str:
    """Linux path resolution without symlinks: split on "/" only, nothing decoded, "." and
    empty names skipped, ".." pops (never above "/")."""
    stack: list[str] = []
    for name in raw.split("/"):
        if name in ("", "."):
            continue
        if name == "..":
            if stack:
                stack.pop()
            continue
        stack.append(name)
    return "/" + "/".join(stack)


def climbs_above_root(raw: str) -> bool:
    depth = 0
    for name in raw.split("/"):
        if name == "..":
            if depth == 0:
                return True
            depth -= 1
        elif name not in ("", "."):
            depth += 1
    return False


def kernel_real(root: Path, raw: str) -> tuple[int, int]:
    """Create ``raw`` under ``root`` the way a tool would (every directory it names, then
    the file, through the real kernel) and return the created file's (device, inode)."""
    names = raw.split("/")
    prefix = str(root)
    for name in names[:-1]:
        prefix = prefix + "/" + name
        if name not in ("", ".", "..") and not os.path.isdir(prefix):
            os.mkdir(prefix)
    target = str(root) + raw
    if names[-1] in ("", ".", ".."):
        st_ = os.stat(target)
    else:
        os.close(os.open(target, os.O_CREAT | os.O_WRONLY, 0o600))
        st_ = os.stat(target)
    return st_.st_dev, st_.st_ino


def check_path(raw: str, root: Path | None = None) -> bool:
    """True if accepted (and then it agrees with the kernel), False if refused."""
    try:
        canonical = canon.canonical_path(raw)
    except canon.CanonError:
        return False
    if not raw.startswith("/"):
        return True  # relative: resolved against an unknown directory, never absolute
    assert canonical == kernel_lexical(raw), raw
    # The real tree is no chroot: a ".." above its root would leave it, so those paths are
    # checked against the lexical model only.
    if root is not None and canonical != "/" and not climbs_above_root(raw):
        made = kernel_real(root, raw)
        st_ = os.stat(str(root) + canonical)
        assert (st_.st_dev, st_.st_ino) == made, raw
    return True


DEFAULT_PORTS = {"http": 80, "https": 443}


def check_url(raw: str) -> bool:
    try:
        canonical = canon.canonical_url(raw)
    except canon.CanonError:
        return False
    judged = URL(canonical)
    whatwg = URL(raw)  # a browser / fetch()
    client = parse_url(raw)  # urllib3, under requests
    for parsed in (whatwg,):
        assert parsed.hostname == judged.hostname, raw
        assert parsed.port == judged.port, raw
        assert parsed.protocol == judged.protocol, raw
        assert parsed.pathname == judged.pathname and parsed.search == judged.search, raw
    assert client.scheme == judged.protocol[:-1], raw
    assert (client.host or "").lower() == judged.hostname, raw
    port = client.port or DEFAULT_PORTS[client.scheme or ""]
    assert port == (int(judged.port) if judged.port else DEFAULT_PORTS[client.scheme or ""])
    # urllib3 resolves dot segments as WHATWG does, and sends the same path.
    assert (client.path or "/") == judged.pathname or raw.isascii() is False, raw
    return True


def check_email(raw: str) -> bool:
    try:
        canonical = canon.canonical_email(raw)
    except canon.CanonError:
        return False
    # What send_message does with a To: header holding this element.
    parsed = getaddresses([raw])
    assert len(parsed) == 1 and parsed[0][0] == "", raw
    local, _, domain = parsed[0][1].rpartition("@")
    assert f"{local.casefold()}@{canon.canonical_domain(domain)}" == canonical, raw
    address = Address(addr_spec=raw)  # the header registry agrees on the parts
    assert (address.username, address.domain) == (local, domain), raw
    return True


def check_decimal(raw: str) -> bool:
    try:
        value = parse_decimal(raw)
    except DecimalSyntaxError:
        return False
    # Every accepted text is a JSON number meaning the same exact value.
    assert Decimal(json.loads(raw, parse_float=Decimal, parse_int=Decimal)) == value, raw
    return True


CHECKS = {"path": check_path, "url": check_url, "email": check_email, "decimal": check_decimal}


# -- the corpus --------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("kind", "entry"),
    [(kind, entry) for kind, entries in CORPUS.items() for entry in entries],
    ids=lambda x: repr(x["value"])[:60] if isinstance(x, dict) else str(x),
)
def test_corpus_agrees_with_the_consumer(kind: str, entry: dict[str, Any], tmp_path: Path) -> None:
    value = entry["value"]
    accepted = check_path(value, tmp_path) if kind == "path" else CHECKS[kind](value)
    if entry.get("refuse"):
        assert not accepted, f"{kind} {value!r} must be refused"


@pytest.mark.parametrize(
    ("tool", "args"),
    [
        ("fs.write", {"path": "/workspace%2fevil.sh", "bytes": 1}),
        ("fs.write", {"path": "/etc/profile.d/x%2f..%2f..%2f..%2fworkspace%2fevil.sh", "bytes": 1}),
        ("http.fetch", {"url": "https://docs.python.org／@169.254.169.254/latest/meta-data/", "method": "GET"}),
        ("http.fetch", {"url": "https://docs.python.org﹖@169.254.169.254/", "method": "GET"}),
        ("email.send", {"to": ["eve@evil.example,x@acme.example"], "subject": "s", "body": "b", "attachments": 1}),
        ("email.send", {"to": [",".join(f"a{i}@acme.example" for i in range(60))], "subject": "s", "body": "b"}),
        ("payments.transfer", {"amount": "1e4", "currency": "EUR", "country": "FR", "iban": "X"}),
        ("payments.transfer", {"amount": "50", "currency": "EUR", "country": "kp", "iban": "X"}),
        ("infra.deploy", {"service": "api", "version": "1", "environment": "prd"}),
    ],
)  # fmt: skip
def test_the_reported_reproducers_are_not_allowed(tool: str, args: dict[str, Any]) -> None:
    rs = load_ruleset(EXAMPLES)
    agent = {"id": "b1", "roles": ["billing"], "team": "finance"}
    decision = rs.evaluate({"agent": agent, "action": {"tool": tool, "args": args}})
    assert decision.effect == "deny", (tool, args, decision)


# -- denial of service: bounded before normalisation ---------------------------------------


@pytest.mark.parametrize(
    "value",
    [
        "a" + "\u0301\u0316" * 16_000,  # quadratic under NFKC without the bound
        "x" * (canon.MAX_STRING_CHARS + 1),
        "a" + "\u0316" * (canon.MAX_NONSTARTER_RUN + 1),
    ],
)
def test_oversized_or_pathological_strings_are_refused(value: str) -> None:
    rs = load_ruleset(EXAMPLES)
    request = {
        "agent": {"id": "a", "team": "ops"},
        "action": {"tool": "email.send", "args": {"to": ["a@acme.example"], "subject": value, "body": "b"}},
    }  # fmt: skip
    started = time.perf_counter()
    decision = rs.evaluate(request)
    assert (decision.effect, decision.code) == ("deny", "invalid_request")
    assert time.perf_counter() - started < 1.0  # generous: a bench measures the real bound


def test_request_and_list_limits() -> None:
    rs = load_ruleset(EXAMPLES)
    agent = {"id": "a", "team": "ops"}
    many = [f"a{i}@acme.example" for i in range(canon.MAX_LIST_ITEMS + 1)]
    big = "b" * canon.MAX_STRING_CHARS
    for args in (
        {"to": many, "subject": "s", "body": "b"},
        {"to": ["a@acme.example"], "subject": big, "body": big, "cc": ["c@acme.example"]},
    ):
        d = rs.evaluate({"agent": agent, "action": {"tool": "email.send", "args": args}})
        assert (d.effect, d.code) == ("deny", "invalid_request"), d.detail
        with pytest.raises(RequestProblem, match=r"characters|items"):
            rs.canonical({"agent": agent, "action": {"tool": "email.send", "args": args}})
    huge_tool = "x" * 1_000_000
    d = rs.evaluate({"agent": agent, "action": {"tool": huge_tool, "args": {}}})
    assert d.effect == "deny" and huge_tool not in rs._tool_cache


# -- the property: accepted means the consumer agrees --------------------------------------

DANGEROUS = [
    *"/.\\%@:?#[]!,;<>\"' \t\n\x00aZ09-_~",
    "%2e", "%2f", "%2F", "%5c", "%00", "..", "／", "．", "＠", "＃", "？", "﹖", "＼",
    "\u0301", "é", "ﬁ", "\u200b", "\u00a0", "ｅ", "İ", "ß", "0x7f", "169.254.169.254",
]  # fmt: skip
fragments = st.lists(st.sampled_from(DANGEROUS), max_size=14).map("".join)


@settings(max_examples=300, deadline=None)
@given(fragments)
def test_accepted_paths_are_what_the_kernel_resolves(tail: str) -> None:
    check_path("/" + tail)
    check_path(tail)


@settings(max_examples=300, deadline=None)
@given(
    st.sampled_from(["https://", "http://", "HTTPS://", "https:/", "https:"]), fragments, fragments
)
@example("https://", "", "//[")  # urllib3 sends /%5B where a browser sends /[ (found)
def test_accepted_urls_go_where_the_clients_connect(scheme: str, host: str, rest: str) -> None:
    check_url(scheme + host + rest)
    check_url(scheme + "docs.python.org" + host + "/" + rest)


@settings(max_examples=300, deadline=None)
@given(fragments, fragments)
def test_accepted_addresses_are_the_one_address_the_mailer_reads(local: str, domain: str) -> None:
    check_email(local + "@" + domain)
    check_email("x" + local + "@acme.example")


@settings(max_examples=300, deadline=None)
@given(
    st.lists(
        st.sampled_from([*"0123456789", ".", "-", "+", "e", "E", "_", " ", "٣"]), max_size=8
    ).map("".join)
)
def test_accepted_decimals_are_json_numbers(text: str) -> None:
    check_decimal(text)
