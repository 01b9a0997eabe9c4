"""A SIGKILL loop during ``headrace import``: the hub, the importer or both are killed at
random moments, again and again, and restarted (the hub on its ports, the importer from
its checkpoint, with other connection settings each time); at the end the query API
returns exactly the source rows: every point, none missing, none twice, values equal,
and every bad row is in the reject file once.

The moments are random: the seed is in every failure message, and ``KILL_SEED=<seed>``
draws the same rows, delays and victims again (as far as the timing lets it).
Bounded: 300,000 points, six kills; 12-30 s on the 2-CPU machine.
"""

from __future__ import annotations

import json
import os
import random
import subprocess
import time
from pathlib import Path

import httpx
import pytest

from tests.conftest import HubProcess
from tests.e2e.client_support import checkpoint, run_import, start_import, wait_for
from tests.e2e.mqtt_support import provision
from tests.e2e.test_client_import import DEVICES, rows_done, stored, write_history

TIMES = 20_000  # x DEVICES rows x 3 points: 600,000 points (and the bad rows)
KILLS = 6
# the client's ConnectError on its first attempt (refused, or reset before CONNACK)
FIRST_CONNECT_FAILED = ("error: cannot connect to ", "error: connection closed before CONNACK")


@pytest.mark.slow
def test_kill_loop_ends_with_exactly_the_source(
    hub: HubProcess, api: httpx.Client, tmp_path: Path
) -> None:
    seed = int(os.environ.get("KILL_SEED", random.randrange(2**32)))
    rng = random.Random(seed)
    env = provision(api, devices=DEVICES)
    src = tmp_path / "history.csv"
    expected, bad = write_history(src, TIMES)
    total = len(src.read_text().splitlines()) - 1
    cp_path, rej_path, log = (tmp_path / n for n in ("import.cp", "import.rej", "import.log"))
    fixed = ("--batch", "50", "--checkpoint", str(cp_path), "--reject", str(rej_path))

    def why(what: str) -> str:
        return f"KILL_SEED={seed}: {what}\nimporter:\n{log.read_text()[-3000:]}\nhub:\n{hub.log()}"

    def importer() -> subprocess.Popen[bytes]:
        # how the importer sends may change on every resume; what it sends may not
        spread = ("--connections", str(rng.randint(1, 3)), "--inflight", str(rng.choice([4, 16])))
        return start_import(hub, env, src, log, *fixed, *spread)

    def ended(p: subprocess.Popen[bytes]) -> bool:
        """The importer exited; one whose first connection failed (the hub killed again
        right after its start) exits 1 at once, by design: it is run again."""
        if p.poll() is None:
            return False
        last = log.read_text().rstrip().rpartition("\n")[2]
        if p.returncode == 1 and last.startswith(FIRST_CONNECT_FAILED):
            return False
        assert p.returncode == 0, why(f"importer exited {p.returncode} after kills {done}")
        return True

    # a kill when the checkpoint has passed a random row, plus a random delay: mid-import
    # on any machine, at any moment of the request/ack/checkpoint cycle
    marks = sorted(rng.sample(range(total // 20, total * 9 // 10), KILLS))
    done: list[str] = []
    resumes = 0  # importers killed before the import was complete, started again
    p = importer()
    try:
        for mark in marks:
            wait_for(lambda: rows_done(cp_path) >= mark or p.poll() is not None, 60, f"row {mark}")  # noqa: B023
            time.sleep(rng.uniform(0, 0.4))
            if ended(p):
                break  # finished first: no more moments to kill at
            victim = rng.choice(["hub", "importer", "both"])
            if victim != "importer":
                hub.kill()
            if victim != "hub" or p.poll() is not None:
                p.kill()
                p.wait()
            cp = checkpoint(cp_path) or {}
            done.append(f"{victim}@{cp.get('rows', 0)}")
            resumes += victim != "hub" and not cp.get("complete")
            if victim != "importer":
                time.sleep(rng.uniform(0, 0.5))  # an outage: the importer keeps retrying
                hub.start()
            if p.returncode is not None:
                p = importer()  # resumes from the checkpoint
        deadline = time.monotonic() + 60
        while not ended(p):
            assert time.monotonic() < deadline, why(f"no end after kills {done}")
            if p.poll() is not None:
                p = importer()
            time.sleep(0.05)
    finally:
        if p.poll() is None:
            p.kill()
            p.wait()
    print(f"KILL_SEED={seed} kills: {done}")
    assert len(done) >= KILLS // 2, why(f"the import outran the kills: {done}")
    if resumes:
        assert "resumed at row" in log.read_text(), why(f"no resume after kills {done}")

    # exactly the source data: nothing missing, nothing twice, the same values
    got = stored(api, env)
    for device, samples in got.items():
        assert len(samples) == len(set(samples)), why(f"{device}: duplicates")
        missing, extra = expected[device] - set(samples), set(samples) - expected[device]
        assert not missing and not extra, why(
            f"{device}: {len(missing)} missing (e.g. {sorted(missing)[:3]}), "
            f"{len(extra)} unexpected (e.g. {sorted(extra)[:3]}) after kills {done}"
        )
    rejects = [json.loads(line) for line in rej_path.read_text().splitlines()]
    assert [(x["row"], x["code"]) for x in rejects] == sorted(bad.items()), why("rejects")
    cp = checkpoint(cp_path)
    assert cp is not None and cp["complete"] and cp["rows"] == total, why(f"checkpoint {cp}")
    r = run_import(hub, env, src, *fixed)
    assert r.returncode == 0 and "already imported" in r.stdout, why(r.stdout + r.stderr)
