"""`pymemtrace trace report` in one pass in C (readers.cpmt_log.summarise over
src/core/cpmtsum.c): the same summary as the Python reader's on the seed's logs,
on logs made by every mode (whole, cut short, damaged) and on any bytes; the
same one-line errors; memory that does not grow with the number of rows."""
import io
import os
import pathlib
import subprocess
import sys
import textwrap

import pytest

from pymemtrace import cPyMemTrace
from pymemtrace.commands import trace as trace_cmd
from pymemtrace.readers import cpmt_log, textfile

FIX = pathlib.Path(__file__).parent / "fixtures" / "cpmt"
TOPS = (0, 1, 3, 10, 1000)


def same_as_python(path, tops=TOPS):
    """summarise(path, top) equals read(path).summary(top) for every top, or both
    raise the same ValueError; returns the C summary for top 10."""
    try:
        log = cpmt_log.read(path)
    except ValueError as err:
        with pytest.raises(ValueError) as c_err:
            cpmt_log.summarise(path, 10)
        assert str(c_err.value) == str(err)
        return None
    for top in tops:
        assert cpmt_log.summarise(path, top) == log.summary(top), (path, top)
    return cpmt_log.summarise(path, 10)


@pytest.mark.parametrize("name", ["seed-profile.log", "seed-profile0.log"])
def test_seed_logs(name):
    s = same_as_python(FIX / name)
    assert s.largest[0] == cpmt_log.Change(1052672, 1, "RETURN", "create_string", "test.py", 10)


def _workload():
    def create_string(n):
        return " " * n

    def fail():
        raise KeyError("x")

    keep = [create_string(1 << 20) for _ in range(6)]
    for i in range(300):
        keep.append(create_string(40 * i))
        try:
            fail()
        except KeyError:
            pass
    sorted(range(100), key=lambda x: -x)
    keep.clear()


def _make_logs(d):
    """Logs from each mode, with messages, a nested context and an exception."""
    paths = []
    for name, cls, trigger in (("p.log", cPyMemTrace.Profile, -1), ("p0.log", cPyMemTrace.Profile, 0),
                               ("t.log", cPyMemTrace.Trace, -1), ("t0.log", cPyMemTrace.Trace, 0),
                               ("p4k.log", cPyMemTrace.Profile, 4096)):
        path = str(d / name)
        with cls(trigger, message="a message\nof two lines", filepath=path) as tracer:
            _workload()
            tracer.write_message_to_log("half way")
            cPyMemTrace.profile_write_message_to_log("verbatim") if cls is cPyMemTrace.Profile \
                else cPyMemTrace.trace_write_message_to_log("verbatim")
            _workload()
        paths.append(path)
    outer, inner = str(d / "outer.log"), str(d / "inner.log")
    with cPyMemTrace.Profile(0, filepath=outer):
        _workload()
        with cPyMemTrace.Profile(0, filepath=inner):
            _workload()
        _workload()
    paths += [outer, inner]
    raised = str(d / "raised.log")
    with pytest.raises(ZeroDivisionError):
        with cPyMemTrace.Trace(0, filepath=raised):
            _workload()
            1 / 0
    paths.append(raised)
    return paths


@pytest.fixture(scope="module")
def real_logs(tmp_path_factory):
    return _make_logs(tmp_path_factory.mktemp("logs"))


def test_logs_of_every_mode(real_logs):
    for path in real_logs:
        s = same_as_python(path)
        assert s.complete and not s.truncated and s.records > 0, path
    assert any(r.what == "LINE" for r in cpmt_log.summarise(real_logs[3], 100000).largest)


