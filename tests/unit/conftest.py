"""Fixtures of the unit tests."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from headrace.store.sqlite.store import SQLiteStore


@pytest.fixture
def store(tmp_path: Path) -> Iterator[SQLiteStore]:
    """A real SQLite store in the test's directory, started (modules may define their own)."""
    s = SQLiteStore(tmp_path / "h.db")
    s.start()
    yield s
    s.close()
