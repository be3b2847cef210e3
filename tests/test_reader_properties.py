"""Property tests (hypothesis) of the Python readers of every log format.

Each reader gets any bytes, and real logs with lines cut, numbers made huge
(past int()'s 4300-digit limit), junk inserted or lines repeated, and must give
a result or raise its one documented error: never another traceback, never a
hang.  Readers covered: readers.cpmt_log (cPyMemTrace logs),
readers.bpftrace_log, debug_malloc_stats / debug_malloc_original (allocator
statistics text), util.ref_trace_analyse (ReferenceTracing logs) and the
malloc capture reader as Python sees it (readers.malloc_capture over
_malloccap), each with its text report.
"""
import io
import os
import pathlib
import tempfile

import pytest

hypothesis = pytest.importorskip("hypothesis")
from hypothesis import HealthCheck, example, given, settings, strategies as st  # noqa: E402

from pymemtrace import debug_malloc_original, debug_malloc_stats  # noqa: E402
from pymemtrace.readers import bpftrace_log, cpmt_log, malloc_capture  # noqa: E402
from pymemtrace.reporters import bpftrace as bpftrace_text, malloc_text  # noqa: E402
from pymemtrace.util import ref_trace_analyse  # noqa: E402

FIXTURES = pathlib.Path(__file__).parent / "fixtures"
SETTINGS = settings(max_examples=60, deadline=None,
                    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])

REFTRACE_LOG = """\
hello
SOF
HDR:        Clock            Address LiveCnt Type File Line Function RSS dRSS
NEW:     0.000100     0x7f0000001000       1 Leaky                /x/my file.py   7 make   1000   0
DEL:     0.000300     0x7f0000001000       0 Leaky                /x/other.py     9 drop   1000   0
MSG:     0.000500 # a message
LIVE: 1 Leaky
EOF
"""


def _lines(*paths):
    out = []
    for p in paths:
        out.extend(p.read_text(errors="replace").splitlines())
    return out


def _mutate(line, how, at):
    """One line changed as a crash, a bad disk or a hostile writer would."""
    at = at % (len(line) + 1)
    if how == "cut":
        return line[:at]
    if how == "huge":         # one number of the line gets 5000 digits
        digits = [i for i, ch in enumerate(line) if ch.isdigit()]
        if digits:
            i = digits[at % len(digits)]
            return line[:i] + "9" * 5000 + line[i + 1:]
        return line
    if how == "junk":
        return line[:at] + "\x00#, :\r\t\ufffd)(" + line[at:]
    if how == "long":
        return line[:at] + "x" * 20000 + line[at:]
    if how == "minus":
        return line.replace(" ", " -", 1)
    return line


def _mutated_text(corpus, head=""):
    """Text made of corpus lines, each perhaps mutated, perhaps after *head*
    (what makes the rest be read as rows), perhaps without the final newline
    (a truncated log)."""
    line = st.tuples(st.sampled_from(corpus),
                     st.sampled_from(["same", "same", "cut", "huge", "junk", "long", "minus"]),
                     st.integers(0, 10000)).map(lambda t: _mutate(*t))
    return st.tuples(st.sampled_from([head, ""]), st.lists(line, max_size=40), st.booleans()).map(
        lambda t: t[0] + "\n".join(t[1]) + ("\n" if t[2] else ""))


def _write(data):
    fd, path = tempfile.mkstemp(prefix="pmt-prop-")
    with os.fdopen(fd, "wb") as f:
        f.write(data.encode("utf-8", "surrogatepass") if isinstance(data, str) else data)
    return path


def _read_with(reader, data, errors):
    """reader(path) on data written to a file; only `errors` may be raised
    (and then None is returned)."""
    path = _write(data)
    try:
        return reader(path)
    except errors:
        return None
    finally:
        os.unlink(path)


# ---- cPyMemTrace logs --------------------------------------------------------

CPMT = _lines(*sorted((FIXTURES / "cpmt").glob("*.log")))


def _cpmt(path):
    log = cpmt_log.read(path)
    log.largest(3)
    log.by_function()
    return log


HUGE = "9" * 5000


@SETTINGS
@given(st.one_of(st.binary(max_size=3000), _mutated_text(CPMT, CPMT[0] + "\n")))
@example(f"{CPMT[0]}\nNEXT: 1 +1 0.5 CALL t.py # 9 f 100 {HUGE}\n")   # int() refused it
def test_cpmt_log_any_input_reads_or_is_a_value_error(data):
    try:
        log = _read_with(_cpmt, data, ())
    except ValueError as err:       # only for text with no header row
        assert "not a cPyMemTrace log (" in str(err)
    else:
        assert all(isinstance(r.rss, int) for r in log.records)


@SETTINGS
@given(st.one_of(st.binary(max_size=3000), _mutated_text(CPMT, CPMT[0] + "\n")),
       st.sampled_from([0, 1, 3, 10]))
