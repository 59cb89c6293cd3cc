"""Where a policy directory comes from in Git: the commit, its author, committer, message
and remote, and whether the directory's files are that commit's (docs/lifecycle.md,
"Publishing from Git").

Only the ``git`` executable is used (with a timeout, read-only: no index refresh is
written), so no Git library is needed. A directory outside any work tree is
``not_in_git``; a work tree git cannot read (git missing, ``safe.directory``, a timeout)
is ``unknown`` — neither proves the files were committed.
"""

from __future__ import annotations

import os
import subprocess
import urllib.parse
from collections.abc import Collection, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

MAX_MESSAGE = 4096  # characters of the commit message kept on the event
MAX_DIRTY_PATHS = 50
TIMEOUT_S = 10.0
CLEAN, DIRTY, NOT_IN_GIT, UNKNOWN = "clean", "dirty", "not_in_git", "unknown"


@dataclass(frozen=True)
class GitSource:
    """A ``GitSource`` datum of ``PolicyChange`` v6 (``git`` on published events)."""

    state: str
    commit: str | None = None
    branch: str | None = None
    path: str | None = None
    author: str | None = None
    authored_at: str | None = None
    committer: str | None = None
    committed_at: str | None = None
    subject: str | None = None
    message: str | None = None
    message_truncated: bool = False
    remote: str | None = None
    remote_name: str | None = None
    dirty_paths: tuple[str, ...] = field(default_factory=tuple)
    detail: str | None = None

    def datum(self) -> dict[str, Any]:
        return {
            "state": self.state,
            "commit": self.commit,
            "branch": self.branch,
            "path": self.path,
            "author": self.author,
            "authored_at": self.authored_at,
            "committer": self.committer,
            "committed_at": self.committed_at,
            "subject": self.subject,
            "message": self.message,
            "message_truncated": self.message_truncated,
            "remote": self.remote,
            "remote_name": self.remote_name,
            "dirty_paths": list(self.dirty_paths),
            "detail": self.detail,
        }


class _GitFailed(Exception):
    pass


# Variables that point git at another repository than the directory's (a git hook sets
# some): the directory alone says which work tree it is in.
_REDIRECTS = (
    "GIT_DIR",
    "GIT_WORK_TREE",
    "GIT_INDEX_FILE",
    "GIT_OBJECT_DIRECTORY",
    "GIT_ALTERNATE_OBJECT_DIRECTORIES",
    "GIT_COMMON_DIR",
    "GIT_NAMESPACE",
    "GIT_CEILING_DIRECTORIES",
)


def _git(cwd: Path, *args: str) -> str:
    env = {k: v for k, v in os.environ.items() if k not in _REDIRECTS}
    env |= {
        "GIT_OPTIONAL_LOCKS": "0",  # `status` must not write the index of someone's tree
        "LC_ALL": "C",
        "GIT_TERMINAL_PROMPT": "0",
    }
    try:
        done = subprocess.run(
            ["git", *args],
            cwd=cwd,
            env=env,
            capture_output=True,
            timeout=TIMEOUT_S,
            check=False,
        )
    except FileNotFoundError:
        raise _GitFailed("git is not installed") from None
    except subprocess.TimeoutExpired:
        raise _GitFailed(f"`git {args[0]}` took longer than {TIMEOUT_S:.0f}s") from None
    except OSError as exc:
        raise _GitFailed(f"cannot run git: {exc}") from None
    if done.returncode != 0:
        raise _GitFailed(done.stderr.decode("utf-8", "replace").strip() or f"git {args[0]} failed")
    return done.stdout.decode("utf-8", "replace")


def _has_dot_git(directory: Path) -> bool:
    return any((d / ".git").exists() for d in (directory, *directory.parents))


def strip_credentials(url: str) -> str:
    """A remote URL without a user:password (a token in an https URL must not reach an
    infinite-retention topic). scp-like ``git@host:path`` keeps its user name."""
    parts = urllib.parse.urlsplit(url)
    if not parts.scheme or "@" not in parts.netloc:
        return url
    userinfo, _, host = parts.netloc.rpartition("@")
    user = userinfo.split(":", 1)[0]
    keep = f"{user}@" if parts.scheme == "ssh" and user else ""
    return urllib.parse.urlunsplit(parts._replace(netloc=keep + host))


