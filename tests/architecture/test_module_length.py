"""A module past ~400 lines says why at its top (DEVELOPERS.md, "Shape"): within its first 30 lines, a sentence
starting "Past 400 lines" (or "Past 500", "Over 500", "Longer than 400 lines"). A module that grows past the
line without a reason fails here, so the reason is written when the growth happens, not found later."""

from __future__ import annotations

import re
from pathlib import Path

from tests.support import ROOT

LIMIT_LINES = 400
HEAD_LINES = 30
REASON = re.compile(r"(?i)\b(past|over|longer than) [45]00 lines")
FOLDERS = ("layers", "functions", "local_runtime", "local_profile", "billing_ops", "scripts", "tests", "tools")


def python_modules() -> list[Path]:
    found = []
    for folder in FOLDERS:
        for path in (ROOT / folder).rglob("*.py"):
            if any(part.startswith(".") or part in {"__pycache__", "build"} for part in path.relative_to(ROOT).parts):
                continue
            found.append(path)
    return sorted(found)


def long_modules_without_a_reason(paths: list[Path]) -> list[str]:
    missing = []
    for path in paths:
        lines = path.read_text(encoding="utf-8").splitlines()
        if len(lines) > LIMIT_LINES and not any(REASON.search(line) for line in lines[:HEAD_LINES]):
            missing.append(f"{path.relative_to(ROOT)} ({len(lines)} lines)")
    return missing


def test_every_module_past_400_lines_says_why_at_its_top() -> None:
    modules = python_modules()
    assert len(modules) > 100  # the walk found the project
    assert long_modules_without_a_reason(modules) == []


def test_the_check_finds_a_long_module_without_a_reason() -> None:
    long = ROOT / "tests" / "architecture" / "_long_probe.py"
    try:
        long.write_text("x = 1\n" * (LIMIT_LINES + 1))
        assert long_modules_without_a_reason([long]) == [f"tests/architecture/_long_probe.py ({LIMIT_LINES + 1} lines)"]
        long.write_text("# Past 400 lines: a probe.\n" + "x = 1\n" * LIMIT_LINES)
        assert long_modules_without_a_reason([long]) == []
    finally:
        long.unlink(missing_ok=True)
