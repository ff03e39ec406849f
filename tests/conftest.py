"""The suite runs on two pytest-xdist workers, a file at a time on each (pyproject.toml: ``-n 2 --dist loadfile``).
The files whose tests take minutes go first, so that neither worker is left with one of them at the end."""

from __future__ import annotations

import pytest

# The five files with the longest totals in a --durations run on 2 cores (1.8 to 4.7 minutes each), longest first.
SLOW_FILES_FIRST = (
    "test_run_safety.py",
    "test_sweep_faults.py",
    "test_library.py",
    "test_resume.py",
    "test_new_agent.py",
)


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    def rank(item: pytest.Item) -> int:
        name = item.path.name
        return SLOW_FILES_FIRST.index(name) if name in SLOW_FILES_FIRST else len(SLOW_FILES_FIRST)

    items.sort(key=rank)  # stable: the order within a file, and of the other files, stays
