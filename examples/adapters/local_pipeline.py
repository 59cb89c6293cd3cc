"""An Ordinance pipeline inside this process, for the adapter examples: an embedded SQLite
log, the example policies (examples/policies) published and enforced through the log as
``ordinance publish`` and the controller do it, and a real `Enforcer` deciding in a thread.
The agents in the examples talk to it through the ordinary client, as they would to a
pipeline run by ``ordinance serve``.
"""

from __future__ import annotations

import tempfile
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from ordinance.policy.bundle import compile_bundle, read_bundle_dir
from ordinance.processors.controller_loop import run_controller
from ordinance.processors.enforcer import Enforcer
from ordinance.processors.policy_log import publish_bundle
from ordinance.streams import open_log
from ordinance.streams.topics import ensure_topics

POLICIES = Path(__file__).resolve().parents[1] / "policies"


@contextmanager
def local_pipeline(directory: Path | None = None, ready_timeout: float = 60.0) -> Iterator[str]:
    """Yield the log URL once the example bundle is enforced and the enforcer owns every
    partition; stop the enforcer on exit (re-raising what killed it, if anything did)."""
    with tempfile.TemporaryDirectory(prefix="ordinance-example-") as scratch:
        url = f"sqlite:///{(directory or Path(scratch)) / 'ordinance.db'}"
        files = read_bundle_dir(POLICIES)
        with open_log(url, create=True) as log:
            ensure_topics(log)
            publish_bundle(log, files, compile_bundle(files).bundle_id, actor="example")
            run_controller(log, once=True)
        stop = threading.Event()
        failures: list[BaseException] = []
        with open_log(url) as log:
            enforcer = Enforcer(log)
            partitions = len(log.partitions(enforcer.actions))

            def run() -> None:
                try:
                    enforcer.run(stop=stop)
                except BaseException as exc:  # handed to the owner: a thread cannot raise
                    failures.append(exc)

            thread = threading.Thread(target=run, name="enforcer", daemon=True)
            thread.start()
            try:
                deadline = time.monotonic() + ready_timeout
                while len(enforcer.states) < partitions and not failures:
                    if time.monotonic() > deadline:
                        raise TimeoutError("the enforcer took over no partitions")
                    time.sleep(0.01)
                yield url
            finally:
                stop.set()
                thread.join()
        if failures:
            raise failures[0]
