"""Every Python example of docs/integrators.md runs as written against a real hub."""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

import httpx
import pytest

from tests.conftest import HubProcess
from tests.e2e.client_support import broker, ca_file
from tests.e2e.mqtt_support import Provisioned, provision

DOC = Path(__file__).resolve().parents[2] / "docs" / "integrators.md"
BLOCK = re.compile(r"```python\n# example: (\w+)\n(.*?)```", re.S)
EXAMPLES = dict(BLOCK.findall(DOC.read_text()))


@pytest.fixture(scope="module")
def env(shared_api: httpx.Client) -> Provisioned:
    return provision(shared_api, devices=1)


def test_the_guide_has_examples() -> None:
    assert set(EXAMPLES) >= {"post", "signed", "inflight", "outbox", "import"}


@pytest.mark.parametrize("name", sorted(EXAMPLES))
def test_example_runs(name: str, shared_hub: HubProcess, env: Provisioned, tmp_path: Path) -> None:
    environ = {k: v for k, v in os.environ.items() if not k.startswith("HEADRACE_")}
    environ.update(
        BROKER=broker(shared_hub),
        TLS_BROKER=broker(shared_hub, tls=True),
        CA_FILE=ca_file(shared_hub),
        USERNAME=env.username,
        PASSWORD=env.password,
        PRODUCT=env.pk,
        PRODUCT_SECRET=env.secret,
        DEVICE=env.devices[0],
        OUTBOX=str(tmp_path / "outbox.db"),
    )
    r = subprocess.run(
        [sys.executable, "-c", EXAMPLES[name]],
        env=environ,
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert r.returncode == 0, r.stdout + r.stderr
    expected = {
        "post": "refused: 1257",
        "signed": "200",
        "inflight": "50 requests stored",
        "outbox": "stored: 100 left: 0 refused: 0",
        "import": "500 points stored; 0 rows rejected",
    }
    if name in expected:
        assert expected[name] in r.stdout, r.stdout
