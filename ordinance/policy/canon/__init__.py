"""Canonical forms, applied to requests before matching and to policy literals at compile time.

The rule for every canonical type: a value is accepted only when its canonical form is what
its real consumer acts on — the kernel for paths (:mod:`.paths`), HTTP clients for URLs
(:mod:`.urls`), the mailer for email addresses (:mod:`.emails`), resolvers for domains and
Ordinance's own schema for tool names (:mod:`.text`). Anything ambiguous raises
:class:`CanonError` (an ``invalid_request`` deny), never a repaired copy. Every function is
idempotent (``f(f(x)) == f(x)``) and every input is bounded (:mod:`.limits`) before any
normalisation.
"""

from ordinance.policy.canon.emails import canonical_email, email_fragment
from ordinance.policy.canon.limits import (
    MAX_DOMAIN_CHARS,
    MAX_EMAIL_CHARS,
    MAX_LIST_ITEMS,
    MAX_NONSTARTER_RUN,
    MAX_PATH_CHARS,
    MAX_REQUEST_CHARS,
    MAX_STRING_CHARS,
    MAX_URL_CHARS,
    NON_ASCII_WEIGHT,
    CanonError,
    check_length,
    check_stream_safe,
    over_request_limit,
    weigh,
)
from ordinance.policy.canon.paths import canonical_path, path_fragment
from ordinance.policy.canon.text import (
    NORMALIZATIONS,
    NORMALIZE_FOLD,
    NORMALIZE_NFKC,
    NORMALIZE_NONE,
    bounded_nfkc,
    canonical_domain,
    canonical_tool,
    domain_fragment,
    idna_labels,
    is_nfkc,
    nfkc,
    normalize_string,
)
from ordinance.policy.canon.urls import SCHEMES, canonical_url, url_fragment

__all__ = [
    "MAX_DOMAIN_CHARS",
    "MAX_EMAIL_CHARS",
    "MAX_LIST_ITEMS",
    "MAX_NONSTARTER_RUN",
    "MAX_PATH_CHARS",
    "MAX_REQUEST_CHARS",
    "MAX_STRING_CHARS",
    "MAX_URL_CHARS",
    "NON_ASCII_WEIGHT",
    "NORMALIZATIONS",
    "NORMALIZE_FOLD",
    "NORMALIZE_NFKC",
    "NORMALIZE_NONE",
    "SCHEMES",
    "CanonError",
    "bounded_nfkc",
    "canonical_domain",
    "canonical_email",
    "canonical_path",
    "canonical_tool",
    "canonical_url",
    "check_length",
    "check_stream_safe",
    "domain_fragment",
    "email_fragment",
    "idna_labels",
    "is_nfkc",
    "nfkc",
    "normalize_string",
    "over_request_limit",
    "path_fragment",
    "url_fragment",
    "weigh",
]
