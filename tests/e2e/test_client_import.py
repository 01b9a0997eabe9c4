"""``headrace import`` against a real hub: interrupted again and again (SIGKILL of the
importer, hub killed and restarted under it, Ctrl-C), it ends with exactly the source
data stored, every rejected row listed once, and a complete checkpoint."""

from __future__ import annotations

import json
import signal
import subprocess
import sys
from pathlib import Path
from typing import Any

import httpx
import pytest

from tests.conftest import HubProcess
from tests.e2e.client_support import (
    all_samples,
    broker,
    ca_file,
    checkpoint,
    run_import,
    start_import,
    wait_for,
)
from tests.e2e.mqtt_support import Provisioned, provision

T0 = 1_680_000_000_000
DEVICES = 10


def write_history(
    path: Path, times: int
) -> tuple[dict[str, set[tuple[str, int, Any]]], dict[int, Any]]:
    """A wide CSV of DEVICES x times rows plus bad rows; returns the samples that must be
    stored per device, and the bad rows' numbers with the code expected for each."""
    expected: dict[str, set[tuple[str, int, Any]]] = {f"dev{d}": set() for d in range(DEVICES)}
    bad: dict[int, Any] = {}
    lines = ["deviceKey,time,temp,mode,fan_fault"]
    for t in range(times):
        ts = T0 + t * 1000
        for d in range(DEVICES):
            temp = ((t * 7 + d) % 1000) / 4
            mode = (t + d) % 2
            fault = (t * d) % 2
            lines.append(f"dev{d},{ts},{temp},{mode},{fault}")
            expected[f"dev{d}"] |= {
                ("temp", ts, temp),
                ("mode", ts, mode),
                ("fan_fault", ts, bool(fault)),
            }
        if t % 397 == 5:
            lines.append(f"ghost,{ts},1.5,0,0")
            bad[len(lines) - 1] = 1257
        if t % 601 == 7:
            lines.append(f"dev1,{ts + 1},2.5,5,0")  # enum value out of range
            bad[len(lines) - 1] = 1204
        if t == times // 2:
            lines.append("dev2,soon,1,0,0")
            bad[len(lines) - 1] = None  # the reader refuses it
    path.write_text("\n".join(lines) + "\n")
    return expected, bad


def stored(api: httpx.Client, env: Provisioned) -> dict[str, list[tuple[str, int, Any]]]:
    return {
        f"dev{d}": [
            (s["point"], s["time"], s["value"])
            for s in all_samples(api, env.org, env.pk, f"dev{d}", T0, T0 + 10**9)
        ]
        for d in range(DEVICES)
    }


def rows_done(cp_path: Path) -> int:
    cp = checkpoint(cp_path)
    return int(cp["rows"]) if cp else 0


