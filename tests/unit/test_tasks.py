"""The one periodic-task helper every background job runs through."""

from __future__ import annotations

import asyncio
import logging

import pytest

from headrace.tasks import cancel, every

log = logging.getLogger("headrace.test")


async def test_a_failed_run_is_logged_and_the_next_run_goes_on(
    caplog: pytest.LogCaptureFixture,
) -> None:
    runs: list[int] = []

    async def job() -> None:
        runs.append(len(runs))
        if len(runs) == 2:
            raise RuntimeError("disk gone")

    task = every(0.01, job, "pruning things", log, now=True)
    for _ in range(200):
        if len(runs) >= 4:
            break
        await asyncio.sleep(0.01)
    await cancel(task)
    assert len(runs) >= 4 and task.cancelled()
    failed = [r for r in caplog.records if r.getMessage() == "pruning things failed"]
    assert len(failed) == 1 and failed[0].name == "headrace.test" and failed[0].exc_info


async def test_the_first_run_waits_one_interval_unless_now() -> None:
    runs: list[str] = []

    async def job(name: str) -> None:
        runs.append(name)

    later = every(30, lambda: job("later"), "later", log)
    at_once = every(30, lambda: job("now"), "now", log, now=True)
    await asyncio.sleep(0.05)
    await cancel(later, at_once, None)
    assert runs == ["now"]
