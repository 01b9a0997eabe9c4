"""Property fuzzing of the multipart reading of the HTTP integration endpoint (bounded).

``read_multipart`` as ``_integrate`` uses it: the boundary from the content type
(``_boundary``), the body from an ASGI ``receive`` in chunks of any size, file parts into
a real blob store. Any body and any boundary ends in the ``enos-message`` part (or
None), or in a ``Refused`` with 1220 or 1008 (1202 only for a Content-MD5 that does not
match): never another exception. Well-formed bodies give back exactly what they carry.
"""

from __future__ import annotations

import asyncio
import hashlib
import os
import tempfile
from pathlib import Path
from types import SimpleNamespace
from typing import Any

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from headrace.api.integration import Incoming, Upload, _boundary, read_multipart
from headrace.errors import Refused
from headrace.store.blobs import BlobStore

MAX_MESSAGE = 300
MAX_FILE = 600
MAX_FILES = 3
FUZZ = settings(
    max_examples=int(os.environ.get("FUZZ_EXAMPLES", "200")),
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow],
)

_BLOBS = BlobStore(Path(tempfile.mkdtemp(prefix="headrace-fuzz-")) / "files", io_threads=2)
_BLOBS.open()
_SERVICES: Any = SimpleNamespace(
    settings={
        "ingest.max_message_size": MAX_MESSAGE,
        "http.max_file_size": MAX_FILE,
        "http.max_files": MAX_FILES,
    },
    blobs=_BLOBS,
)


def _scope(content_type: str, length: int | None) -> dict[str, Any]:
    headers = [(b"content-type", content_type.encode("latin-1"))]
    if length is not None:
        headers.append((b"content-length", str(length).encode()))
    return {"type": "http", "headers": headers, "query_string": b"", "client": None}


def read(
    content_type: str, chunks: list[bytes], length: int | None = None
) -> tuple[bytes | None, dict[str, Upload]]:
    """``read_multipart`` over a fake ASGI receive; refusals propagate."""
    events = [
        {"type": "http.request", "body": c, "more_body": i < len(chunks) - 1}
        for i, c in enumerate(chunks or [b""])
    ]

    async def receive() -> dict[str, Any]:
        return events.pop(0)

    async def run() -> tuple[bytes | None, dict[str, Upload]]:
        uploads: dict[str, Upload] = {}
        try:
            boundary = _boundary(content_type)
            request = Incoming(_scope(content_type, length), receive)  # type: ignore[arg-type]
            return await read_multipart(_SERVICES, request, boundary, uploads), uploads
        finally:
            for up in uploads.values():
                up.writer.abort()  # as the endpoint does

    return asyncio.run(run())


def _cut(body: bytes, cuts: list[int]) -> list[bytes]:
    cuts = sorted(c for c in cuts if c <= len(body))
    return [body[a:b] for a, b in zip([0, *cuts], [*cuts, len(body)], strict=True)]


def _expect_refusal_or_message(content_type: str, body: bytes, cuts: list[int]) -> None:
    try:
        message, _ = read(content_type, _cut(body, cuts))
    except Refused as e:
        allowed = {1220, 1008} | ({1202} if b"content-md5" in body.lower() else set())
        assert e.reply_code in allowed, (e.reply_code, e.message)
        return
    assert message is None or len(message) <= MAX_MESSAGE


# ----------------------------------------------------------------------------- bodies

_boundaries = st.one_of(
    st.text(st.characters(codec="latin-1"), max_size=80),
    st.text("abcXYZ019'()+_,-./:=? ", min_size=1, max_size=72),
    st.sampled_from(["-", "--", "a b", '"', '""', " ", "x" * 200]),
)


@st.composite
def content_types(draw: st.DrawFn, boundary: str) -> str:
    quoted = draw(st.booleans())
    value = f'"{boundary}"' if quoted else boundary
    extra = draw(st.sampled_from(["", "; charset=utf-8", ";", "; boundary=other"]))
    return f"multipart/form-data{extra}; boundary={value}"


