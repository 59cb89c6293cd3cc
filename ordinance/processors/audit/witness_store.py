"""Where witnessed checkpoints are kept: outside the log, somewhere the auditor controls
(docs/audit.md, "Witnesses and freshness").

A witness is an append-only sequence of JSON entries, of two types:

- ``{"type": "keyring", "fingerprint", "key_ids", "pinned_at"}``: the keyring that
  checkpoints must be signed under (the first entry; a later one re-pins after a rotation);
- ``{"type": "checkpoint", "checkpoint", "algorithm", "key_id", "signature",
  "witnessed_at", "log"}``: one signed checkpoint, as its signed text and signature only,
  so nothing in the entry can disagree with what was signed (the readable fields are the
  text itself, parsed with `checkpoint.parse_message`).

Two stores implement `Witness`: a JSON-lines file (`FileWitness`), and a Git repository
with one file per entry and one commit per anchoring (`GitWitness`, through the ``git``
CLI, so the auditor can sign, push and mirror the history with their own Git tools).
"""

from __future__ import annotations

import base64
import datetime as dt
import os
import subprocess
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol

import orjson

from ordinance.errors import OrdinanceError
from ordinance.keys import Keyring
from ordinance.processors.audit.checkpoint import message, parse_message

KEYRING = "keyring"
CHECKPOINT = "checkpoint"


class WitnessError(OrdinanceError):
    """A witness cannot be read or written, or holds something that is not an entry."""


@dataclass(frozen=True)
class Witnessed:
    """One signed checkpoint as a witness holds it."""

    text: str  # the signed checkpoint text (checkpoint.message)
    algorithm: str
    key_id: str
    signature: bytes
    fields: dict[str, Any]  # parse_message(text)

    @property
    def partition(self) -> int:
        partition: int = self.fields["partition"]
        return partition

    @property
    def record_count(self) -> int:
        count: int = self.fields["record_count"]
        return count

    @property
    def merkle_root(self) -> bytes:
        root: bytes = self.fields["merkle_root"]
        return root

    @property
    def chain_head(self) -> bytes:
        head: bytes = self.fields["chain_head"]
        return head

    @property
    def last_offset(self) -> int:
        offset: int = self.fields["last_offset"]
        return offset

    @property
    def signed_at(self) -> str:
        at: dt.datetime = self.fields["at"]
        return at.isoformat().replace("+00:00", "Z")

    def signed_by(self, keyring: Keyring) -> bool:
        return self.algorithm == "ed25519" and keyring.verify(
            self.key_id, self.text.encode(), self.signature
        )

    @classmethod
    def of_datum(cls, datum: dict[str, Any]) -> Witnessed:
        """From an AuditCheckpoint datum read off the log."""
        text = message(datum).decode()
        return cls(text, datum["algorithm"], datum["key_id"], datum["signature"], dict(datum))

    @classmethod
    def from_entry(cls, entry: dict[str, Any]) -> Witnessed:
        try:
            text = entry["checkpoint"]
            return cls(
                text,
                entry["algorithm"],
                entry["key_id"],
                base64.b64decode(entry["signature"], validate=True),
                parse_message(text),
            )
        except (KeyError, TypeError, ValueError) as exc:
            raise WitnessError(f"a witnessed checkpoint entry is malformed ({exc!r})") from exc

    def to_entry(self, witnessed_at: dt.datetime, log: str) -> dict[str, Any]:
        return {
            "type": CHECKPOINT,
            "checkpoint": self.text,
            "algorithm": self.algorithm,
            "key_id": self.key_id,
            "signature": base64.b64encode(self.signature).decode(),
            "witnessed_at": witnessed_at.isoformat().replace("+00:00", "Z"),
            "log": log,
        }


def keyring_entry(keyring: Keyring, pinned_at: dt.datetime) -> dict[str, Any]:
    return {
        "type": KEYRING,
        "fingerprint": keyring.fingerprint(),
        "key_ids": sorted(keyring.keys),
        "pinned_at": pinned_at.isoformat().replace("+00:00", "Z"),
    }


class Witness(Protocol):
    """An append-only store of witness entries the log's writers cannot reach."""

    @property
    def name(self) -> str:
        """How to name it in reports (``file:PATH``, ``git:PATH``)."""
        ...

    def entries(self) -> list[dict[str, Any]]:
        """Every entry, oldest first (empty for a witness not yet written)."""
        ...

    def append(self, entries: list[dict[str, Any]], summary: str) -> None:
        """Add ``entries`` after the existing ones, durably; ``summary`` says what they are."""
        ...


class FileWitness:
    """A JSON-lines file, appended to and fsynced; never rewritten."""

    def __init__(self, path: Path) -> None:
        self.path = path

    @property
    def name(self) -> str:
        return f"file:{self.path}"

    def entries(self) -> list[dict[str, Any]]:
        try:
            raw = self.path.read_bytes()
        except FileNotFoundError:
            return []
        except OSError as exc:
            raise WitnessError(f"{self.path}: cannot read the witness ({exc})") from exc
        entries = []
        for number, line in enumerate(raw.splitlines(), 1):
            if not line.strip():
                continue
            try:
                entry = orjson.loads(line)
            except orjson.JSONDecodeError as exc:
                raise WitnessError(f"{self.path}:{number}: not a JSON entry ({exc})") from exc
            if not isinstance(entry, dict):
                raise WitnessError(f"{self.path}:{number}: not a JSON object")
            entries.append(entry)
        return entries

    def append(self, entries: list[dict[str, Any]], summary: str) -> None:
        del summary  # a file has nowhere to say it; the entries speak for themselves
        try:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            with self.path.open("ab") as out:
                out.write(b"".join(orjson.dumps(entry) + b"\n" for entry in entries))
                out.flush()
                os.fsync(out.fileno())
        except OSError as exc:
            raise WitnessError(f"{self.path}: cannot append to the witness ({exc})") from exc


