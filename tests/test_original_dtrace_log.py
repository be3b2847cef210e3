"""pymemtrace.util.dtrace_log_analyse: the original's DTrace malloc/free log and
our bpftrace py_flow_malloc_free output, reconciled into what is still allocated."""
import io
import subprocess
import sys
from pathlib import Path

import pytest

from pymemtrace.util import dtrace_log_analyse as dla

FIXTURES = Path(__file__).parent / "fixtures" / "bpftrace"

DTRACE = """some output before tracing
dtrace:::BEGIN
 77633  cmn_cmd_opts.py:141  -> set_log_level malloc(560) pntr 0x7fca83ef4240
 77633      __init__.py:422  -> validate malloc(1114) pntr 0x7fca858e4200
 77633      __init__.py:422  -> validate free(0x7fca858e4200)
 77633                 :45   ->  free(0x0)
 77633       process.py:268  -> _get_process_data malloc(4096) pntr 0x7fca8408d200
 77633       process.py:268  -> _get_process_data free(0x7fca00000000)
 77633 garbled \xc6 text malloc(24) pntr 0x7fca00000100
 this line is not a call
dtrace:::END
 77633       process.py:268  -> after_end malloc(1) pntr 0x1
"""


def test_dtrace_log_reconciled():
    d = dla.read_dtrace_log_file(io.StringIO(DTRACE))
    assert d.format == "dtrace"
    assert sorted(d.malloc_dict) == [0x7fca00000100, 0x7fca83ef4240, 0x7fca8408d200]
    assert d.count_mallocs == 4 and d.count_frees_non_null == 1 and d.count_frees_null == 1
    assert d.total_bytes_malloced == 560 + 1114 + 4096 + 24
    assert d.total_bytes_freed == 1114 and d.total_bytes_outstanding == 560 + 4096 + 24
    assert d.max_bytes_outstanding == 4680 and d.max_malloc == 4096 and d.max_allocations == 3
    assert d.failed_to_add_free == 1 and d.failed_to_parse_line == 1
    first = d.malloc_dict[0x7fca83ef4240]
    assert (first.process, first.file, first.line, first.function, first.size, first.log_line) == \
        (77633, "cmn_cmd_opts.py", 141, "set_log_level", 560, 3)
    garbled = d.malloc_dict[0x7fca00000100]
    assert garbled.size == 24 and garbled.line == -1


def test_regexes_give_the_fields():
    m = dla.RE_MALLOC.match(" 1  a.py:2  -> f malloc(3) pntr 0xff\n")
    assert m.groups() == ("1", "a.py", "2", "f", "3", "0xff")
    m = dla.RE_FREE.match(" 1                 :45   ->  free(0x0)\n")
    assert m.groups() == ("1", None, "45", None, "0x0")


BPF = """Attaching 14 probes...
pymemtrace py_flow_malloc_free: tracing PID 10; Ctrl-C to stop.
   PID    TID  DELTA(us) DEPTH TYPE   -- DETAIL
    10     10          0     0 malloc    32 -> 0x100
    10     10          5     1 call     -> main (/app.py:1)
    10     10          5     2 call       -> grow (/app.py:5)
    10     10          5     2 malloc      1000 -> 0x200
    10     10          5     2 realloc      2000 -> 0x300 (was 1000 at 0x200)
    10     11          5     1 call     -> worker (/app.py:9)
    10     11          5     1 malloc      7 -> 0x400
    10     10          5     2 return     <- grow
    10     10          5     1 malloc      50 -> 0x500
    10     10          5     1 free      32 <- 0x100
    10     10          5     1 free      0 <- 0x999
    10     10          5     1 frob    what is this

=== pymemtrace py_flow_malloc_free begin ===
@alloc[/app.py, grow, 5, 6]: count 2, average 1500, total 3000
=== pymemtrace py_flow_malloc_free end ===
"""


def test_bpftrace_log_attributes_blocks_to_python_functions():
    d = dla.read_dtrace_log_file(io.StringIO(BPF))
    assert d.format == "bpftrace"
    where = {hex(a): (c.function, c.file, c.line, c.size, c.process) for a, c in d.malloc_dict.items()}
    assert where == {
        "0x300": ("grow", "/app.py", 5, 2000, 10),      # realloc: the old block is freed
        "0x400": ("worker", "/app.py", 9, 7, 10),       # thread 11's own stack
        "0x500": ("main", "/app.py", 1, 50, 10),        # after grow returned
    }
    assert d.count_mallocs == 5 and d.count_frees_non_null == 2
    assert d.total_bytes_freed == 1032 and d.total_bytes_outstanding == 2057
    assert d.failed_to_add_free == 1            # allocated before tracing
    assert d.failed_to_parse_line == 1          # the unknown event; maps and headers are not failures


def test_recorded_bpftrace_output_balances():
    d = dla.read_dtrace_log(str(FIXTURES / "py_flow_malloc_free_workload.txt"))
    assert d.format == "bpftrace" and d.failed_to_parse_line == 0
    assert d.count_mallocs > 1000 and d.count_frees_non_null > 1000
    assert d.total_bytes_malloced - d.total_bytes_freed == d.total_bytes_outstanding
    assert sum(c.size for c in d.malloc_dict.values()) == d.total_bytes_outstanding
    assert d.max_bytes_outstanding >= d.total_bytes_outstanding
    assert any(c.function != dla.NO_FRAME and c.line > 0 for c in d.malloc_dict.values())


def test_not_a_trace_is_one_clear_error(tmp_path):
    with pytest.raises(ValueError, match="not a malloc/free trace"):
        dla.read_dtrace_log_file(io.StringIO("hello\nworld\n"))
    p = tmp_path / "notes.txt"
    p.write_text("hello\n")
    with pytest.raises(ValueError, match="notes.txt: not a malloc/free trace"):
        dla.read_dtrace_log(str(p))
    with pytest.raises(FileNotFoundError, match="no such log file"):
        dla.read_dtrace_log(str(tmp_path / "missing"))
    with pytest.raises(ValueError, match="not a regular file"):
        dla.read_dtrace_log(str(tmp_path))
    with pytest.raises(TypeError, match="text stream"):
        dla.read_dtrace_log_file(io.BytesIO(b"dtrace:::BEGIN\n"))
    with pytest.raises(TypeError, match="log_path"):
        dla.read_dtrace_log(None)


def test_pprint_mallocs():
    out = io.StringIO()
    dla.pprint_mallocs(dla.read_dtrace_log_file(io.StringIO(DTRACE)), out)
    text = out.getvalue()
    assert "Blocks still allocated:              3" in text
    assert "Failed free: 1" in text


def test_module_cli(tmp_path):
    mod = [sys.executable, "-m", "pymemtrace.util.dtrace_log_analyse"]
    p = tmp_path / "d.log"
    p.write_text(DTRACE)
    r = subprocess.run(mod + [str(p)], capture_output=True, text=True, timeout=60)
    assert r.returncode == 0, r.stderr
    assert "Bytes still allocated:          4,680" in r.stdout
    r = subprocess.run(mod + [str(tmp_path / "none.log")], capture_output=True, text=True, timeout=60)
    assert r.returncode == 1 and r.stderr.strip().splitlines() == [
        f"python -m pymemtrace.util.dtrace_log_analyse: error: no such log file: {tmp_path / 'none.log'}"]
