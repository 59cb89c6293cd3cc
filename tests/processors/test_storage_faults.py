"""Issue 18: storage made read-only, or full, under a running ``serve``, then healed — the
same process reports unhealthy, retries and resumes by itself.

The faults are real: the log and the state cache (``state_dir``) live on a small tmpfs
this test mounts, and the filesystem itself refuses the writes (EROFS, ENOSPC); nothing
inside the process is simulated. Tests run as root, where ``chmod`` stops nothing, so
mounting is the only honest way; without the right to mount they skip.

Linux refuses to make a mount read-only while any file on it is open for writing
(``remount,ro`` fails EBUSY), and a running serve always holds its SQLite file open
read-write. An operator's remount therefore can only land while serve has closed its
handles, which it does when a processor fails and backs off. The read-only test gets
there as an operator would meet it: another process holds the log's write lock (a backup),
every processor fails and backs off, the remount lands in that window, the lock goes —
and serve reopens its log on a read-only mount. The mount made read-only is a bind mount
of the tmpfs (per-mount, as a container's volume would be), so the lock holder's own
read-write handle, through the tmpfs's mount, does not keep it busy.
"""

from __future__ import annotations

import errno
import json
import os
import shutil
import sqlite3
import subprocess
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import pytest

from ordinance.client import SyncClient
from ordinance.keys import Keyring, generate
from ordinance.processors.audit.verify import verify_log
from ordinance.replay.source import open_source
from ordinance.replay.verify import verify
from ordinance.streams import open_log
from ordinance.streams.errors import LogError
from tests.commands.test_service_signals import Process, started, wait_ready
from tests.processors.http_client import http_get
from tests.processors.serve_process import serve_config, wait_decided
from tests.processors.test_enforcer import EXAMPLES, publish, send, transfer

#: Room for the log, and for RocksDB, which preallocates its write-ahead log (about 1.1x
#: the 8 MiB write buffer) on a filesystem that takes fallocate as tmpfs does.
TMPFS_SIZE = "64m"
#: Writers give up on a held lock after 0.3 s (as in test_supervisor), so a held lock
#: fails every processor quickly rather than after the default 30 s.
LOG_OPTIONS = "busy_timeout_s=0.3&session_timeout_ms=2000&heartbeat_interval_ms=200"
#: Liveness bounds, generous: the supervisor's backoff doubles from 0.5 s, so a fault of
#: a few seconds is followed by a wait of up to about as long before the next attempt.
FAULT_SEEN_S = 20.0
RESUMED_S = 30.0


