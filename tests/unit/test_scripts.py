"""Parsing-script sandbox: compile checks, the EnOS byte convention, limits, isolation."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import textwrap
import threading
import time
from collections.abc import Iterator

import pytest

from headrace.errors import ClientError
from headrace.proto.enos import REPLY_DECODE_FAILED
from headrace.scripts import ScriptEngine, ScriptError, compile_script, debug_run
from headrace.scripts.sandbox import LocalEngine, ScriptLimits

# A realistic meter: 20 bytes -> 5 measurepoints.
#   0-1 meter number u16 | 2-5 time (s) u32 | 6-7 temperature s16 /10 | 8-9 humidity u16 /10
#   10-11 voltage u16 /100 | 12-15 current s32 /1000 | 16-19 energy u32 (Wh)
METER_SCRIPT = textwrap.dedent(
    """\
    function u8(rawData, i) { return rawData[i] & 0xff; }
    function u16(rawData, i) { return (u8(rawData, i) << 8) | u8(rawData, i + 1); }
    function s16(rawData, i) { var v = u16(rawData, i); return v & 0x8000 ? v - 0x10000 : v; }
    function s32(rawData, i) {
      return (u8(rawData, i) << 24) | (u8(rawData, i + 1) << 16) |
             (u8(rawData, i + 2) << 8) | u8(rawData, i + 3);
    }
    function u32(rawData, i) { return s32(rawData, i) >>> 0; }

    function rawDataToJsonStr(rawData) {
      if (rawData.length !== 20) throw new Error("expected 20 bytes, got " + rawData.length);
      return JSON.stringify({
        id: "1", version: "1.0", method: "integration.measurepoint.post",
        params: [{
          deviceKey: "meter" + u16(rawData, 0),
          time: u32(rawData, 2) * 1000,
          measurepoints: {
            temp: s16(rawData, 6) / 10,
            humidity: u16(rawData, 8) / 10,
            voltage: u16(rawData, 10) / 100,
            current: s32(rawData, 12) / 1000,
            energy: u32(rawData, 16)
          }
        }]
      });
    }

    function jsonStrToRawData(jsonStr) {
      var reply = JSON.parse(jsonStr);
      var code = reply.code;
      // signed and unsigned byte values mixed on purpose
      return [0x01, (code >> 8) & 0xff, code & 0xff, -1, -128, 255];
    }
    """
)

METER_RAW = bytes.fromhex(
    "0007"  # meter 7
    "6553f100"  # 1700000000 s
    "ff38"  # -200 -> -20.0 degC
    "0258"  # 600 -> 60.0 %
    "5a28"  # 23080 -> 230.8 V
    "fffffc18"  # -1000 -> -1.0 A
    "f0000001"  # 4026531841 Wh (above 2^31: needs >>> 0)
)

ECHO = "function rawDataToJsonStr(rawData) { return JSON.stringify(rawData); }"


def fails(fn, *args, **kwargs) -> ScriptError:
    with pytest.raises(ScriptError) as info:
        fn(*args, **kwargs)
    return info.value


@pytest.fixture(scope="module", params=["process", "none"])
def engine(request) -> Iterator[ScriptEngine]:
    """Both isolations; one engine per module (worker start-up is paid once), so each
    test uses its own product keys (``pk``)."""
    with ScriptEngine(isolation=request.param) as engine:
        yield engine


@pytest.fixture
def pk(request) -> str:
    """A product key of this test alone."""
    return request.node.name


def keys_on_different_workers(engine: ScriptEngine, prefix: str) -> tuple[str, str]:
    """Two product keys that do not share a sandbox worker."""
    first = f"{prefix}-a"
    if engine._pool is None:
        return first, f"{prefix}-b"
    for i in range(100):
        other = f"{prefix}-b{i}"
        if engine._pool.route(other) != engine._pool.route(first):
            return first, other
    raise AssertionError("routing puts every key on one worker")


# -- compile ---------------------------------------------------------------------------------


def test_compile_ok_with_and_without_reply_function():
    compile_script(METER_SCRIPT)
    compile_script(ECHO)


def test_compile_accepts_let_const_and_strict_definitions():
    compile_script("const rawDataToJsonStr = (raw) => JSON.stringify(raw);")
    compile_script('"use strict";\nlet rawDataToJsonStr = function (raw) { return "{}"; };')


def test_compile_missing_function():
    err = fails(compile_script, "function rawDataToJson(raw) { return '{}'; }")
    assert err.kind == "definition"
    assert "rawDataToJsonStr" in err.message


def test_compile_function_names_that_are_not_functions():
    assert fails(compile_script, "var rawDataToJsonStr = 5;").kind == "definition"
    err = fails(compile_script, ECHO + "\nvar jsonStrToRawData = 'x';")
    assert err.kind == "definition"
    assert "jsonStrToRawData is string" in err.message


@pytest.mark.parametrize(
    ("source", "line", "column", "detail"),
    [
        ("var x = 1;\nvar y = ;\n" + ECHO, 2, 9, "';'"),
        ("\n\n  let a = 1 +* 2;", 3, 14, "'*'"),
        ('"use strict";\nfunction rawDataToJsonStr(a) { with (a) {} }', 2, 32, "with"),
        (
            "function rawDataToJsonStr(a) {\n  return a.map(function (b) { return b & 0xff; );\n}",
            2,
            48,
            "')'",
        ),
    ],
)
def test_compile_syntax_error_names_line_and_column(source, line, column, detail):
    err = fails(compile_script, source)
    assert err.kind == "syntax"
    assert (err.line, err.column) == (line, column)
    assert err.message.startswith(f"SyntaxError at line {line}, column {column}: ")
    assert detail in err.message


def test_compile_syntax_error_at_end_of_input():
    err = fails(compile_script, "function rawDataToJsonStr(a) {\n  return '{}';\n")
    assert err.kind == "syntax"
    assert err.line == 3
    assert err.column == 1


def test_compile_runtime_syntax_error_is_not_a_parse_error():
    err = fails(compile_script, "JSON.parse('{bad');\n" + ECHO)
    assert err.kind == "exception"
    assert err.line is None
    assert "SyntaxError" in err.message
    assert "line 1" in err.message


def test_compile_top_level_throw_and_loop():
    err = fails(compile_script, "throw new Error('not today');")
    assert err.kind == "exception"
    assert "Error: not today" in err.message
    started = time.perf_counter()
    err = fails(compile_script, "while (true) {}\n" + ECHO, time_limit_ms=50)
    assert err.kind == "time"
    assert time.perf_counter() - started < 2.0


def test_compile_source_limits():
    err = fails(compile_script, ECHO + "//" + "x" * 2000, max_source_size=1024)
    assert err.kind == "source"
    assert "1 KiB" in err.message
    compile_script(ECHO + "//" + "x" * 2000, max_source_size=4096)
    assert fails(compile_script, ECHO + "\n'\x00'").kind == "source"
    assert fails(compile_script, ECHO + "\n'\ud800'").kind == "source"


def test_default_source_limit_is_256_kib():
    padding = "\n//" + "x" * (256 * 1024)
    assert fails(compile_script, ECHO + padding).kind == "source"


# -- the EnOS byte convention ------------------------------------------------------------------


def test_realistic_meter_decode(engine, pk):
    out = json.loads(engine.raw_to_json(pk, 1, METER_SCRIPT, METER_RAW))
    assert out["method"] == "integration.measurepoint.post"
    (item,) = out["params"]
    assert item["deviceKey"] == "meter7"
    assert item["time"] == 1_700_000_000_000
    assert item["measurepoints"] == {
        "temp": -20,
        "humidity": 60,
        "voltage": 230.8,
        "current": -1,
        "energy": 4026531841,
    }


def test_raw_data_is_signed_bytes(engine, pk):
    raw = bytes([0, 1, 0x7F, 0x80, 0xFE, 0xFF])
    assert json.loads(engine.raw_to_json(pk, 1, ECHO, raw)) == [0, 1, 127, -128, -2, -1]
    assert json.loads(engine.raw_to_json(pk, 1, ECHO, bytes(range(256)))) == [
        b - 256 if b > 127 else b for b in range(256)
    ]
    assert engine.raw_to_json(pk, 1, ECHO, b"") == "[]"
    assert engine.raw_to_json(pk, 1, ECHO, bytearray(b"\x00\x00")) == "[0,0]"
    assert engine.raw_to_json(pk, 1, ECHO, memoryview(b"\x05")) == "[5]"


def test_large_payload(engine, pk):
    script = "function rawDataToJsonStr(r) { var s = 0; for (var i = 0; i < r.length; i++) s += r[i] & 0xff; return '' + s; }"
    raw = bytes(range(256)) * 256
    assert engine.raw_to_json(pk, 1, script, raw) == str(sum(raw))


def test_json_to_raw_present(engine, pk):
    assert engine.json_to_raw(pk, 1, METER_SCRIPT, '{"id":"1","code":1202}') == bytes(
        [0x01, 0x04, 0xB2, 0xFF, 0x80, 0xFF]
    )


def test_json_to_raw_absent(engine, pk):
    assert engine.json_to_raw(pk, 1, ECHO, '{"code":200}') is None


def test_json_to_raw_typed_array_and_bad_results(engine, pk):
    script = ECHO + "\nfunction jsonStrToRawData(s) { return new Uint8Array([1, 2, 250]); }"
    assert engine.json_to_raw(pk, 1, script, "{}") == b"\x01\x02\xfa"
    for version, (body, expected) in enumerate(
        [
            ("return 'abc';", "returned string"),
            ("return null;", "returned null"),
            ("return [1, 'x'];", "element 1 is string"),
            ("return [1.5];", "element 0 is 1.5"),
        ]
    ):
        bad = ECHO + "\nfunction jsonStrToRawData(s) { " + body + " }"
        err = fails(engine.json_to_raw, pk + "-bad", version, bad, "{}")
        assert err.kind == "result"
        assert expected in err.message
    assert fails(engine.json_to_raw, pk, 1, script, "{\x00}").kind == "source"
    assert fails(engine.json_to_raw, pk, 1, script, "{\ud800}").kind == "source"


# -- failures and limits -------------------------------------------------------------------------

COUNTER = """
var calls = 0;
function rawDataToJsonStr(rawData) {
  calls++;
  if (rawData[0] === 1) { while (true) {} }
  if (rawData[0] === 2) { var a = []; while (true) a.push(new Array(100000).fill(a.length)); }
  if (rawData[0] === 3) { var s = "x"; while (true) s = s + s; }
  if (rawData[0] === 4) throw new TypeError("bad header byte " + rawData[1]);
  if (rawData[0] === 5) return { not: "a string" };
  if (rawData[0] === 6) return rawDataToJsonStr(rawData);
  return JSON.stringify({ calls: calls });
}
"""


def calls(engine: ScriptEngine, product: str) -> int:
    return int(json.loads(engine.raw_to_json(product, 1, COUNTER, b"\x00"))["calls"])


def test_infinite_loop_is_stopped_and_the_product_recovers(engine, pk):
    assert calls(engine, pk) == 1
    assert calls(engine, pk) == 2
    started = time.perf_counter()
    err = fails(engine.raw_to_json, pk, 1, COUNTER, b"\x01")
    elapsed = time.perf_counter() - started
    assert err.kind == "time"
    assert err.message == "rawDataToJsonStr: time limit of 100 ms exceeded"
    assert 0.09 < elapsed < 1.0
    # the context was rebuilt: the script's state starts over
    assert calls(engine, pk) == 1


@pytest.mark.parametrize("code", [2, 3])
def test_memory_bomb_is_stopped(engine, pk, code):
    assert calls(engine, pk) == 1
    err = fails(engine.raw_to_json, pk, 1, COUNTER, bytes([code]))
    assert err.kind in ("memory", "crash")  # QuickJS may crash on the way (then: restarted)
    if err.kind == "memory":
        assert "memory limit of 32 MiB exceeded" in err.message
    assert calls(engine, pk) == 1


def test_throw_carries_the_script_message(engine, pk):
    err = fails(engine.raw_to_json, pk, 1, COUNTER, b"\x04\x09")
    assert err.kind == "exception"
    assert err.message.startswith("rawDataToJsonStr: TypeError: bad header byte 9")
    assert err.stack is not None
    assert "rawDataToJsonStr" in err.stack
    assert "__headrace" not in err.stack


def test_non_string_result(engine, pk):
    err = fails(engine.raw_to_json, pk, 1, COUNTER, b"\x05")
    assert err.kind == "result"
    assert err.message == "rawDataToJsonStr returned object, not a string"
    undefined = "function rawDataToJsonStr(r) {}"
    assert "returned undefined" in fails(engine.raw_to_json, pk, 2, undefined, b"").message


def test_stack_overflow(engine, pk):
    err = fails(engine.raw_to_json, pk, 1, COUNTER, b"\x06")
    assert err.kind == "stack"
    assert calls(engine, pk) == 1


def test_uninterruptible_builtin_is_reported_over_the_limit(engine, pk):
    script = "function rawDataToJsonStr(r) { return '' + Array.prototype.indexOf.call({length: 4e7}, 1); }"
    err = fails(engine.raw_to_json, pk, 1, script, b"")
    assert err.kind == "time"
    assert "cannot be interrupted" in err.message


def test_script_error_shape():
    err = fails(debug_run, "function rawDataToJsonStr(r) { throw new Error('x'); }", b"")
    assert isinstance(err, ClientError)
    assert err.reply_code == REPLY_DECODE_FAILED == 1202
    assert err.status == 422
    assert err.to_json() == {
        "error": {"status": 422, "code": "script_failed", "message": err.message}
    }


def test_failed_build_is_remembered_until_the_version_changes(engine, pk):
    broken = "function rawDataToJsonStr(r) {"
    first = fails(engine.raw_to_json, pk, 1, broken, b"")
    started = time.perf_counter()
    again = fails(engine.raw_to_json, pk, 1, broken, b"")
    assert time.perf_counter() - started < 0.01
    assert again is not first
    assert (again.kind, again.message, again.line) == (first.kind, first.message, 1)
    assert first.kind == "syntax"
    assert engine.raw_to_json(pk, 2, ECHO, b"\x01") == "[1]"


def test_hostile_scripts_cannot_hang_the_host():
    # quickjs-python turns an escaping exception into text with the time limit switched
    # off, holding the GIL; without the prelude's guards these scripts hang the process
    # that runs them. In-process engine on purpose (a worker would only be restarted),
    # in a subprocess so a regression fails the test instead of hanging the suite.
    code = textwrap.dedent(
        """
        from headrace.scripts import ScriptEngine, ScriptError
        engine = ScriptEngine(isolation="none")
        hostile = [
            "Error.prototype.toString = function () { while (1) {} };",
            "Object.prototype[Symbol.toPrimitive] = function () { while (1) {} };",
            "String.prototype.__defineGetter__('stack', function () { while (1) {} });",
            "try { Object.defineProperty(InternalError.prototype, 'name', {get: function () { while (1) {} }}); } catch (e) {}",
        ]
        bodies = ["while (1) {}", "throw 'x';", "throw {toString: function () { while (1) {} }};",
                  "var e = new Error('x'); Object.defineProperty(e, 'stack', {get: function () { while (1) {} }}); throw e;"]
        kinds = []
        for setup in hostile:
            for body in bodies:
                for where in ("top", "call"):
                    src = setup + ("\\n" + body + "\\n" if where == "top" else "") + \\
                        "function rawDataToJsonStr(r) { " + (body if where == "call" else "") + " return '1'; }"
                    try:
                        engine.debug_run(src, b"")
                        kinds.append("ok")
                    except ScriptError as exc:
                        kinds.append(exc.kind)
        print(",".join(kinds))
        """
    )
    done = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, timeout=60, check=True
    )
    kinds = done.stdout.strip().split(",")
    assert len(kinds) == 32
    assert set(kinds) <= {"time", "exception"}


# -- versions, isolation, sandboxing ------------------------------------------------------------------


def test_new_version_takes_effect(engine, pk):
    v1 = "function rawDataToJsonStr(r) { return '\"v1\"'; }"
    v2 = "function rawDataToJsonStr(r) { return '\"v2\"'; }"
    assert engine.raw_to_json(pk, "1", v1, b"") == '"v1"'
    assert engine.raw_to_json(pk, "1", v2, b"") == '"v1"'  # same version: source not reread
    assert engine.raw_to_json(pk, "2", v2, b"") == '"v2"'
    assert engine.raw_to_json(pk, "1", v1, b"") == '"v1"'  # rollback is a version change too


def test_products_are_isolated(engine, pk):
    writer = (
        "globalThis.leak = 'secret'; var shared = 1; function rawDataToJsonStr(r) { return '1'; }"
    )
    reader = (
        "function rawDataToJsonStr(r) {"
        " return JSON.stringify([typeof leak, typeof shared, typeof globalThis.leak]); }"
    )
    a, b = pk + "-a", pk + "-b"
    assert engine.raw_to_json(a, 1, writer, b"") == "1"
    assert json.loads(engine.raw_to_json(b, 1, reader, b"")) == ["undefined"] * 3
    # the same holds for products that share a worker process
    if engine._pool is not None:
        same = next(
            f"{pk}-c{i}"
            for i in range(100)
            if engine._pool.route(f"{pk}-c{i}") == engine._pool.route(a)
        )
        assert json.loads(engine.raw_to_json(same, 1, reader, b"")) == ["undefined"] * 3


def test_no_host_functions_are_exposed(engine, pk):
    names = ["print", "console", "std", "os", "require", "fetch", "setTimeout",
             "XMLHttpRequest", "process", "scriptArgs", "__loadScript"]  # fmt: skip
    script = (
        "function rawDataToJsonStr(r) { var names = " + json.dumps(names) + ";"
        " return JSON.stringify(names.filter(function (n) { return typeof globalThis[n] !== 'undefined'; })); }"
    )
    assert engine.raw_to_json(pk, 1, script, b"") == "[]"
    dynamic_import = "function rawDataToJsonStr(r) { var p = import('os'); return typeof p; }"
    assert engine.raw_to_json(pk, 2, dynamic_import, b"") == "object"  # a promise, never run


def test_discard_forgets_the_context(engine, pk):
    assert calls(engine, pk) == 1
    assert calls(engine, pk) == 2
    engine.discard(pk)
    assert calls(engine, pk) == 1


def test_local_engine_keeps_at_most_max_contexts():
    local = LocalEngine(ScriptLimits(), max_contexts=2)
    for product in ("a", "b", "c"):
        local.call(1, product, 1, ECHO, b"")
    assert len(local) == 2
    local.discard("c")
    assert len(local) == 1


def test_worker_that_dropped_a_context_gets_the_source_again(pk):
    with ScriptEngine(workers=1, max_contexts=2) as engine:
        for product in ("a", "b", "c", "a"):  # "a" dropped by the worker's LRU, then resent
            assert calls(engine, f"{pk}-{product}") == 1


# -- threads and processes ---------------------------------------------------------------------


@pytest.mark.parametrize("isolation", ["process", "none"])
def test_runaway_product_does_not_block_another(pk, isolation):
    with ScriptEngine(time_limit_ms=1000, isolation=isolation) as engine:
        a, b = keys_on_different_workers(engine, pk)
        runaway = "function rawDataToJsonStr(r) { while (true) {} }"
        engine.raw_to_json(b, 1, METER_SCRIPT, METER_RAW)  # B's context is ready
        engine.raw_to_json(a, 1, ECHO, b"")  # A's worker is running
        result: list[ScriptError] = []

        def run_a() -> None:
            try:
                engine.raw_to_json(a, 2, runaway, b"")
            except ScriptError as exc:
                result.append(exc)

        thread = threading.Thread(target=run_a)
        thread.start()
        time.sleep(0.1)  # A is now spinning
        started = time.perf_counter()
        for _ in range(50):
            engine.raw_to_json(b, 1, METER_SCRIPT, METER_RAW)
        elapsed = time.perf_counter() - started
        a_still_running = thread.is_alive()
        thread.join()
        assert a_still_running
        assert elapsed < 0.3
        assert [exc.kind for exc in result] == ["time"]


def test_calls_for_one_product_are_serialized(engine, pk):
    results: list[int] = []

    def worker() -> None:
        for _ in range(200):
            results.append(calls(engine, pk))

    threads = [threading.Thread(target=worker) for _ in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert sorted(results) == list(range(1, 801))


STUCK = "function rawDataToJsonStr(r) { return '' + Array.prototype.indexOf.call({length: LENGTH}, 1); }"


def test_stuck_product_is_refused_as_busy_in_process():
    engine = ScriptEngine(isolation="none", busy_timeout_s=0.1)
    stuck = STUCK.replace("LENGTH", "1e8")
    first: list[ScriptError] = []

    def run() -> None:
        try:
            engine.raw_to_json("stuck", 1, stuck, b"")
        except ScriptError as exc:
            first.append(exc)

    thread = threading.Thread(target=run)
    thread.start()
    time.sleep(0.05)
    started = time.perf_counter()
    err = fails(engine.raw_to_json, "stuck", 1, stuck, b"")
    assert err.kind == "busy"
    assert time.perf_counter() - started < 0.5
    err = fails(engine.raw_to_json, "stuck", 1, stuck, b"")  # refused at once now
    assert err.kind == "busy"
    thread.join()
    assert [exc.kind for exc in first] == ["time"]


def test_watchdog_kills_a_worker_stuck_in_native_code(pk):
    with ScriptEngine(busy_timeout_s=0.5, workers=1) as engine:
        assert calls(engine, pk + "-other") == 1
        for stuck in (
            STUCK.replace("LENGTH", "1e15"),
            "function rawDataToJsonStr(r) { return '' + /(a+)+b/.test('a'.repeat(40) + 'c'); }",
        ):
            started = time.perf_counter()
            err = fails(engine.raw_to_json, pk, stuck, stuck, b"")
            assert err.kind == "time"
            assert "restarted" in err.message
            assert time.perf_counter() - started < 3.0
        # the worker was restarted: contexts are rebuilt from the source
        assert calls(engine, pk + "-other") == 1


def test_worker_crash_is_survived_and_repeat_offenders_are_refused(pk):
    with ScriptEngine(time_limit_ms=5000, workers=1) as engine:
        assert engine._pool is not None
        worker = engine._pool._workers[0]
        spin = "function rawDataToJsonStr(r) { while (true) {} }"

        def crash_during_call() -> ScriptError:
            def kill_soon() -> None:
                time.sleep(0.2)
                assert worker.process is not None
                os.kill(worker.process.pid, signal.SIGSEGV)  # what a QuickJS fault does

            killer = threading.Thread(target=kill_soon)
            killer.start()
            try:
                return fails(engine.raw_to_json, pk, 1, spin, b"")
            finally:
                killer.join()

        for _ in range(3):
            err = crash_during_call()
            assert err.kind == "crash"
            assert "restarted" in err.message
            assert calls(engine, pk + "-other") == 1  # a new worker serves other products
        started = time.perf_counter()
        err = fails(engine.raw_to_json, pk, 1, spin, b"")
        assert err.kind == "crash"
        assert err.message.startswith("script refused")
        assert time.perf_counter() - started < 0.05
        assert engine.raw_to_json(pk, 2, ECHO, b"") == "[]"  # a new version is welcome


def test_checks_count_strikes_in_a_worker_of_their_own(pk):
    redos = "function rawDataToJsonStr(r) { return '' + /^(a+)+$/.test('a'.repeat(40) + '!'); }"
    with ScriptEngine(busy_timeout_s=0.5, workers=1) as engine:
        assert calls(engine, pk + "-other") == 1
        hung: list[ScriptError] = []

        def strike_out() -> None:
            for _ in range(3):
                hung.append(fails(engine.debug_run, redos, b"", owner=pk))

        thread = threading.Thread(target=strike_out)
        thread.start()
        time.sleep(0.1)
        served = 0
        while thread.is_alive():  # the products' worker serves on meanwhile
            started = time.perf_counter()
            calls(engine, pk + "-other")
            assert time.perf_counter() - started < 0.2
            served += 1
        thread.join()
        assert served > 10
        assert [(e.kind, "restarted" in e.message) for e in hung] == [("time", True)] * 3
        started = time.perf_counter()
        for check in (engine.debug_run, lambda s, r, **kw: engine.compile(s, **kw)):
            err = fails(check, redos, b"", owner=pk)
            assert (err.kind, err.message.startswith("script refused")) == ("time", True)
        assert time.perf_counter() - started < 0.05
        # another product's checks, another source and a changed script are not refused
        assert fails(engine.debug_run, redos, b"", owner=pk + "-b").kind == "time"
        assert engine.debug_run(ECHO, b"\x01", owner=pk)["output"] == [1]
        engine.discard(pk)
        assert fails(engine.debug_run, redos, b"", owner=pk).kind == "time"
        assert engine.raw_to_json(pk, 1, redos.replace("40", "4"), b"") == "false"


def test_memory_bombs_never_take_down_the_host(pk):
    # Hitting the memory limit has crashed QuickJS (~2% of object-heavy bombs); the
    # worker absorbs it. Sizes vary so the limit is hit at different points.
    bomb = "function rawDataToJsonStr(r) { var a = []; while (true) { var o = {}; for (var i = 0; i < K; i++) o['k' + i] = i; a.push(o); } }"
    with ScriptEngine(time_limit_ms=2000) as engine:
        kinds = set()
        for i, k in enumerate(range(37, 2000, 400)):
            err = fails(engine.raw_to_json, f"{pk}-{i}", 1, bomb.replace("K", str(k)), b"")
            kinds.add(err.kind)
        assert kinds <= {"memory", "crash"}
        assert calls(engine, pk) == 1


# -- debug run and speed ----------------------------------------------------------------------------------


def test_debug_run():
    out = debug_run(METER_SCRIPT, METER_RAW)
    assert out["output"]["params"][0]["measurepoints"]["energy"] == 4026531841
    assert isinstance(out["durationMs"], float)
    assert out["durationMs"] >= 0
    not_json = debug_run("function rawDataToJsonStr(r) { return 'hello ' + r.length; }", b"ab")
    assert not_json["output"] == "hello 2"
    assert fails(debug_run, "function f() {}", b"").kind == "definition"


def test_engine_compile_and_debug_run(engine):
    engine.compile(METER_SCRIPT)
    assert fails(engine.compile, "var x = ;").kind == "syntax"
    assert engine.debug_run(METER_SCRIPT, METER_RAW)["output"]["params"][0]["deviceKey"] == "meter7"
    assert (
        fails(engine.debug_run, "function rawDataToJsonStr(r) { while (1) {} }", b"").kind == "time"
    )


def test_realistic_script_runs_thousands_of_calls_per_second(engine, pk):
    engine.raw_to_json(pk, 1, METER_SCRIPT, METER_RAW)
    n = 2000
    started = time.perf_counter()
    for _ in range(n):
        engine.raw_to_json(pk, 1, METER_SCRIPT, METER_RAW)
    rate = n / (time.perf_counter() - started)
    assert rate > 2000, f"{rate:.0f} calls/s"


# -- batches of calls (one worker round trip for the messages that arrive together) ---------


def meter_frame(meter: int) -> bytes:
    return meter.to_bytes(2, "big") + bytes(18)


def test_call_many_keeps_each_result_and_error(engine, pk):
    from headrace.scripts.sandbox import OP_JSON_TO_RAW, OP_RAW_TO_JSON

    args = [meter_frame(1), meter_frame(2), b"\x01\x02\x03", meter_frame(4)]
    out = engine.call_many(OP_RAW_TO_JSON, pk, 1, METER_SCRIPT, args)
    assert len(out) == 4
    assert [json.loads(out[i])["params"][0]["deviceKey"] for i in (0, 1, 3)] == [
        "meter1",
        "meter2",
        "meter4",
    ]
    assert isinstance(out[2], ScriptError) and "expected 20 bytes, got 3" in out[2].message
    # the same answers as one call each
    assert out[0] == engine.raw_to_json(pk, 1, METER_SCRIPT, args[0])
    assert fails(engine.raw_to_json, pk, 1, METER_SCRIPT, args[2]).message == out[2].message
    replies = engine.call_many(OP_JSON_TO_RAW, pk, 1, METER_SCRIPT, ['{"code": 200}', "{"])
    assert replies[0] == bytes([1, 0, 200, 255, 128, 255])
    assert isinstance(replies[1], ScriptError)


def test_call_many_with_a_crash_fails_only_the_crashing_message(pk):
    crash_on_7 = (
        "function rawDataToJsonStr(r) { if ((r[0] & 0xff) === 7) { while (true) {} }"
        " return '' + (r[0] & 0xff); }"
    )
    with ScriptEngine(time_limit_ms=5000, workers=1) as engine:
        from headrace.scripts.sandbox import OP_RAW_TO_JSON

        assert engine._pool is not None
        worker = engine._pool._workers[0]

        def kill_when_spinning() -> None:
            # the batch spins on message 7 first; the retry one by one spins on it again
            kills = 0
            deadline = time.monotonic() + 60
            while kills < 2 and time.monotonic() < deadline:
                since, process = worker.busy_since, worker.process
                if since is not None and process is not None and time.monotonic() - since > 1:
                    os.kill(process.pid, signal.SIGSEGV)  # what a QuickJS fault does
                    kills += 1
                    while worker.process is process:
                        time.sleep(0.01)
                time.sleep(0.02)

        killer = threading.Thread(target=kill_when_spinning)
        killer.start()
        try:
            out = engine.call_many(
                OP_RAW_TO_JSON, pk, 1, crash_on_7, [bytes([1]), bytes([7]), bytes([3])]
            )
        finally:
            killer.join()
        assert out[0] == "1" and out[2] == "3"
        assert isinstance(out[1], ScriptError) and out[1].kind == "crash"
