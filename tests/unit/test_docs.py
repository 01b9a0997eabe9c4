"""Docs pinned to code.

- ``docs/operations.md``: its settings table lists exactly the settings of
  ``headrace.config`` (by name), with their defaults.
- ``docs/protocols.md``: every reply code (``REPLY_*``) and token status (``TOKEN_*``) of
  ``headrace.proto.enos`` is in its table with its number, every code with its HTTP
  status, the protocol names (methods, actions, topics, sign methods) are there, and every
  setting it names exists.
- Every section of protocols.md that the code cites (the file name followed by a label
  such as ``B.2``) is a heading there.

Each check is a function returning the problems it finds, so that
``test_checks_catch_broken_copies`` can show that each one fails on a broken copy.
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from pathlib import Path

from headrace.config import SETTINGS, Setting
from headrace.proto import enos

ROOT = Path(__file__).resolve().parents[2]
DOCS = ROOT / "docs"
OPERATIONS = DOCS / "operations.md"
PROTOCOLS = DOCS / "protocols.md"

# a section label: one capital letter, then optionally .1, .2 ... (A, A.5, C.2)
_LABEL = r"[A-Z](?:\.\d+)*(?!\w)"
_CITATION = re.compile(rf"protocols\.md`?\)?\s+({_LABEL}(?:\s*(?:,|-|–|/|\band\b)\s*{_LABEL})*)")
_HEADING = re.compile(r"^(#{1,6})\s+([A-Z](?:\.\d+)*)\.?(?:\s|$)", re.MULTILINE)
_BACKTICKED_DOTTED = re.compile(r"`([a-z_]+(?:\.[a-z_]+)+)`")


# -- markdown helpers --------------------------------------------------------------------


def headings(text: str) -> dict[str, int]:
    """Section label -> heading level, for headings like ``### A.5 Replies``."""
    return {m.group(2): len(m.group(1)) for m in _HEADING.finditer(text)}


def section(text: str, label: str) -> str:
    """The text from the heading ``label`` up to the next heading of its level or above
    ("" when there is no such heading)."""
    lines = text.splitlines()
    for i, line in enumerate(lines):
        m = _HEADING.match(line)
        if m is None or m.group(2) != label:
            continue
        end = re.compile(rf"^#{{1,{len(m.group(1))}}}\s")
        for j in range(i + 1, len(lines)):
            if end.match(lines[j]):
                return "\n".join(lines[i:j])
        return "\n".join(lines[i:])
    return ""


def table_rows(text: str) -> list[list[str]]:
    """The cells of every markdown table row in ``text`` (separator rows left out)."""
    rows = []
    for line in text.splitlines():
        line = line.strip()
        if not line.startswith("|") or re.fullmatch(r"\|[\s|:-]+\|", line):
            continue
        rows.append([c.strip() for c in line.strip("|").split("|")])
    return rows


def settings_table(text: str) -> dict[str, str]:
    """``{setting name: default cell}`` of the table headed ``| setting | default | ...``."""
    rows: dict[str, str] = {}
    inside = False
    for line in text.splitlines():
        cells = [c.strip() for c in line.strip().strip("|").split("|")]
        if not line.strip().startswith("|"):
            if inside:
                break
            continue
        if cells[:2] == ["setting", "default"]:
            inside = True
            continue
        if not inside or re.fullmatch(r"[\s|:-]+", line.strip()):
            continue
        m = re.fullmatch(r"`([^`]+)`", cells[0])
        rows[m.group(1) if m else cells[0]] = cells[1] if len(cells) > 1 else ""
    return rows


def table_row(s: Setting) -> str:
    """A settings table row as the regenerated table has it."""
    return f"| `{s.name}` | `{s.default!r}` | {s.help} |"


def cited_labels(text: str) -> list[str]:
    """The protocols.md section labels cited in ``text``, in order."""
    return [label for m in _CITATION.finditer(text) for label in re.findall(_LABEL, m.group(1))]