@pytest.mark.slow
def test_import_interrupted_again_and_again(
    hub: HubProcess, api: httpx.Client, tmp_path: Path
) -> None:
    env = provision(api, devices=DEVICES)
    src = tmp_path / "history.csv"
    expected, bad = write_history(src, 6000)
    total_rows = len(src.read_text().splitlines()) - 1
    cp_path = tmp_path / "import.checkpoint"
    rej_path = tmp_path / "import.rejects"
    log = tmp_path / "import.log"
    opts = (
        "--batch", "10", "--inflight", "4", "--connections", "2",
        "--checkpoint", str(cp_path), "--reject", str(rej_path),
    )  # fmt: skip

    def advance(by: int) -> int:
        """Let the running importer store ``by`` more rows than its checkpoint says now
        (a resumed importer starts from a checkpoint that may already be past any row
        count the test saw: counting from it would not wait for the importer at all)."""
        since = rows_done(cp_path)
        return int(
            wait_for(
                lambda: rows_done(cp_path) >= since + by and rows_done(cp_path), 60, f"{by} rows"
            )
        )

    # 1. SIGKILL of the importer
    p = start_import(hub, env, src, log, *opts)
    advance(2500)
    p.kill()
    assert p.wait() == -signal.SIGKILL

    # 2. the hub is killed and comes back under a running importer; then SIGKILL again
    p = start_import(hub, env, src, log, *opts)
    advance(2500)
    hub.kill()
    hub.start()
    advance(2500)
    p.kill()
    p.wait()

    # 3. a graceful hub restart under it, then Ctrl-C; one request in flight, so that the
    # rest of the file is still ahead when the interrupt comes (a fast hub finished it)
    one = ("--batch", "10", "--inflight", "1", "--connections", "1", *opts[6:])
    p = start_import(hub, env, src, log, *one)
    advance(2500)
    hub.restart()
    # interrupt as soon as it is going again: the rest of the file must still be ahead
    advance(100)
    assert p.poll() is None, "the import ended before it could be interrupted"
    p.send_signal(signal.SIGINT)
    assert p.wait(timeout=30) == 130, log.read_text()[-3000:]
    cp = checkpoint(cp_path)
    assert cp is not None and not cp["complete"] and cp["rows"] < total_rows

    # 4. to the end
    r = run_import(hub, env, src, *opts)
    assert r.returncode == 0, r.stdout + r.stderr + log.read_text()[-3000:]
    assert "resumed at row" in r.stdout

    # exactly the source data, nothing missing, nothing twice
    got = stored(api, env)
    for device, samples in got.items():
        assert len(samples) == len(set(samples)) == len(expected[device]), device
        assert set(samples) == expected[device], device
    # every bad row rejected once, in file order, with its code
    rejects = [json.loads(line) for line in rej_path.read_text().splitlines()]
    assert [(x["row"], x["code"]) for x in rejects] == sorted(bad.items())
    assert all(x["message"] for x in rejects)
    assert next(x for x in rejects if x["code"] == 1257)["deviceKey"] == "ghost"
    cp = checkpoint(cp_path)
    assert cp is not None and cp["complete"]
    assert cp["rows"] == total_rows
    assert cp["rejected"] == len(bad)
    assert cp["points"] == sum(len(v) for v in expected.values())
    assert cp["reject_size"] == rej_path.stat().st_size

    # a finished import is not redone
    r = run_import(hub, env, src, *opts)
    assert r.returncode == 0 and "already imported" in r.stdout


def test_rejected_rows_land_in_the_reject_file(
    hub: HubProcess, api: httpx.Client, tmp_path: Path
) -> None:
    env = provision(api, devices=2)
    src = tmp_path / "h.csv"
    src.write_text(
        "deviceKey,time,temp,mode\n"
        f"dev0,{T0},1.5,1\n"
        f"ghost,{T0},1.5,1\n"
        f"dev0,{T0 + 1},2.5,7\n"
        f"dev1,{T0 + 1},hot,0\n"
        f",{T0 + 2},1,1\n"
        f"dev1,yesterday,1,1\n"
        f"dev1,{T0 + 3},1\n"
        f"dev1,{T0 + 4},4.5,0\n"
    )
    r = run_import(hub, env, src, "--batch", "3")
    assert r.returncode == 0, r.stderr
    assert "6 rows rejected" in r.stdout
    rejects = [json.loads(line) for line in Path(f"{src}.rejects.jsonl").read_text().splitlines()]
    assert [(x["row"], x["code"]) for x in rejects] == [
        (2, 1257),
        (3, 1204),
        (4, 1204),
        (5, None),
        (6, None),
        (7, None),
    ]
    by_row = {x["row"]: x for x in rejects}
    assert by_row[2]["deviceKey"] == "ghost" and "not found" in by_row[2]["message"]
    assert by_row[3]["measurepoints"] == {"temp": 2.5, "mode": 7}
    assert "enum" in by_row[3]["message"]
    assert by_row[4]["measurepoints"]["temp"] == "hot"
    assert by_row[6]["source"] == ["dev1", "yesterday", "1", "1"]
    # the good rows are stored
    assert {
        (s["point"], s["time"]) for s in all_samples(api, env.org, env.pk, "dev0", T0, T0 + 10)
    } == {
        ("temp", T0),
        ("mode", T0),
    }
    assert {
        (s["point"], s["time"]) for s in all_samples(api, env.org, env.pk, "dev1", T0, T0 + 10)
    } == {
        ("temp", T0 + 4),
        ("mode", T0 + 4),
    }