@example(f"{CPMT[0]}\nNEXT: 1 +1 0.5 CALL t.py # 9 f 100 99999999999999999999\n", 3)
def test_cpmt_summary_in_c_is_the_python_readers(data, top):
    """`pymemtrace trace report`'s one pass in C gives what the Python reader gives."""
    path = _write(data)
    try:
        try:
            want = cpmt_log.read(path).summary(top)
        except ValueError as err:
            with pytest.raises(ValueError) as got:
                cpmt_log.summarise(path, top)
            assert str(got.value) == str(err)
        else:
            assert cpmt_log.summarise(path, top) == want
            assert cpmt_log._summarise_in_python(path, top) == want   # its fallback
    finally:
        os.unlink(path)


# ---- bpftrace script output --------------------------------------------------

BPF = _lines(*sorted((FIXTURES / "bpftrace").glob("*.txt")))


def _bpf(path):
    rep = bpftrace_log.parse_file(path)
    bpftrace_text.format_report(rep, limit=5)
    rep.to_json()
    return rep


@SETTINGS
@given(st.one_of(st.binary(max_size=3000),
                 _mutated_text(BPF, "=== pymemtrace py_malloc begin ===\n")))
@example("=== pymemtrace py_malloc begin ===\n"                   # int() refused it
         f"@alloc[/t.py, f, 1, 2]: count 13, average 12, total {HUGE}\n")
def test_bpftrace_report_any_input_parses_or_is_a_report_error(data):
    _read_with(_bpf, data, bpftrace_log.ReportError)


# ---- allocator statistics text -----------------------------------------------

MALLOCSTATS = _lines(*sorted((FIXTURES / "mallocstats").glob("cpython-*.txt")))


@SETTINGS
@given(st.one_of(st.binary(max_size=3000), _mutated_text(MALLOCSTATS)))
def test_debug_malloc_stats_any_text_parses_or_is_a_value_error(data):
    for cls in (debug_malloc_stats.SysDebugMallocStats, debug_malloc_original.DebugMallocArenas,
                debug_malloc_original.DebugMallocPoolsBlocks):
        if isinstance(data, bytes) and not data and cls is debug_malloc_stats.SysDebugMallocStats:
            continue        # empty bytes take a snapshot now, as in the original
        try:
            snap = cls(data)
        except ValueError:
            continue
        repr(snap)
        if cls is debug_malloc_stats.SysDebugMallocStats:
            assert isinstance(snap.malloc_stats, list) and isinstance(snap.type_stats, list)
            snap.diff(snap)


# ---- ReferenceTracing logs ---------------------------------------------------

def _reftrace(path):
    res = ref_trace_analyse.process_file_path(path, include_untracked=True, recurse_files=True)
    res.long_str_list(show_full_path=False)
    return res


@SETTINGS
@given(st.one_of(st.binary(max_size=3000), _mutated_text(REFTRACE_LOG.splitlines())))
def test_ref_trace_analyse_any_regular_file_reads(data):
    res = _read_with(_reftrace, data, ())
    assert res.rows >= len(res.live)


def test_ref_trace_analyse_a_log_naming_itself_is_read_once(tmp_path):
    log = tmp_path / "rt.log"
    log.write_text(f"SOF\nNEW: 0.1 0x10 1 int /c.py 3 f 1 0\n"
                   f"MSG: 0.2 # Detaching this Reference Tracing file wrapper. New file: {log}\n")
    res = ref_trace_analyse.process_file_path(str(log), False, True)
    assert res.live_by_type() == {"int": 1} and res.children == []


def test_ref_trace_analyse_refuses_what_is_not_a_regular_file(capsys):
    with pytest.raises(ValueError, match="/dev/zero.*not a regular file"):
        ref_trace_analyse.process_file_path("/dev/zero", False, False)
    assert ref_trace_analyse.main(["/dev/zero"]) == 1
    assert "not a regular file" in capsys.readouterr().err


def test_bpftrace_report_refuses_what_is_not_a_regular_file():
    with pytest.raises(bpftrace_log.ReportError, match="/dev/zero.*not a regular file"):
        bpftrace_log.parse_file("/dev/zero")


# ---- malloc captures, as Python reads them -----------------------------------

CAPTURES = [p.read_bytes() for p in sorted((pathlib.Path(__file__).parent.parent
                                            / "fuzz" / "corpus" / "capture").glob("*.cap"))]


def _flip(base, edits):
    data = bytearray(base)
    for pos, val in edits:
        if data:
            data[pos % len(data)] = val
    return bytes(data)


@SETTINGS
@given(st.one_of(
    st.binary(max_size=2000),
    st.tuples(st.sampled_from(CAPTURES) if CAPTURES else st.just(b""),
              st.lists(st.tuples(st.integers(0, 1 << 20), st.integers(0, 255)), max_size=8),
              st.integers(0, 1 << 20)).map(lambda t: _flip(t[0], t[1])[:t[2]])))
def test_malloc_capture_any_bytes_load_or_is_a_value_error(data):
    rep = _read_with(malloc_capture.load, data, ValueError)
    if rep is not None:
        for row in rep["largest"]:
            assert isinstance(row["file"], str)
        assert malloc_text.format_report(rep, "x.cap", top=5)