def citations(paths: Iterable[Path]) -> list[tuple[str, str]]:
    """``(file, label)`` for every protocols.md section label cited in ``paths``."""
    return [
        (str(path.relative_to(ROOT)), label)
        for path in paths
        for label in cited_labels(path.read_text(encoding="utf-8"))
    ]


def code_files() -> list[Path]:
    """Where the code cites protocols.md: src/ (required), and tests/ and the other docs."""
    files = sorted((ROOT / "src").rglob("*.py"))
    files += [p for p in sorted((ROOT / "tests").rglob("*.py")) if p.resolve() != Path(__file__)]
    files += [p for p in sorted(DOCS.glob("*.md")) if p.name != PROTOCOLS.name]
    return files


def _int_constants(prefix: str) -> dict[str, int]:
    return {
        name: value
        for name, value in vars(enos).items()
        if name.startswith(prefix) and type(value) is int
    }


# -- the checks --------------------------------------------------------------------------


def settings_problems(operations_md: str, settings: Iterable[Setting] = SETTINGS) -> list[str]:
    settings = list(settings)
    table = settings_table(operations_md)
    names = {s.name for s in settings}
    problems = []
    for s in settings:
        if s.name not in table:
            problems.append(f"missing from the settings table: {table_row(s)}")
        elif table[s.name] != f"`{s.default!r}`":
            problems.append(
                f"{s.name}: the table gives default {table[s.name]}, config has `{s.default!r}`"
            )
    problems += [f"not a setting of headrace.config: {n}" for n in table if n not in names]
    return problems


def code_problems(protocols_md: str) -> list[str]:
    """Every REPLY_* code in A.5 and every TOKEN_* status in B.1: a table row with the
    number in its first cell and the constant's name."""
    problems = []
    for label, prefix in (("A.5", "REPLY_"), ("B.1", "TOKEN_")):
        rows = table_rows(section(protocols_md, label))
        for name, value in _int_constants(prefix).items():
            if not any(r[0] == str(value) and f"`{name}`" in r for r in rows):
                problems.append(f"{label}: no table row for {value} `{name}`")
    return problems


def http_status_problems(protocols_md: str) -> list[str]:
    """Every reply code with its HTTP status (``REPLY_HTTP_STATUS``) in B.2's table."""
    rows = {(r[0], r[1]) for r in table_rows(section(protocols_md, "B.2")) if len(r) > 1}
    expected = {c: s for c, s in enos.REPLY_HTTP_STATUS.items() if c != enos.REPLY_OK}
    expected[enos.HTTP_OK] = enos.REPLY_HTTP_STATUS[enos.REPLY_OK]
    return [
        f"B.2: no row | {code} | {status} |"
        for code, status in sorted(expected.items())
        if (str(code), str(status)) not in rows
    ]


def name_problems(protocols_md: str) -> list[str]:
    """The protocol's names as the code spells them, each in its section."""
    wanted: list[tuple[str, str]] = []
    wanted += [("A.2", f"`{m}`") for m in enos.SIGN_METHODS]
    wanted += [("A.2", enos.SIGNED_USERNAME_PREFIX)]
    kinds = list(enos.METHOD_OF)
    wanted += [("A.3", f"`{enos.request_topic('{pk}', k)}`") for k in kinds]
    wanted += [("A.4", f"`{m}`") for m in enos.METHODS]
    wanted += [("B.2", f"`{a}`") for a in enos.HTTP_ACTIONS]
    return [
        f"{label}: {text} not found"
        for label, text in wanted
        if text not in section(protocols_md, label)
    ]


def setting_name_problems(protocols_md: str, settings: Iterable[Setting] = SETTINGS) -> list[str]:
    """Every `group.name` in protocols.md whose group is a settings group is a setting."""
    names = {s.name for s in settings}
    groups = {n.split(".")[0] for n in names if "." in n}
    found = {m for m in _BACKTICKED_DOTTED.findall(protocols_md) if m.split(".")[0] in groups}
    return [f"protocols.md names `{n}`, which is not a setting" for n in sorted(found - names)]


