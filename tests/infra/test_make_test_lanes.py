"""`make test` splits tests/ between two lanes (the Makefile's MAIN_TESTS and RUNTIME_TESTS): every
test file must be run by exactly one of them, or a new folder would silently never run in CI."""

from __future__ import annotations

import re
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parents[2]


def lane(name: str) -> tuple[list[Path], list[Path]]:
    """The paths a lane gives pytest and those it passes to --ignore."""
    match = re.search(rf"^{name} \?= (.+)$", (REPO_ROOT / "Makefile").read_text(), re.MULTILINE)
    assert match, f"the Makefile sets {name}"
    words = match.group(1).split()
    ignored = [REPO_ROOT / w.removeprefix("--ignore=") for w in words if w.startswith("--ignore=")]
    included = [REPO_ROOT / w for w in words if not w.startswith("-")]
    return included, ignored


def runs(path: Path, lane_paths: tuple[list[Path], list[Path]]) -> bool:
    included, ignored = lane_paths
    return any(path.is_relative_to(p) for p in included) and not any(path.is_relative_to(p) for p in ignored)


def test_every_test_file_runs_in_exactly_one_lane_of_make_test() -> None:
    lanes = lane("MAIN_TESTS"), lane("RUNTIME_TESTS")
    test_files = sorted((REPO_ROOT / "tests").rglob("test_*.py"))
    assert test_files

    counts = {path.relative_to(REPO_ROOT): sum(runs(path, paths) for paths in lanes) for path in test_files}

    assert {path: n for path, n in counts.items() if n != 1} == {}
