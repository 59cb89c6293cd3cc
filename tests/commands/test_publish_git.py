"""Publishing from Git (issue 13 item 1): the published event records the commit the
directory is, a dirty tree is refused unless --allow-dirty (a recorded bypass), and a
directory outside Git is recorded as such; `policy history` shows all of it."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
from pathlib import Path
from typing import Any

import pytest

from ordinance.cli import main
from ordinance.gitsource import MAX_MESSAGE, git_source, strip_credentials

EXAMPLES = Path(__file__).resolve().parents[2] / "examples" / "policies"
MESSAGE = "payments: tighten limits\n\nAsked for by finance-risk.\nSecond paragraph line.\n"


def git(repo: Path, *args: str, env: dict[str, str] | None = None) -> str:
    done = subprocess.run(
        ["git", *args],
        cwd=repo,
        capture_output=True,
        text=True,
        check=True,
        env={**os.environ, **(env or {})},
    )
    return done.stdout


def make_repo(root: Path) -> Path:
    """A work tree holding the example policies under policies/, one commit with a
    distinct author and committer, and a remote whose URL carries a token."""
    repo = root / "repo"
    repo.mkdir()
    git(repo, "init", "-q", "-b", "main")
    git(repo, "config", "user.name", "Carol Committer")
    git(repo, "config", "user.email", "carol@example.com")
    shutil.copytree(EXAMPLES, repo / "policies")
    (repo / "README.md").write_text("policies\n")
    git(repo, "add", ".")
    git(
        repo,
        "commit",
        "-q",
        "-m",
        MESSAGE,
        env={"GIT_AUTHOR_NAME": "Alice Author", "GIT_AUTHOR_EMAIL": "alice@example.com"},
    )
    git(repo, "remote", "add", "origin", "https://bot:s3cret@git.example.com/org/policies.git")
    return repo


def publish(url: str, directory: Path, *extra: str) -> int:
    return main(
        ["publish", str(directory), "--log", url, "--actor", "alice", "--skip-analysis", *extra]
    )


def history(url: str, capsys: pytest.CaptureFixture[str]) -> list[dict[str, Any]]:
    capsys.readouterr()
    assert main(["policy", "history", "--log", url, "--json"]) == 0
    events: list[dict[str, Any]] = json.loads(capsys.readouterr().out)["events"]
    return events


def test_publish_records_the_commit_as_git_log_says(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    repo = make_repo(tmp_path)
    url = f"sqlite:///{tmp_path / 'log.db'}"
    assert publish(url, repo / "policies", "--json") == 0
    printed = json.loads(capsys.readouterr().out)
    fmt = "%H%x00%an <%ae>%x00%aI%x00%cn <%ce>%x00%cI%x00%s%x00%B"
    commit, author, authored, committer, committed, subject, body = git(
        repo, "log", "-1", f"--format={fmt}"
    ).split("\0")
    [published, enforced] = history(url, capsys)
    recorded = published["git"]
    assert recorded == printed["git"]
    assert recorded["state"] == "clean" and recorded["dirty_paths"] == []
    assert published["git_commit"] == recorded["commit"] == commit
    assert recorded["author"] == author == "Alice Author <alice@example.com>"
    assert recorded["committer"] == committer == "Carol Committer <carol@example.com>"
    assert (recorded["authored_at"], recorded["committed_at"]) == (authored, committed)
    assert recorded["subject"] == subject == "payments: tighten limits"
    assert recorded["message"] == body.rstrip("\n") + "\n"
    assert "Second paragraph line." in recorded["message"]
    assert recorded["branch"] == "main" and recorded["path"] == "policies"
    # the token in the remote URL never reaches the log
    assert recorded["remote"] == "https://git.example.com/org/policies.git"
    assert recorded["remote_name"] == "origin"
    assert published["bypasses"] == ["--skip-analysis"]
    assert enforced["git"] is None  # only the published event carries it
    # --allow-dirty on a clean tree bypassed nothing: not recorded
    assert publish(url, repo / "policies", "--allow-dirty", "--no-enforce") == 0
    assert history(url, capsys)[-1]["bypasses"] == ["--skip-analysis"]
    assert main(["policy", "history", "--log", url]) == 0
    table = capsys.readouterr().out
    assert commit[:12] in table and "Alice Author" in table


def test_a_dirty_tree_is_refused_unless_allow_dirty_which_is_recorded(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    repo = make_repo(tmp_path)
    url = f"sqlite:///{tmp_path / 'log.db'}"
    payments = repo / "policies" / "payments.yaml"
    payments.write_text(payments.read_text() + "\n# an uncommitted edit\n")
    assert publish(url, repo / "policies") == 5
    err = capsys.readouterr().err
    assert "policies/payments.yaml" in err and "--allow-dirty" in err
    assert not (tmp_path / "log.db").exists()  # nothing reached the log

    assert publish(url, repo / "policies", "--allow-dirty") == 0
    [published, _] = history(url, capsys)
    assert published["git"]["state"] == "dirty"
    assert published["git"]["dirty_paths"] == ["policies/payments.yaml"]
    assert published["git"]["commit"] == git(repo, "rev-parse", "HEAD").strip()
    assert published["bypasses"] == ["--skip-analysis", "--allow-dirty"]
    assert published["checks"]["bypasses"] == ["--skip-analysis", "--allow-dirty"]
    assert main(["policy", "history", "--log", url]) == 0
    table = capsys.readouterr().out
    assert "--allow-dirty" in table and "dirty" in table


def test_untracked_policy_files_are_dirty_other_untracked_files_are_not(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    repo = make_repo(tmp_path)
    url = f"sqlite:///{tmp_path / 'log.db'}"
    (repo / "policies" / "notes.txt").write_text("not a policy\n")
    (repo / "elsewhere.yaml").write_text("outside the directory\n")
    assert publish(url, repo / "policies", "--json") == 0
    assert json.loads(capsys.readouterr().out)["git"]["state"] == "clean"
    # a policy file the bundle would read but Git does not hold — even an ignored one
    extra = (
        (repo / "policies" / "web-fetch.yaml")
        .read_text()
        .replace("policy: web-fetch", "policy: web-fetch-copy")
    )
    (repo / ".gitignore").write_text("policies/extra.yaml\n")
    git(repo, "add", ".gitignore")
    git(repo, "commit", "-q", "-m", "ignore extra")
    (repo / "policies" / "extra.yaml").write_text(extra)
    source = git_source(repo / "policies", ["schema.yaml", "extra.yaml"])
    assert source.state == "dirty" and source.dirty_paths == ("policies/extra.yaml",)
    assert git_source(repo / "policies", ["schema.yaml"]).state == "clean"


def test_outside_git_is_recorded_not_refused(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    policies = tmp_path / "policies"
    shutil.copytree(EXAMPLES, policies)
    url = f"sqlite:///{tmp_path / 'log.db'}"
    assert publish(url, policies) == 0
    [published, _] = history(url, capsys)
    assert published["git"]["state"] == "not_in_git"
    assert published["git"]["commit"] is None and published["git_commit"] is None
    assert main(["policy", "history", "--log", url]) == 0
    assert "not in git" in capsys.readouterr().out


def test_a_repository_without_a_commit_is_dirty(tmp_path: Path) -> None:
    repo = tmp_path / "fresh"
    repo.mkdir()
    git(repo, "init", "-q")
    (repo / "schema.yaml").write_text("tools: {}\n")
    source = git_source(repo, ["schema.yaml"])
    assert source.state == "dirty" and source.commit is None
    assert source.dirty_paths == ("schema.yaml",)


def test_long_messages_are_bounded(tmp_path: Path) -> None:
    repo = make_repo(tmp_path)
    git(repo, "commit", "-q", "--allow-empty", "-m", "subject\n\n" + "x" * (2 * MAX_MESSAGE))
    source = git_source(repo / "policies", ["schema.yaml"])
    assert source.subject == "subject" and source.message_truncated
    assert source.message is not None and len(source.message) == MAX_MESSAGE


@pytest.mark.parametrize(
    ("url", "kept"),
    [
        ("https://bot:tok@host/x.git", "https://host/x.git"),
        ("https://tok@host/x.git", "https://host/x.git"),
        ("ssh://git:pw@host/x.git", "ssh://git@host/x.git"),
        ("git@host:org/x.git", "git@host:org/x.git"),
        ("/srv/git/x.git", "/srv/git/x.git"),
    ],
)
def test_remote_urls_lose_their_credentials(url: str, kept: str) -> None:
    assert strip_credentials(url) == kept


def test_a_tree_git_cannot_read_is_refused_and_allow_dirty_records_why(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    repo = make_repo(tmp_path)
    url = f"sqlite:///{tmp_path / 'log.db'}"
    monkeypatch.setenv("PATH", str(tmp_path / "no-git-here"))  # a .git, but no git to read it
    assert publish(url, repo / "policies") == 5
    assert "git is not installed" in capsys.readouterr().err
    assert publish(url, repo / "policies", "--allow-dirty", "--no-enforce") == 0
    monkeypatch.undo()
    [published] = history(url, capsys)
    assert published["git"]["state"] == "unknown"
    assert published["git"]["detail"] == "git is not installed"
    assert published["bypasses"] == ["--skip-analysis", "--allow-dirty"]
    outside = tmp_path / "outside"
    outside.mkdir()
    monkeypatch.setenv("PATH", str(tmp_path / "no-git-here"))
    assert git_source(outside).state == "not_in_git"  # no git and no .git: not in git
