from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from ordinance.policy import canon

path_chars = st.sampled_from([*"ab./%2eE5cF0 ", "%2e", "%2f", "%25", "..", "é"])
paths = st.lists(path_chars, max_size=16).map("".join)


@given(paths)
def test_path_canonicalisation_is_idempotent(raw: str) -> None:
    try:
        once = canon.canonical_path(raw)
    except canon.CanonError:
        return
    assert canon.canonical_path(once) == once


@given(st.text(max_size=20))
def test_tool_canonicalisation_is_idempotent(raw: str) -> None:
    once = canon.canonical_tool(raw)
    assert canon.canonical_tool(once) == once


@given(st.text(alphabet=st.sampled_from([*"abcXYZ.-0é", "Ａ", "ß"]), max_size=20))
def test_domain_canonicalisation_is_idempotent(raw: str) -> None:
    try:
        once = canon.canonical_domain(raw)
    except canon.CanonError:
        return
    assert canon.canonical_domain(once) == once


@given(
    st.sampled_from(["http", "HTTPS", "Http"]),
    st.sampled_from(["Example.COM", "a.b.c", "xn--bcher-kva.de", "[::1]", "10.0.0.1"]),
    st.sampled_from(["", ":80", ":443", ":8080"]),
    st.lists(st.sampled_from(["a", ".", "..", "%C3%BC", "ü", "B"]), max_size=5).map("/".join),
    st.sampled_from(["", "?q=%3F", "?x=1"]),
)
def test_url_canonicalisation_is_idempotent(
    scheme: str, host: str, port: str, path: str, query: str
) -> None:
    raw = f"{scheme}://{host}{port}/{path}{query}"
    once = canon.canonical_url(raw)
    assert canon.canonical_url(once) == once


@pytest.mark.parametrize(
    ("raw", "expected"),
    [
        ("/etc/passwd", "/etc/passwd"),
        ("/workspace/../etc/passwd", "/etc/passwd"),
        # The kernel never decodes: a percent-escape is three characters of a name.
        ("/workspace/%2e%2e/etc/passwd", "/workspace/%2e%2e/etc/passwd"),
        ("/workspace%2fevil.sh", "/workspace%2fevil.sh"),
        ("//etc///passwd", "/etc/passwd"),
        ("/etc/./passwd/", "/etc/passwd"),
        ("/../../etc", "/etc"),  # never above the root
        ("a/../../b", "../b"),
    ],
)
def test_path_vectors(raw: str, expected: str) -> None:
    assert canon.canonical_path(raw) == expected


@pytest.mark.parametrize(
    "raw",
    ["/etc/passwd\0.txt", "\\etc\\passwd", "／etc／passwd", "/a/e\u0301", "", "/a\nb", "/" * 4097],
)
def test_paths_without_safe_form_are_rejected(raw: str) -> None:
    with pytest.raises(canon.CanonError):
        canon.canonical_path(raw)


@pytest.mark.parametrize(
    ("raw", "expected"),
    [
        ("Payments.Transfer", "payments.transfer"),
        ("ｐａｙｍｅｎｔｓ.transfer", "payments.transfer"),
        ("PAYMENTS.TRANSFER", "payments.transfer"),
        ("straße.send", "strasse.send"),
    ],
)
def test_tool_vectors(raw: str, expected: str) -> None:
    assert canon.canonical_tool(raw) == expected


def test_domain_and_email_vectors() -> None:
    assert canon.canonical_domain("Corp.Example.COM.") == "corp.example.com"
    assert canon.canonical_domain("bücher.de") == "xn--bcher-kva.de"
    assert canon.domain_fragment(".Example.com.", "endsWith") == ".example.com"
    assert canon.domain_fragment("WWW.", "startsWith") == "www."
    assert canon.email_fragment("@Bücher.de", "endsWith") == "@xn--bcher-kva.de"
    assert (
        canon.url_fragment("HTTPS://Docs.Example.com:443/v1/", "startsWith")
        == "https://docs.example.com/v1/"
    )
    assert canon.url_fragment("https://x.example/a?", "startsWith") == "https://x.example/a?"
    assert canon.canonical_email("Boss@Corp.COM") == "boss@corp.com"
    for bad in ("a b.com", "no-at-sign", "@corp.com", "x@", "a..b"):
        with pytest.raises(canon.CanonError):
            canon.canonical_email(
                bad
            ) if "@" in bad or bad == "no-at-sign" else canon.canonical_domain(bad)


def test_url_vectors() -> None:
    assert (
        canon.canonical_url("HTTPS://Example.COM:443/a/../b/~user#top")
        == "https://example.com/b/~user"
    )
    assert canon.canonical_url("http://a.com") == "http://a.com/"
    # WHATWG keeps empty path segments (so do urllib3 and servers): no collapsing.
    assert canon.canonical_url("http://a.com:8080//x/./y/") == "http://a.com:8080//x/y/"
    for bad in (
        "/relative/only",
        "https://a.com/%7euser",  # a server decodes %7e: refused, not decoded for it
        "https://user@a.com/",
        "https://a.com./",
        "https://a.com:0443/",
        "https://2130706433/",
        "file:///etc/passwd",
    ):
        with pytest.raises(canon.CanonError):
            canon.canonical_url(bad)


@given(
    st.lists(st.sampled_from(["a", "b.txt", ".ssh", "x-y", "..", "."]), max_size=6).map(
        lambda parts: "/" + "/".join(parts)
    )
)
def test_path_fast_path_agrees_with_full_resolution(raw: str) -> None:
    # "/." + raw resolves to the same path but always takes the slow path
    assert canon.canonical_path(raw) == canon.canonical_path("/." + raw)