def _run(*command: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(command, capture_output=True, text=True, check=False)


def _mount(*args: str) -> subprocess.CompletedProcess[str]:
    return _run("mount", *args)


@dataclass
class Mounts:
    """Mounts this test made, unmounted in reverse on teardown whatever happened."""

    made: list[Path] = field(default_factory=list)

    def mount(self, *args: str, target: Path) -> None:
        done = _mount(*args, str(target))
        assert done.returncode == 0, done.stderr
        self.made.append(target)

    def remount(self, target: Path, options: str, timeout: float = 0.0) -> None:
        """``mount -o remount,OPTIONS``, retried while the kernel answers busy (a file on
        the mount is open for writing) until ``timeout``."""
        deadline = time.monotonic() + timeout
        while (done := _mount("-o", f"remount,{options}", str(target))).returncode != 0:
            assert "busy" in done.stderr and time.monotonic() < deadline, done.stderr
            time.sleep(0.02)

    def unmount_all(self) -> list[str]:
        left = []
        while self.made:
            target = self.made.pop()
            if _run("umount", str(target)).returncode != 0:
                # Something (a serve that did not exit) still has it open: detach it now,
                # the kernel frees it once the last file closes.
                lazy = _run("umount", "-l", str(target))
                if lazy.returncode != 0:
                    left.append(f"{target}: {lazy.stderr}")
        return left


@pytest.fixture
def disk(tmp_path: Path) -> Iterator[tuple[Path, Mounts]]:
    """A fresh tmpfs of `TMPFS_SIZE` at ``tmp_path/disk``; skips where mounting is not
    permitted (not root, or no CAP_SYS_ADMIN in this container)."""
    if os.geteuid() != 0:
        pytest.skip("mounting a tmpfs needs root")
    if shutil.which("mount") is None:
        pytest.skip("no mount(8) on this machine")
    path = tmp_path / "disk"
    path.mkdir()
    tried = _mount("-t", "tmpfs", "-o", f"size={TMPFS_SIZE}", "tmpfs", str(path))
    if tried.returncode != 0:
        pytest.skip(f"cannot mount a tmpfs here: {tried.stderr.strip()}")
    mounts = Mounts([path])
    try:
        yield path, mounts
    finally:
        left = mounts.unmount_all()
        assert not left, left


@dataclass
class Served:
    url: str
    keyring: Path
    config: Path


def _setup(tmp_path: Path, storage: Path) -> Served:
    """The log and the state cache on ``storage``; the signing key (the checkpointer runs
    too, on the same log) off it, as a deployment keeps its secrets apart."""
    url = f"sqlite:///{storage / 'log.db'}?{LOG_OPTIONS}"
    publish(url, EXAMPLES)
    generate(tmp_path / "k.pem", tmp_path / "ring.json")
    config = serve_config(
        tmp_path,
        url,
        f"  state_dir: {storage / 'state'}\n  signing_key: {tmp_path / 'k.pem'}\n",
    )
    return Served(url, tmp_path / "ring.json", config)


def _health(base: str) -> tuple[int, list[str]]:
    status, body = http_get(base + "/healthz")
    return status, json.loads(body)["problems"]


def _wait_unhealthy(serve: Process, base: str, reason: str) -> list[str]:
    """/healthz's problems once one names ``reason``; serve alive all the while."""
    deadline = time.monotonic() + FAULT_SEEN_S
    while True:
        assert serve.child.poll() is None, "".join(serve.seen)
        status, problems = _health(base)
        if status == 503 and any(reason in p for p in problems):
            return problems
        assert time.monotonic() < deadline, (status, problems)
        time.sleep(0.2)


def _finish(serve: Process, base: str, served: Served, request_ids: list[str]) -> None:
    """Every action decided exactly once by the same process, healthy again, a clean exit
    on SIGTERM, and the log verifies: the audit chain and checkpoints, and replay."""
    decided = wait_decided(served.url, request_ids, RESUMED_S)
    assert sorted(decided) == sorted(request_ids), "".join(serve.seen)
    assert serve.child.poll() is None  # resumed by itself, never restarted by hand
    deadline = time.monotonic() + RESUMED_S
    while (health := _health(base))[0] != 200:
        assert time.monotonic() < deadline, health
        time.sleep(0.5)
    code, _ = serve.terminate()
    assert code == 0, "".join(serve.seen)
    with open_log(served.url) as log:
        audited = verify_log(log, Keyring.from_file(served.keyring))
    assert audited.findings == []
    source, opened = open_source(served.url, None)
    assert opened is not None
    with opened:
        replayed = verify(source)
    assert replayed.findings == [] and replayed.bundle_problems == []


def _batch(prefix: str, n: int, minute: int = 0) -> list[dict[str, object]]:
    return [transfer(f"{prefix}{i}", "50", minute + i) for i in range(n)]


def test_serve_rides_out_its_storage_made_read_only_and_healed(
    tmp_path: Path, disk: tuple[Path, Mounts]
) -> None:
    tmpfs, mounts = disk
    view = tmp_path / "view"  # what serve sees: the tmpfs through a bind mount
    view.mkdir()
    mounts.mount("--bind", str(tmpfs), target=view)
    served = _setup(tmp_path, view)
    before = _batch("a", 10)
    send(served.url, *before)
    with started("serve", served.config) as serve:
        base = serve.base_url("metrics and health on http://")
        wait_ready(base)
        first = [str(a["request_id"]) for a in before]
        assert sorted(wait_decided(served.url, first, RESUMED_S)) == sorted(first)
        # A backup holds the write lock through the tmpfs's own mount: every processor
        # fails on it, closes its log and backs off, and the remount lands meanwhile.
        lock = sqlite3.connect(tmpfs / "log.db", isolation_level=None)
        try:
            lock.execute("BEGIN EXCLUSIVE")
            serve.wait_for("restarting in", timeout=FAULT_SEEN_S)
            # Busy until a moment when no processor holds a file open: their backoffs
            # grow (0.5, 1, 2, 4 s...) until one such moment comes, ~10 s here.
            mounts.remount(view, "bind,ro", timeout=30)
        finally:
            lock.execute("ROLLBACK")
            lock.close()
        # The lock is gone, the storage stays read-only: every reopen fails on that now.
        problems = _wait_unhealthy(serve, base, "mounted read-only")
        assert all("restarting" in p for p in problems), problems
        # A client meanwhile cannot even open the log: `submit` answers "no decision"
        # (exit 8), a client-side deny, and the caller retries later.
        with pytest.raises(LogError, match="mounted read-only"):
            SyncClient(served.url, open_timeout=5)
        mounts.remount(view, "bind,rw")
        # The client retries once the storage is back: those actions are decided too.
        after = _batch("b", 10, minute=10)
        send(served.url, *after)
        _finish(serve, base, served, first + [str(a["request_id"]) for a in after])


def _fill(path: Path) -> int:
    """Write ``path`` until the filesystem has no byte left; its size."""
    written = 0
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    try:
        for chunk in (2**20, 2**12):  # MiBs first, then pages to the last one
            block = b"\0" * chunk
            while True:
                try:
                    written += os.write(fd, block)
                except OSError as exc:
                    if exc.errno != errno.ENOSPC:
                        raise
                    break
    finally:
        os.close(fd)
    return written


def test_serve_rides_out_a_full_disk_and_resumes_once_space_is_freed(
    tmp_path: Path, disk: tuple[Path, Mounts]
) -> None:
    tmpfs, _ = disk
    served = _setup(tmp_path, tmpfs)
    before = _batch("a", 10)
    send(served.url, *before)
    with started("serve", served.config) as serve:
        base = serve.base_url("metrics and health on http://")
        wait_ready(base)
        first = [str(a["request_id"]) for a in before]
        assert sorted(wait_decided(served.url, first, RESUMED_S)) == sorted(first)
        filler = tmpfs / "filler"
        assert _fill(filler) > 0
        # Clients keep sending; SQLite reuses pages it already has, so the first batches
        # may still land (and are decided, if the enforcer finds room for the decisions).
        # Once the log needs a new page, the client is refused: its batch is not on the
        # log, and it sends it again later.
        sent: list[str] = []
        refused: list[dict[str, object]] = []
        for n in range(200):
            batch = _batch(f"f{n}-", 5, minute=10 + 5 * n)
            try:
                send(served.url, *batch)
            except LogError as exc:
                assert "full" in str(exc), exc
                refused = batch
                break
            sent.extend(str(a["request_id"]) for a in batch)
        assert refused, "the full disk never refused a client's write"
        _wait_unhealthy(serve, base, "database or disk is full")
        # The enforcer, restarted on the full disk, fails to reopen its state cache:
        # RocksDB needs a new MANIFEST for that. Supervised the same way.
        problems = _wait_unhealthy(serve, base, "StateCacheError: cannot open the state cache")
        assert any("No space left on device" in p for p in problems), problems
        filler.unlink()
        send(served.url, *refused)
        resent = [str(a["request_id"]) for a in refused]
        _finish(serve, base, served, first + sent + resent)
