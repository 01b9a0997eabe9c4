"""Fixtures of the end-to-end tests beyond the hub's (tests/conftest.py)."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.e2e.kafka_support import Tansu


@pytest.fixture
def tansu(tmp_path: Path) -> Iterator[Tansu]:
    """A Kafka-protocol broker (tansu) of its own on a free loopback port."""
    t = Tansu(tmp_path / "tansu.log")
    t.start()
    yield t
    t.stop()
