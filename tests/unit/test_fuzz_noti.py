"""Property fuzzing of the noti line framing (bounded examples).

tests/proto/test_noti_framing.py checks well-formed lines in any chunks; here the input
is any bytes (line endings, carriage returns, blank and over-long lines in any mix),
compared with a model of C.1's framing, and the server session on top of it must give
the same events however the bytes are cut.
"""

from __future__ import annotations

import os

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from headrace.proto.noti import LineBuffer, LineTooLong, LoginRequested, ServerSession

LIMIT = 16
FUZZ = settings(
    max_examples=int(os.environ.get("FUZZ_EXAMPLES", "300")),
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow],
)

# bytes rich in what framing cares about
_piece = st.one_of(
    st.sampled_from([b"\n", b"\r", b"\r\n", b" ", b"\t", b"{}", b"x" * LIMIT]),
    st.binary(max_size=LIMIT + 4),
)
streams = st.lists(_piece, max_size=16).map(b"".join)


def model(stream: bytes, limit: int) -> tuple[list[bytes], bool]:
    """C.1 framing of a whole stream: the lines (without ``\\r\\n``; blank ones skipped)
    before the first line over ``limit``, and whether there is one. The unfinished last
    line counts as over the limit as soon as it is (a ``\\r`` at its end aside)."""
    *complete, rest = stream.split(b"\n")
    lines: list[bytes] = []
    for line in complete:
        line = line.removesuffix(b"\r")
        if len(line) > limit:
            return lines, True
        if line.strip():
            lines.append(line)
    return lines, len(rest.removesuffix(b"\r")) > limit


def feed(buf: LineBuffer, pieces: list[bytes]) -> tuple[list[bytes], bool]:
    lines: list[bytes] = []
    for piece in pieces:
        try:
            lines += buf.feed(piece)
        except LineTooLong as exc:
            lines += exc.lines
            assert buf.failed and buf.buffered == 0
            for later in (b"", b"ok\n", piece):  # spent: every feed refuses, no lines
                try:
                    buf.feed(later)
                except LineTooLong as again:
                    assert again.lines == []
                else:
                    raise AssertionError("a spent buffer took more input")
            return lines, True
        assert buf.buffered <= LIMIT + 1
    return lines, False


def _cut(stream: bytes, cuts: list[int]) -> list[bytes]:
    cuts = sorted(cuts)
    return [stream[a:b] for a, b in zip([0, *cuts], [*cuts, len(stream)], strict=True)]


@FUZZ
@given(stream=streams, cuts=st.lists(st.integers(0, 200), max_size=20))
def test_framing_of_any_bytes_in_any_chunks_is_the_model(stream: bytes, cuts: list[int]) -> None:
    pieces = _cut(stream, [c for c in cuts if c <= len(stream)])
    got = feed(LineBuffer(LIMIT), pieces)
    assert got == model(stream, LIMIT)
    assert got == feed(LineBuffer(LIMIT), [stream])
    lines, _ = got
    assert all(b"\n" not in line and len(line) <= LIMIT and line.strip() for line in lines)


@FUZZ
@given(
    stream=st.lists(
        st.one_of(
            _piece,
            st.sampled_from(
                [
                    b'{"cmd":"enterprise_ping"}\n',
                    b'{"cmd":"enterprise_login_req","data":{"enterprise_id":"e",'
                    b'"enterprise_secret":"s","prefetch_count":5}}\n',
                    b'{"cmd":"enterprise_event_ack","delivery_id":1}\n',
                    b"[" * 250 + b"\n",
                    b'{"a":' * 50 + b"\n",
                ]
            ),
        ),
        max_size=12,
    ).map(b"".join),
    cuts=st.lists(st.integers(0, 2000), max_size=20),
)
def test_the_server_session_is_the_same_however_its_input_is_cut(
    stream: bytes, cuts: list[int]
) -> None:
    # the login stays unanswered: when it is answered would depend on the cuts
    def run(pieces: list[bytes]) -> tuple[list[object], bytes]:
        session: ServerSession[int] = ServerSession(max_line=256)
        events: list[object] = []
        for piece in pieces:
            events += session.receive_data(piece)  # never raises
        return events, session.data_to_send()

    events, out = run(_cut(stream, [c for c in cuts if c <= len(stream)]))
    assert (events, out) == run([stream])
    assert all(line.startswith(b'{"cmd":') for line in out.splitlines())
    assert sum(isinstance(e, LoginRequested) for e in events) <= 1