def _remote(cwd: Path) -> tuple[str | None, str | None]:
    """The current branch's upstream remote, else ``origin``, else the first remote."""
    names = _git(cwd, "remote").split()
    if not names:
        return None, None
    name = None
    try:
        upstream = _git(cwd, "rev-parse", "--abbrev-ref", "--symbolic-full-name", "@{u}").strip()
        name = next((n for n in names if upstream.startswith(n + "/")), None)
    except _GitFailed:
        pass
    name = name or ("origin" if "origin" in names else names[0])
    return name, strip_credentials(_git(cwd, "remote", "get-url", name).strip())


def _dirty_paths(top: Path, relative: str, policy_files: Collection[str]) -> list[str]:
    """Tracked files under the directory with uncommitted changes (staged or not), and
    policy files of the bundle that are untracked or ignored: what makes the published
    content differ from the commit."""
    scope = relative or "."
    out = _git(
        top,
        "status",
        "--porcelain=v1",
        "-z",
        "--untracked-files=all",
        "--ignored=matching",
        "--no-renames",
        "--",
        scope,
    )
    wanted = {f"{relative}/{p}" if relative else p for p in policy_files}
    dirty = []
    for entry in out.split("\0"):
        if len(entry) < 4:
            continue
        code, path = entry[:2], entry[3:]
        if code in ("??", "!!"):
            if path in wanted:
                dirty.append(path)
        else:
            dirty.append(path)
    return sorted(dirty)


def git_source(directory: Path, policy_files: Collection[str] = ()) -> GitSource:
    """The Git state of ``directory``. ``policy_files``: the paths (relative to it) that
    the bundle reads; an untracked or ignored one makes the tree dirty, other untracked
    files do not."""
    directory = directory.resolve()
    try:
        inside = _git(directory, "rev-parse", "--is-inside-work-tree").strip()
    except _GitFailed as exc:
        text = str(exc)
        if "not a git repository" in text.lower() or (
            text == "git is not installed" and not _has_dot_git(directory)
        ):
            return GitSource(NOT_IN_GIT, detail=f"{directory} is not in a Git work tree")
        return GitSource(UNKNOWN, detail=text[:500])
    if inside != "true":
        return GitSource(NOT_IN_GIT, detail=f"{directory} is not in a Git work tree")
    try:
        top = Path(_git(directory, "rev-parse", "--show-toplevel").strip())
        relative = directory.relative_to(top.resolve()).as_posix()
        relative = "" if relative == "." else relative
        dirty = _dirty_paths(top, relative, policy_files)
        try:
            head = _git(
                top, "log", "-1", "--format=%H%x00%an <%ae>%x00%aI%x00%cn <%ce>%x00%cI%x00%B"
            )
        except _GitFailed:  # no commit yet: nothing is committed, every file is new
            return GitSource(
                DIRTY,
                path=relative or ".",
                dirty_paths=tuple(dirty[:MAX_DIRTY_PATHS]),
                detail="the repository has no commit yet",
            )
        commit, author, authored, committer, committed, message = head.split("\0", 5)
        branch = _git(top, "rev-parse", "--abbrev-ref", "HEAD").strip()
        remote_name, remote = _remote(top)
    except (_GitFailed, ValueError) as exc:
        return GitSource(UNKNOWN, detail=str(exc)[:500])
    message = message.rstrip("\n") + "\n" if message.strip() else ""
    return GitSource(
        DIRTY if dirty else CLEAN,
        commit=commit,
        branch=None if branch == "HEAD" else branch,  # detached
        path=relative or ".",
        author=author,
        authored_at=authored,
        committer=committer,
        committed_at=committed,
        subject=message.split("\n", 1)[0] or None,
        message=message[:MAX_MESSAGE] or None,
        message_truncated=len(message) > MAX_MESSAGE,
        remote=remote,
        remote_name=remote_name,
        dirty_paths=tuple(dirty[:MAX_DIRTY_PATHS]),
    )


def describe(source: GitSource, limit: int = 5) -> str:
    """One line for a refusal or a report."""
    if source.state == NOT_IN_GIT:
        return "not in git"
    if source.state == UNKNOWN:
        return f"git state unknown: {source.detail}"
    head = f"{source.commit[:12]}" if source.commit else "no commit"
    if source.state == CLEAN:
        return f"{head} (clean)"
    shown: Sequence[str] = source.dirty_paths[:limit]
    more = len(source.dirty_paths) - len(shown)
    paths = ", ".join(shown) + (f" and {more} more" if more > 0 else "")
    return f"{head} with uncommitted changes: {paths or source.detail}"
