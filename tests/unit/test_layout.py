"""The layering the architecture promises, checked on the source: app.py wires everything
and nothing below it imports it; protocol code is sans-io."""

from __future__ import annotations

import ast
from collections.abc import Iterator
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2] / "src" / "headrace"


def _modules() -> Iterator[tuple[str, Path]]:
    for path in sorted(ROOT.rglob("*.py")):
        rel = path.relative_to(ROOT.parent).with_suffix("")
        parts = list(rel.parts)
        if parts[-1] == "__init__":
            parts = parts[:-1]
        yield ".".join(parts), path


def imports_of(module: str, path: Path) -> set[str]:
    """Every module ``module`` imports (type-checking imports included), absolute."""
    tree = ast.parse(path.read_text())
    package = module if path.name == "__init__.py" else module.rsplit(".", 1)[0]
    found: set[str] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            found.update(a.name for a in node.names)
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = package.split(".")
                base = base[: len(base) - node.level + 1]
                target = ".".join(base + ([node.module] if node.module else []))
            else:
                target = node.module or ""
            found.add(target)
            found.update(f"{target}.{a.name}" for a in node.names)
    return found


MODULES = dict(_modules())


def test_the_walk_finds_the_tree() -> None:
    assert "headrace.app" in MODULES and "headrace.server.mqtt.connection" in MODULES
    assert "headrace.app" in imports_of("headrace.cli", MODULES["headrace.cli"])


@pytest.mark.parametrize("layer", ["api", "server", "push", "ingest", "state", "store", "proto"])
def test_nothing_below_app_imports_it(layer: str) -> None:
    offenders = [
        m
        for m, path in MODULES.items()
        if m.startswith(f"headrace.{layer}")
        and any(i == "headrace.app" or i.startswith("headrace.app.") for i in imports_of(m, path))
    ]
    assert not offenders


def test_protocol_code_is_sans_io() -> None:
    banned = {"asyncio", "socket", "ssl", "time", "selectors", "threading"}
    offenders = {
        m: sorted(banned & {i.split(".")[0] for i in imports_of(m, path)})
        for m, path in MODULES.items()
        if m.startswith("headrace.proto")
    }
    assert not {m: b for m, b in offenders.items() if b}


def test_the_client_sdk_shares_the_protocol_not_the_hub() -> None:
    """The SDK runs in third-party systems: it may use proto/ (the shared wire rules), never
    the hub's internals."""
    hub_parts = ("app", "api", "server", "push", "ingest", "state", "store", "scripts")
    offenders = {
        m: sorted(
            i
            for i in imports_of(m, path)
            if any(i == f"headrace.{p}" or i.startswith(f"headrace.{p}.") for p in hub_parts)
        )
        for m, path in MODULES.items()
        if m.startswith("headrace.client")
    }
    assert not {m: i for m, i in offenders.items() if i}