def test_logs_cut_short_and_damaged(real_logs, tmp_path):
    data = pathlib.Path(real_logs[1]).read_bytes()          # Profile(0)
    header_end = data.index(b"\n", data.index(b"Event")) + 1
    out = tmp_path / "cut.log"
    cuts = {0, 1, header_end - 3, header_end, header_end + 1, len(data) // 2,
            data.rindex(b"\n", 0, len(data) - 1) + 1, len(data) - 1, len(data)}
    cuts |= set(range(header_end, len(data), max(1, len(data) // 37)))
    for cut in sorted(cuts):
        out.write_bytes(data[:cut])
        s = same_as_python(out, tops=(0, 10))
        if s is not None and 0 < cut < len(data) and data[cut - 1:cut] != b"\n" \
                and cut > header_end:
            assert s.truncated
    lines = data.split(b"\n")
    damaged = [b"garbage \x00\xff\xfe line", b"NEXT: 1 +1 0.1 CALL a.py # 3 f 1",
               b"NEXT: 99999999999999999999 +1 0.1 CALL a.py # 3 f 1 2", b"\r", b"   ",
               b"NEXT: 5 +1 0.1 CALL caf\xc3\xa9 #1 b\xff.py # 7 f\xed\xa0\x80 1 -77777"]
    for i, junk in enumerate(damaged):
        mixed = lines[:]
        mixed.insert(5 + 7 * i, junk)
        out.write_bytes(b"\n".join(mixed))
        same_as_python(out, tops=(0, 10))
        out.write_bytes(b"\n".join(mixed + [junk, b""]))
        same_as_python(out, tops=(0, 10))


def test_names_the_python_reader_decodes_alike(tmp_path):
    """Names that differ only in bytes that are not UTF-8 are one function for the
    Python reader (both decode to U+FFFD): so for the C summary too."""
    p = tmp_path / "names.log"
    p.write_bytes(b"Event dEvent Clock What File #line Function RSS dRSS\n"
                  b"NEXT: 0 +0 0.1 CALL a.py # 1 f 100 100\n"
                  b"NEXT: 1 +1 0.1 CALL a.py # 1 g\xff 150 50\n"
                  b"NEXT: 2 +1 0.1 CALL a.py # 1 g\xfe 250 100\n"
                  b"NEXT: 3 +1 0.1 CALL a\x00b.py # 1 \xe2\x82 260 10\n")
    s = same_as_python(p)
    assert s.by_function[0] == ("g\ufffd", "a.py", 150, 2)
    assert s.by_function[1] == ("\ufffd", "a\x00b.py", 10, 1)


def test_lines_past_the_limit_are_notes_for_both(tmp_path):
    """A line over 1 MiB (textfile.MAX_LINE) is never a row, header or end line,
    in C and in Python: neither holds more of it than that."""
    p = tmp_path / "long.log"
    pad = b" " * (textfile.MAX_LINE + 10)
    p.write_bytes(b"x" * (textfile.MAX_LINE + 3) + b"\n"
                  b"Event dEvent Clock What File #line Function RSS dRSS\n"
                  b"NEXT: 0 +0 0.1 CALL a.py # 1 f 100 100\n"
                  b"NEXT: 1 +1 0.1 CALL a.py" + pad + b"# 1 f 200 100\n"
                  b"NEXT: 2 +1 0.1 CALL a.py # 1 f 300 100\n"
                  b"# END events=3 " + pad + b"\n")
    s = same_as_python(p)
    assert s.records == 2 and not s.complete
    assert len(cpmt_log.read(p).notes[0][1]) == textfile.MAX_LINE + 1


def test_numbers_past_64_bits_fall_back_to_the_python_reader(tmp_path):
    p = tmp_path / "big.log"
    p.write_text("Event dEvent Clock What File #line Function RSS dRSS\n"
                 "NEXT: 0 +0 0.1 CALL a.py # 1 f 100 100\n"
                 "NEXT: 1 +1 0.1 CALL a.py # 1 f 99999999999999999999 99999999999999999999\n"
                 "NEXT: 2 +1 0.1 CALL a.py # 1 f 99999999999999999999 99999999999999999999\n")
    s = same_as_python(p)
    assert s.by_function == [("f", "a.py", 2 * 99999999999999999999, 2)]


def test_the_python_fallback_is_the_python_readers(real_logs, tmp_path):
    """The fallback (for numbers past 64 bits) keeps no record either, and gives
    what read().summary() gives on every log."""
    for path in real_logs + [str(FIX / "seed-profile.log")]:
        for top in TOPS:
            assert cpmt_log._summarise_in_python(path, top) == cpmt_log.read(path).summary(top)


def _report(args, cwd, **kw):
    return subprocess.run([sys.executable, "-m", "pymemtrace", "trace", "report", *args],
                          capture_output=True, text=True, cwd=cwd, timeout=120, **kw)


def test_report_prints_what_the_python_reader_gives(real_logs, tmp_path):
    for path in real_logs[:2]:
        r = _report(["-n", "7", path], tmp_path)
        assert r.returncode == 0, r.stderr
        want = io.StringIO()
        trace_cmd.summarise(cpmt_log.read(path).summary(7), want)
        assert r.stdout == want.getvalue()
        assert "Largest RSS changes (top 7)" in r.stdout


def test_report_of_a_cut_log_warns(real_logs, tmp_path):
    data = pathlib.Path(real_logs[0]).read_bytes()
    (tmp_path / "cut.log").write_bytes(data[:-30])
    r = _report(["cut.log"], tmp_path)
    assert r.returncode == 0, r.stderr
    assert "warning: the last line was cut short" in r.stdout


@pytest.mark.parametrize("make,msg", [
    (lambda d: None, "no such log: {p}"),
    (lambda d: (d / "x.log").mkdir(), "{p} is a directory, not a log"),
    (lambda d: (d / "x.log").write_bytes(b""), "{p}: not a cPyMemTrace log (the file is empty)"),
    (lambda d: (d / "x.log").write_bytes(b"garbage\n\x00\xff\n"),
     "{p}: not a cPyMemTrace log (no header row 'Event dEvent Clock What File #line Function "
     "RSS dRSS')"),
    # a log of another tool: `pymemtrace process` writes JSON lines
    (lambda d: (d / "x.log").write_text('{"pid": 1, "rss": 9101312, "t": 0.1}\n'),
     "{p}: not a cPyMemTrace log (no header row"),
    (lambda d: os.mkfifo(d / "x.log"), "{p}: not a cPyMemTrace log (not a regular file)"),
])
def test_bad_input_is_one_line_naming_the_file(tmp_path, make, msg):
    make(tmp_path)
    r = _report(["x.log"], tmp_path)
    assert r.returncode == 2, (r.stdout, r.stderr)
    assert r.stdout == ""
    assert len(r.stderr.splitlines()) == 1, r.stderr
    assert msg.format(p="x.log") in r.stderr
    assert "Traceback" not in r.stderr


def _big_log(path, rows):
    """A Profile(0)-like log of `rows` rows (a few functions, RSS moving now and then)."""
    funcs = ("create_string", "append", "__init__", "loads", "depth")
    whats = ("CALL", "RETURN", "C_CALL", "C_RETURN")
    with open(path, "w") as f:
        f.write("      Event dEvent  Clock    What     File    #line Function      RSS           dRSS\n")
        rss = 9101312
        chunk = []
        for i in range(rows):
            d = 4096 if i % 97 == 0 else 0
            rss += d
            chunk.append(f"NEXT: {i:<5d} +1      {i * 3.5e-7:.6f} {whats[i & 3]:<8} models.py "
                         f"#{9 + i % 40:>4d} {funcs[(i >> 2) % 5]:<13} {rss:>8d} {d:>12d}\n")
            if len(chunk) == 10000:
                f.write("".join(chunk))
                chunk.clear()
        f.write("".join(chunk))
        f.write(f"# END events={rows} clock=1.0 rss={rss} rss_peak={rss} exit=ok\n")


@pytest.mark.skipif(sys.platform != "linux", reason="ru_maxrss of a child in KiB is Linux's")
def test_memory_does_not_grow_with_rows(tmp_path):
    """The report keeps no row: 20 times the rows, about the same peak memory
    (the Python reader kept ~900 bytes a row)."""
    script = textwrap.dedent("""\
        import resource, sys
        from pymemtrace.readers import cpmt_log, textfile
        s = cpmt_log.summarise(sys.argv[1], 10)
        assert s.records == int(sys.argv[2]), s.records
        print(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss)
    """)
    peaks = {}
    for rows in (10000, 200000):
        path = tmp_path / f"{rows}.log"
        _big_log(path, rows)
        r = subprocess.run([sys.executable, "-c", script, str(path), str(rows)],
                           capture_output=True, text=True, timeout=300)
        assert r.returncode == 0, r.stderr
        peaks[rows] = int(r.stdout) * 1024
        path.unlink()
    # 190,000 more rows (17 MB more log): well under 100 bytes a row more
    assert peaks[200000] - peaks[10000] < 190000 * 20, peaks