@st.composite
def parts(draw: st.DrawFn) -> tuple[str, str | None, bytes, dict[str, str]]:
    """(field name, filename, content, extra headers)."""
    name = draw(st.sampled_from(["enos-message", "enos-file", "other", ""]))
    filename = draw(st.none() | st.text(st.characters(codec="utf-8"), max_size=12))
    content = draw(st.binary(max_size=MAX_FILE + 50))
    headers: dict[str, str] = {}
    if draw(st.booleans()):
        headers["Content-Type"] = draw(st.sampled_from(["application/json", "x/y", ""]))
    if draw(st.integers(0, 4)) == 0:
        md5 = hashlib.md5(content).hexdigest()
        headers["Content-MD5"] = md5 if draw(st.booleans()) else "0" * 32
    return name, filename, content, headers


def _render(boundary: str, items: list[tuple[str, str | None, bytes, dict[str, str]]]) -> bytes:
    out = bytearray()
    for name, filename, content, headers in items:
        disposition = f'form-data; name="{name}"'
        if filename is not None:
            disposition += f'; filename="{filename.replace(chr(34), "%22")}"'
        out += f"--{boundary}\r\nContent-Disposition: {disposition}\r\n".encode()
        for key, value in headers.items():
            out += f"{key}: {value}\r\n".encode()
        out += b"\r\n" + content + b"\r\n"
    out += f"--{boundary}--\r\n".encode()
    return bytes(out)


@FUZZ
@given(
    content_type=st.text(st.characters(codec="latin-1"), max_size=60)
    | _boundaries.flatmap(content_types),
    body=st.binary(max_size=400),
    cuts=st.lists(st.integers(0, 400), max_size=8),
)
def test_any_body_under_any_content_type(content_type: str, body: bytes, cuts: list[int]) -> None:
    _expect_refusal_or_message(content_type, body, cuts)


@FUZZ
@given(data=st.data())
def test_multipart_bodies_mangled_and_cut_anywhere(data: st.DataObject) -> None:
    boundary = data.draw(st.text("abcdefghijklmnopqrstuvwxyz0123456789-", min_size=1, max_size=40))
    body = bytearray(_render(boundary, data.draw(st.lists(parts(), max_size=5))))
    for _ in range(data.draw(st.integers(0, 3))):
        at = data.draw(st.integers(0, len(body)))
        mangle = data.draw(st.sampled_from(["flip", "cut", "insert"]))
        if mangle == "flip" and at < len(body):
            body[at] ^= data.draw(st.integers(1, 255))
        elif mangle == "cut":
            del body[at:]
        else:
            body[at:at] = data.draw(
                st.sampled_from([b"\r\n", b"--", f"\r\n--{boundary}\r\n".encode(), b"\r\n\r\n"])
            )
    cuts = data.draw(st.lists(st.integers(0, len(body)), max_size=10))
    _expect_refusal_or_message(f"multipart/form-data; boundary={boundary}", bytes(body), cuts)


@FUZZ
@given(
    boundary=st.text("abcdefghijklmnopqrstuvwxyz0123456789-'()+_,./:=?", min_size=1, max_size=70),
    message=st.binary(max_size=MAX_MESSAGE),
    files=st.dictionaries(
        st.text(
            st.characters(codec="utf-8", exclude_characters="\r\n%\\"), min_size=1, max_size=12
        ),
        st.binary(max_size=MAX_FILE),
        max_size=MAX_FILES,
    ),
    cuts=st.lists(st.integers(0, 3000), max_size=10),
)
def test_well_formed_bodies_give_back_what_they_carry(
    boundary: str, message: bytes, files: dict[str, bytes], cuts: list[int]
) -> None:
    items = [("enos-message", None, message, {"Content-Type": "application/json"})]
    items += [("enos-file", name, content, {}) for name, content in files.items()]
    body = _render(boundary, items)
    got, uploads = read(f'multipart/form-data; boundary="{boundary}"', _cut(body, cuts), len(body))
    assert got == message
    assert set(uploads) == set(files)
    for name, up in uploads.items():
        content, info = files[name], up.writer.info
        assert info is not None
        assert (info.sha256, info.md5, info.size) == (
            hashlib.sha256(content).hexdigest(),
            hashlib.md5(content).hexdigest(),
            len(content),
        )
