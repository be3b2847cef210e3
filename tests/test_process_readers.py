"""The process log readers never trust their input: devices and FIFOs are
refused, lines and memory are bounded, malformed numbers are one note, a
closed pipe is quiet; property tests (hypothesis) over arbitrary text."""
import json
import os
import subprocess
import sys

import pytest

from pymemtrace.readers import process_log
from pymemtrace.reporters import process as process_reporter

PMT = [sys.executable, "-m", "pymemtrace", "process"]
GOOD = json.dumps({"timestamp": "2026-01-02 03:04:05.000001", "pid": 7,
                   "memory_info": {"rss": 4096, "vms": 8192, "pfaults": 1, "pageins": 0},
                   "cpu_times": {"user": 0.1, "system": 0.0, "children_user": 0.0,
                                 "children_system": 0.0}, "elapsed_time": 1.0})


def run(args):
    return subprocess.run(PMT + args, capture_output=True, text=True, timeout=60)


@pytest.mark.parametrize("sub", ["table", "plot"])
def test_devices_are_refused_with_one_line(sub, tmp_path):
    r = run([sub, "/dev/zero"] + (["-o", str(tmp_path)] if sub == "plot" else []))
    assert r.returncode == 2 and "Traceback" not in r.stderr
    assert "/dev/zero is not a regular file" in r.stderr
    assert len(r.stderr.strip().splitlines()) == 1


def test_a_fifo_is_refused(tmp_path):
    fifo = tmp_path / "f"
    os.mkfifo(fifo)
    r = run(["table", str(fifo)])
    assert r.returncode == 2 and "is not a regular file" in r.stderr


@pytest.mark.parametrize("bad", ["NaN", "Infinity", "-Infinity", "1e400"])
def test_non_finite_numbers_are_one_malformed_record(bad, tmp_path):
    log = tmp_path / "n.jsonl"
    log.write_text(GOOD + "\n" + GOOD.replace('"rss": 4096', f'"rss": {bad}') + "\n" + GOOD + "\n")
    r = run(["table", str(log)])
    assert r.returncode == 0 and "Traceback" not in r.stderr, r.stderr
    assert "1 malformed records skipped (first at line 2)" in r.stdout
    assert "2 samples" in r.stdout


def test_huge_integers_do_not_break_the_table(tmp_path):
    log = tmp_path / "h.jsonl"
    log.write_text(GOOD + "\n" + GOOD.replace('"rss": 4096', '"rss": ' + "9" * 400) + "\n")
    r = run(["table", str(log)])
    assert r.returncode == 0 and "Traceback" not in r.stderr, r.stderr


def test_a_line_too_long_is_skipped_without_being_kept(tmp_path):
    log = tmp_path / "long.jsonl"
    with open(log, "w") as f:
        f.write(GOOD + "\n")
        f.write("{" + "x" * (3 * process_log.MAX_LINE) + "\n")
        f.write(GOOD + "\n")
    result = process_log.read_log(str(log))
    assert len(result.records) == 2
    assert result.bad == [(2, f"longer than {process_log.MAX_LINE} bytes")]


def test_a_closed_pipe_is_quiet(tmp_path):
    log = tmp_path / "many.jsonl"
    log.write_text((GOOD + "\n") * 5000)
    p = subprocess.run(" ".join(PMT + ["table", str(log)]) + " | head -1", shell=True,
                       capture_output=True, text=True, timeout=60)
    assert p.stdout.startswith("Event") and "Traceback" not in p.stderr
    assert "BrokenPipe" not in p.stderr


hypothesis = pytest.importorskip("hypothesis")
from hypothesis import given, settings, strategies as st  # noqa: E402

_values = st.one_of(st.none(), st.booleans(), st.integers(), st.floats(), st.text(max_size=8),
                    st.lists(st.integers(), max_size=3))
_records = st.fixed_dictionaries(
    {"timestamp": st.sampled_from(["2026-01-02 03:04:05.000001", "garbage", 5]),
     "pid": st.one_of(st.integers(-5, 10), st.text(max_size=3))},
    optional={"memory_info": st.one_of(_values, st.dictionaries(
        st.sampled_from(["rss", "vms", "pfaults", "pageins", "pss", "uss"]), _values)),
        "cpu_times": st.one_of(_values, st.dictionaries(st.sampled_from(["user", "system"]), _values)),
        "label": _values, "event": st.sampled_from(["start", "stop", 3]), "error": _values,
        "nprocs": _values, "rss_peak_kernel": _values, "rss_max_sampled": _values,
        "rss_peak_source": _values})


def _line(d):
    text = json.dumps(d)
    return text


@settings(max_examples=150, deadline=None)
@given(st.lists(st.one_of(_records.map(_line), st.text(max_size=40),
                          _records.map(lambda d: "x ProcessLoggingThread-JSON-STOP " + _line(d))),
                max_size=12))
def test_any_text_reads_and_tabulates_without_raising(lines):
    import io
    log = process_log.parse_lines(line + "\n" for line in lines)
    out = io.StringIO()
    process_reporter.table(log, out)
    assert out.getvalue()
    process_reporter._dat_series(log)