def test_long_jsonl_over_tls_with_signed_login(
    hub: HubProcess, api: httpx.Client, tmp_path: Path
) -> None:
    env = provision(api, devices=3)
    src = tmp_path / "h.jsonl"
    rows = []
    for t in range(50):
        for d in range(3):
            rows.append({"dev": f"dev{d}", "ts": T0 + t, "p": "temp", "v": t + d / 10})
            rows.append({"dev": f"dev{d}", "ts": T0 + t, "p": "Power", "v": t, "q": 9})
    src.write_text("".join(json.dumps(r) + "\n" for r in rows))
    r = subprocess.run(
        [
            sys.executable,
            "-m",
            "headrace",
            "import",
            str(src),
            "--broker",
            broker(hub, tls=True),
            "--ca-file",
            ca_file(hub),
            "--product",
            env.pk,
            "--product-secret",
            env.secret,
            "--layout",
            "long",
            "--device-column",
            "dev",
            "--time-column",
            "ts",
            "--point-column",
            "p",
            "--value-column",
            "v",
            "--quality-column",
            "q",
            "--batch",
            "7",
            "--no-progress",
        ],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert r.returncode == 0, r.stdout + r.stderr
    for d in range(3):
        got = all_samples(api, env.org, env.pk, f"dev{d}", T0, T0 + 50)
        assert len(got) == 100
        assert {"point": "Power", "time": T0 + 7, "value": 7.0, "quality": 9} in got
        assert {"point": "temp", "time": T0 + 7, "value": 7 + d / 10} in got


def test_parquet_wide(hub: HubProcess, api: httpx.Client, tmp_path: Path) -> None:
    import pyarrow as pa
    import pyarrow.parquet as pq

    env = provision(api, devices=2)
    n = 500
    table = pa.table(
        {
            "deviceKey": [f"dev{i % 2}" for i in range(n)],
            "time": pa.array([T0 * 1000 + i * 1000 for i in range(n)], type=pa.timestamp("us")),
            "temp": [i / 2 for i in range(n)],
            "branchCurr": [[str(i), str(i + 1)] for i in range(n)],
        }
    )
    src = tmp_path / "h.parquet"
    pq.write_table(table, src, row_group_size=128)
    r = run_import(hub, env, src, "--batch", "50", "--inflight", "3")
    assert r.returncode == 0, r.stdout + r.stderr
    got = all_samples(api, env.org, env.pk, "dev1", T0, T0 + n)
    assert len(got) == 2 * (n // 2)
    assert {"point": "branchCurr", "time": T0 + 1, "value": ["1", "2"]} in got
    assert {"point": "temp", "time": T0 + 3, "value": 1.5} in got


def test_checkpoint_of_another_file_is_refused(
    hub: HubProcess, api: httpx.Client, tmp_path: Path
) -> None:
    env = provision(api, devices=1)
    src = tmp_path / "h.csv"
    src.write_text(f"deviceKey,time,temp\ndev0,{T0},1\n")
    assert run_import(hub, env, src).returncode == 0
    src.write_text(f"deviceKey,time,temp\ndev0,{T0},2\n")
    r = run_import(hub, env, src)
    assert r.returncode == 1 and "belongs to another import" in " ".join(r.stderr.split())
    r = run_import(hub, env, src, "--restart")
    assert r.returncode == 0, r.stderr
    assert all_samples(api, env.org, env.pk, "dev0", T0, T0 + 1) == [
        {"point": "temp", "time": T0, "value": 2.0}
    ]


def test_bad_invocations(hub: HubProcess, api: httpx.Client, tmp_path: Path) -> None:
    env = provision(api, devices=1)
    src = tmp_path / "h.csv"
    src.write_text("device,time,temp\nd,1,1\n")
    r = run_import(hub, env, src)
    assert r.returncode == 1 and "no device column 'deviceKey'" in r.stderr
    env.password = "wrong"
    r = run_import(hub, env, src, "--device-column", "device")
    assert r.returncode == 1 and "login refused" in r.stderr
