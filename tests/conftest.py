"""Settings every test package shares."""

from collections.abc import Iterator

import pytest
from hypothesis import settings

from tests.processors.shared_log import close_helper_logs

# Property tests judge answers, never speed: a loaded CI machine once took 295 ms for an
# example Hypothesis' default 200 ms deadline then reported as a failure. Tests that set
# their own @settings inherit this.
settings.register_profile("ordinance", deadline=None)
settings.load_profile("ordinance")


@pytest.fixture(autouse=True)
def _close_helper_logs() -> Iterator[None]:
    """The Kafka connections test helpers shared (`tests/processors/shared_log.py`)."""
    yield
    close_helper_logs()
