"""pymemtrace malloc's capture reader on captures written by hand (no preload needed):
events ordered across thread buffers, a truncated capture reports what it has, bad
captures are refused with their reason, a missing file."""
import struct

import pytest

import malloc_capture
from pymemtrace.readers.malloc_capture import load
from malloc_e2e import cli


def synthetic(state=malloc_capture.EXIT):
    """Two 'threads' whose chunks are in the file out of order; a reused address."""
    t1 = malloc_capture.Chunk().code_def(1, "app.py", "f")
    t1.event(1, 1, 0x1000, 100, 1, 10).event(3, 16, 0x1000)
    t2 = malloc_capture.Chunk().code_def(2, "app.py", "g")
    (t2.event(2, 1, 0x2000, 50, 2, 20)
       .event(4, 1, 0x1000, 70, 2, 21)          # 0x1000 reused after its free
       .event(5, 5, 0x100000, 8192, 2, 22)      # an arena
       .event(6, 18, 0x101000, 4096))           # munmap of its second half
    return malloc_capture.header(state=state) + t2.padded() + t1.padded()


def write(tmp_path, data, name="s.cap"):
    f = tmp_path / name
    f.write_bytes(data)
    return str(f)


def test_reader_orders_events_across_thread_buffers(tmp_path):
    r = load(write(tmp_path, synthetic()))
    assert r["complete"] and r["warnings"] == []
    by = {(s["function"], s["line"]): s for s in r["by_python_site"]}
    assert by[("f", 10)]["bytes"] == 100 and by[("f", 10)]["live_count"] == 0
    assert by[("g", 21)]["live_bytes"] == 70     # the reuse is live, not freed
    assert by[("g", 22)]["mmap_bytes"] == 8192 and by[("g", 22)]["live_bytes"] == 4096
    assert r["total_bytes"] == 100 + 50 + 70 + 8192
    assert r["peak_bytes"] == 50 + 70 + 8192
    assert r["live_bytes"] == 50 + 70 + 4096


def test_reader_truncated_capture_reports_what_it_has(tmp_path):
    data = synthetic(state=malloc_capture.RUNNING)     # killed: no end in the header
    t1 = 128 + 4096
    last = len(malloc_capture.Chunk().code_def(1, "app.py", "f").event(1, 1, 0x1000, 100, 1, 10)
               .data)
    cut = data[:t1 + last + 1]      # the free's kind byte alone
    path = write(tmp_path, cut)
    r = load(path)
    assert not r["complete"] and r["trailing_bytes"] == 1 and r["events"] == 5
    assert any("no end" in w and "killed" in w for w in r["warnings"])
    p = cli("report", path)
    assert p.returncode == 0 and "warning: the capture has no end" in p.stdout


@pytest.mark.parametrize("data,message", [
    (b"", "empty capture file"),
    (b"hello world, not a capture at all" * 3, "bad magic"),
    (b"PMTMALC\0" + bytes(10), "cut short inside its header"),
    (b"PMTMALC\0" + struct.pack("<IIIIIIQII", 1, 64, 32, 0, 1, 1, 0, 0x01020304, 4096),
     "capture format version 1 is not supported: this pymemtrace reads version 4"),
    (b"PMTMALC\0" + struct.pack("<IIIIIIQII", 2, 64, 32, 2, 1, 1, 0, 0x01020304, 4096)
     + bytes(80), "capture format version 2 is not supported: this pymemtrace reads version 4"),
    (b"PMTMALC\0" + struct.pack("<IIIIIIQII", 3, 128, 32, 4, 1, 1, 0, 0x01020304, 4096)
     + bytes(128), "capture format version 3 is not supported: this pymemtrace reads version 4"),
])
def test_reader_rejects_bad_captures(tmp_path, data, message):
    path = write(tmp_path, data)
    with pytest.raises(ValueError, match=message):
        load(path)
    p = cli("report", path)
    assert p.returncode == 2 and message in p.stderr and "Traceback" not in p.stderr


def test_report_missing_file(tmp_path):
    p = cli("report", str(tmp_path / "nope.cap"))
    assert p.returncode == 2 and "no such capture" in p.stderr
