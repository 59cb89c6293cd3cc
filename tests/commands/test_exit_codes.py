"""One exit-code enum, one meaning per number, and the README's table is that enum."""

from __future__ import annotations

import re
from pathlib import Path

from ordinance.commands.output import ExitCode

README = Path(__file__).resolve().parents[2] / "README.md"


def test_the_readme_lists_every_exit_code_once() -> None:
    text = README.read_text(encoding="utf-8")
    table = text.split("<!-- exit-codes -->", 1)[1].split("\n\n", 1)[0]
    codes = [int(m) for m in re.findall(r"^\|\s*(\d+)\s*\|", table, re.MULTILINE)]
    assert codes == [code.value for code in ExitCode]
    assert len(set(codes)) == len(codes)