class GitWitness:
    """A Git repository: each entry a file ``entries/<sequence>-<what>.json``, each
    anchoring one commit. What is witnessed is what HEAD holds: uncommitted files in the
    work tree are not read."""

    DIRECTORY = "entries"

    def __init__(self, repo: Path) -> None:
        self.repo = repo

    @property
    def name(self) -> str:
        return f"git:{self.repo}"

    def _git(self, *args: str, stdin: bytes | None = None, check: bool = True) -> bytes:
        try:
            done = subprocess.run(
                ["git", "-C", str(self.repo), *args],
                input=stdin,
                capture_output=True,
                check=False,
            )
        except OSError as exc:
            raise WitnessError(f"cannot run git for the witness {self.repo} ({exc})") from exc
        if check and done.returncode != 0:
            raise WitnessError(
                f"git {args[0]} in {self.repo} failed: {done.stderr.decode(errors='replace').strip()}"
            )
        return done.stdout if done.returncode == 0 else b""

    def _is_repo(self) -> bool:
        if not self.repo.is_dir():
            return False
        top = self._git("rev-parse", "--show-toplevel", check=False).strip()
        # A directory inside some other repository is not a witness of its own.
        return bool(top) and Path(top.decode()).resolve() == self.repo.resolve()

    def _names(self) -> list[str]:
        if not self._is_repo() or not self._git("rev-parse", "--verify", "-q", "HEAD", check=False):
            return []
        listing = self._git("ls-tree", "-r", "--name-only", "HEAD", "--", self.DIRECTORY)
        return sorted(name for name in listing.decode().splitlines() if name.endswith(".json"))

    def entries(self) -> list[dict[str, Any]]:
        if self.repo.exists() and not self.repo.is_dir():
            raise WitnessError(f"{self.repo} is not a directory: not a Git witness")
        names = self._names()
        if not names:
            return []
        # One `git cat-file --batch` for every entry, not one process per checkpoint.
        out = self._git("cat-file", "--batch", stdin="".join(f"HEAD:{n}\n" for n in names).encode())
        entries, position = [], 0
        for name in names:
            end = out.index(b"\n", position)
            header = out[position:end].split()
            if len(header) != 3 or header[1] != b"blob":
                raise WitnessError(f"{self.repo}: {name} is not a file in HEAD")
            size = int(header[2])
            body = out[end + 1 : end + 1 + size]
            position = end + 1 + size + 1
            try:
                entry = orjson.loads(body)
            except orjson.JSONDecodeError as exc:
                raise WitnessError(f"{self.repo}: {name} is not a JSON entry ({exc})") from exc
            if not isinstance(entry, dict):
                raise WitnessError(f"{self.repo}: {name} is not a JSON object")
            entries.append(entry)
        return entries

    def _ensure_repo(self) -> None:
        if self._is_repo():
            return
        if self.repo.exists() and (not self.repo.is_dir() or any(self.repo.iterdir())):
            raise WitnessError(
                f"{self.repo} is not a Git repository: create it with `git init`, or name a "
                "new or empty directory"
            )
        self.repo.mkdir(parents=True, exist_ok=True)
        self._git("init", "-q")

    def append(self, entries: list[dict[str, Any]], summary: str) -> None:
        self._ensure_repo()
        sequence = len(self._names())
        directory = self.repo / self.DIRECTORY
        directory.mkdir(exist_ok=True)
        paths = []
        for entry in entries:
            what = (
                KEYRING
                if entry.get("type") == KEYRING
                else "p{partition}-{record_count}".format(**parse_message(entry["checkpoint"]))
            )
            relative = f"{self.DIRECTORY}/{sequence:09d}-{what}.json"
            (self.repo / relative).write_bytes(
                orjson.dumps(entry, option=orjson.OPT_INDENT_2) + b"\n"
            )
            paths.append(relative)
            sequence += 1
        identity: list[str] = []
        if not self._git("config", "user.email", check=False).strip():
            # The auditor's own identity when configured; otherwise commit anyway, as this.
            identity = [
                "-c",
                "user.name=ordinance audit anchor",
                "-c",
                "user.email=anchor@ordinance",
            ]
        self._git("add", "--", *paths)
        self._git(*identity, "commit", "-q", "-m", summary, "--", *paths)


def open_witness(spec: str) -> Witness:
    """``git:DIR`` or ``file:PATH``; a bare path is a Git witness when it is a directory
    and a JSON-lines file otherwise."""
    kind, colon, rest = spec.partition(":")
    if colon and kind == "git":
        return GitWitness(Path(rest))
    if colon and kind == "file":
        return FileWitness(Path(rest))
    path = Path(spec)
    return GitWitness(path) if path.is_dir() else FileWitness(path)
