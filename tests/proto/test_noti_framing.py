"""noti line framing: limits, partial lines, any chunking."""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from headrace.proto.noti import DEFAULT_MAX_LINE, LineBuffer, LineTooLong


def test_default_limit_is_64k() -> None:
    assert DEFAULT_MAX_LINE == 64 * 1024
    assert LineBuffer().max_line == DEFAULT_MAX_LINE


def test_split_and_partial() -> None:
    buf = LineBuffer(10)
    assert buf.feed(b"ab\ncd\r\nef") == [b"ab", b"cd"]
    assert buf.buffered == 2
    assert buf.feed(b"") == []
    assert buf.feed(b"g\n") == [b"efg"]
    assert buf.buffered == 0


def test_blank_lines_skipped() -> None:
    assert LineBuffer(10).feed(b"\n\r\n  \n\t\r\nx\n") == [b"x"]


def test_limit_excludes_line_ending() -> None:
    buf = LineBuffer(4)
    assert buf.feed(b"abcd\r") == []
    assert buf.feed(b"\nabcd\n") == [b"abcd", b"abcd"]


def test_complete_line_over_limit() -> None:
    buf = LineBuffer(4)
    with pytest.raises(LineTooLong) as info:
        buf.feed(b"ok\nabcde\nlater\n")
    assert info.value.lines == [b"ok"]
    assert info.value.error_code == 4002
    assert buf.failed
    # Spent: nothing more is accepted.
    with pytest.raises(LineTooLong) as again:
        buf.feed(b"x\n")
    assert again.value.lines == []


def test_partial_line_over_limit_fails_before_newline() -> None:
    buf = LineBuffer(4)
    assert buf.feed(b"abcd") == []
    with pytest.raises(LineTooLong):
        buf.feed(b"e")
    assert buf.buffered == 0


def test_bad_limit() -> None:
    with pytest.raises(ValueError):
        LineBuffer(0)


def test_byte_at_a_time_is_linear() -> None:
    # 64 KiB fed one byte at a time must not rescan the partial line each time.
    buf = LineBuffer()
    payload = b"x" * (DEFAULT_MAX_LINE - 1)
    for i in range(len(payload)):
        assert buf.feed(payload[i : i + 1]) == []
    assert buf.feed(b"\n") == [payload]


@settings(max_examples=300, deadline=None)
@given(
    st.lists(st.binary(min_size=1, max_size=40).filter(lambda b: b"\n" not in b), max_size=20),
    st.lists(st.integers(1, 50), min_size=1, max_size=50),
)
def test_any_chunking_gives_same_lines(lines: list[bytes], cuts: list[int]) -> None:
    stream = b"".join(line + b"\n" for line in lines)
    expected = [line.removesuffix(b"\r") for line in lines]
    expected = [line for line in expected if line.strip()]
    buf = LineBuffer(64)
    got: list[bytes] = []
    pos = 0
    i = 0
    while pos < len(stream):
        step = cuts[i % len(cuts)]
        got += buf.feed(stream[pos : pos + step])
        pos += step
        i += 1
    assert got == expected
    assert buf.buffered == 0


@settings(max_examples=200, deadline=None)
@given(st.lists(st.binary(max_size=200), max_size=30))
def test_buffer_bounded(chunks: list[bytes]) -> None:
    buf = LineBuffer(50)
    for chunk in chunks:
        try:
            buf.feed(chunk)
        except LineTooLong:
            assert buf.buffered == 0
            return
        assert buf.buffered <= 51
