"""The adapters' tests run against the pipeline their examples use (`local_pipeline`:
examples/policies published and enforced on an embedded log, a real `Enforcer` thread),
one per module."""

from __future__ import annotations

import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

EXAMPLES = Path(__file__).resolve().parents[2] / "examples" / "adapters"
sys.path.insert(0, str(EXAMPLES))

from local_pipeline import local_pipeline  # noqa: E402


@pytest.fixture(scope="module")
def pipeline_url(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    with local_pipeline(tmp_path_factory.mktemp("adapters")) as url:
        yield url