def citation_problems(protocols_md: str, cited: Iterable[tuple[str, str]]) -> list[str]:
    labels = headings(protocols_md)
    return [
        f"{where} cites protocols.md {label}: no such heading"
        for where, label in cited
        if label not in labels
    ]


# -- the tests ---------------------------------------------------------------------------


def test_operations_lists_every_setting_and_no_other() -> None:
    problems = settings_problems(OPERATIONS.read_text(encoding="utf-8"))
    hint = "\nregenerate the table (`headrace settings`):\n" + "\n".join(map(table_row, SETTINGS))
    assert not problems, "\n".join(problems) + hint


def test_protocols_has_every_reply_and_token_code() -> None:
    problems = code_problems(PROTOCOLS.read_text(encoding="utf-8"))
    assert not problems, "\n".join(problems)


def test_protocols_has_the_http_status_of_every_code() -> None:
    problems = http_status_problems(PROTOCOLS.read_text(encoding="utf-8"))
    assert not problems, "\n".join(problems)


def test_protocols_names_methods_topics_actions_sign_methods() -> None:
    problems = name_problems(PROTOCOLS.read_text(encoding="utf-8"))
    assert not problems, "\n".join(problems)


def test_protocols_names_only_existing_settings() -> None:
    problems = setting_name_problems(PROTOCOLS.read_text(encoding="utf-8"))
    assert not problems, "\n".join(problems)


def test_every_cited_section_exists() -> None:
    cited = citations(code_files())
    from_src = [c for c in cited if c[0].startswith("src/")]
    assert from_src, "no protocols.md citations found under src/: is the pattern broken?"
    problems = citation_problems(PROTOCOLS.read_text(encoding="utf-8"), cited)
    assert not problems, "\n".join(problems)


def test_checks_catch_broken_copies() -> None:
    """Each check reports a deliberately broken copy of the docs."""
    ops = OPERATIONS.read_text(encoding="utf-8")
    proto = PROTOCOLS.read_text(encoding="utf-8")
    first, last = SETTINGS[0], SETTINGS[-1]
    # a setting dropped from the table, a row for a setting that does not exist, a wrong
    # default
    dropped = "\n".join(line for line in ops.splitlines() if f"| `{last.name}` |" not in line)
    assert settings_problems(dropped)
    bogus = ops.replace(table_row(first), table_row(first) + "\n| `mqtt.bogus` | `1` | x |", 1)
    assert bogus != ops and settings_problems(bogus)
    assert settings_problems(ops, [*SETTINGS, Setting("x.y", int, 1, "new")])
    wrong = ops.replace(f"| `{first.name}` | `{first.default!r}` |", f"| `{first.name}` | `0` |")
    assert wrong != ops and settings_problems(wrong)
    # a code's row gone, a token status renumbered, an HTTP status changed
    code, name = enos.REPLY_DEVICE_NOT_FOUND, "REPLY_DEVICE_NOT_FOUND"
    assert code_problems(proto.replace(f"| {code} | `{name}` |", f"| 1 | `{name}` |"))
    assert code_problems(proto.replace("`TOKEN_EXPIRED`", "`TOKEN_GONE`"))
    assert http_status_problems(proto.replace(f"| {code} | 404 |", f"| {code} | 400 |"))
    assert name_problems(proto.replace("`hmacmd5`", "`hmac-md5`"))
    assert setting_name_problems(proto + "\n`mqtt.no_such_setting`\n")
    # a cited section whose heading was renamed, and a citation of a missing section
    cited = citations(code_files())
    assert citation_problems(proto.replace("### A.5 ", "### A.50 "), cited)
    assert citation_problems(proto, [("src/x.py", "B.9")])
    # the citation pattern itself: several labels, ranges, a bare part, no false hits
    text = "(docs/protocols.md A.4, A.5) protocols.md C.1-C.2; protocols.md A, B) protocols.md Also"
    assert cited_labels(text) == ["A.4", "A.5", "C.1", "C.2", "A", "B"]
