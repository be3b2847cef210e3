"""cPyMemTrace on bad input and faults: arguments named in their errors, a log that
cannot be created (raised at enter, nothing attached), a full disk (raised at exit,
detached), exceptions through the block, a destructor that ends the profiler, a thread
that abandons its profile, a log flushed at interpreter exit."""
import errno
import os
import pathlib
import subprocess
import sys
import textwrap
import threading
import time

import pytest

from pymemtrace import cPyMemTrace
from pymemtrace.readers import cpmt_log

from cpymemtrace_helpers import MIB, _outer_trace, create_string
from cpymemtrace_helpers import _in_tmp_cwd  # noqa: F401  (autouse fixture)


# ---- bad input and faults -------------------------------------------------------------------

@pytest.mark.parametrize("cls", [cPyMemTrace.Profile, cPyMemTrace.Trace])
def test_bad_arguments_name_the_argument(cls):
    with pytest.raises(TypeError, match="d_rss_trigger must be an int"):
        cls("4096")
    with pytest.raises(TypeError, match="d_rss_trigger"):
        cls(1.5)
    with pytest.raises(TypeError, match="d_rss_trigger"):
        cls(True)
    with pytest.raises(ValueError, match="d_rss_trigger must be -1"):
        cls(-2)
    with pytest.raises(TypeError, match="message must be a str"):
        cls(message=42)
    with pytest.raises(TypeError, match="filepath must be a str"):
        cls(filepath=42)
    with pytest.raises(ValueError, match="filepath must not be empty"):
        cls(filepath="")
    with pytest.raises(ValueError, match="filepath must not contain a null byte"):
        cls(filepath="a\0b")
    with pytest.raises(ValueError, match="filepath must not contain a null byte"):
        cls(filepath=b"a\0b")
    assert sys.getprofile() is None


@pytest.mark.parametrize("cls", [cPyMemTrace.Profile, cPyMemTrace.Trace])
def test_arguments_by_position_keyword_or_unpacked_dict_land_alike(cls, tmp_path):
    log = str(tmp_path / "a.log")
    # A name built at run time is not the interned one of a call's keyword.
    unpacked = {"".join(["file", "path"]): log, "".join(["mess", "age"]): "hi",
                "".join(["d_rss_", "trigger"]): 8192}
    for t in (cls(8192, "hi", log), cls(8192, message="hi", filepath=log),
              cls(filepath=log, d_rss_trigger=8192, message="hi"), cls(**unpacked),
              cls(8192, **{k: v for k, v in unpacked.items() if k != "d_rss_trigger"})):
        assert (t.d_rss_trigger, t.log_path) == (8192, None)
        with t:
            assert t.log_path == log
        with open(log) as f:
            assert f.readline() == "hi\n"
    assert cls().d_rss_trigger == cls(-1).d_rss_trigger == cls(d_rss_trigger=-1).d_rss_trigger
    assert cls(message=None, filepath=None).d_rss_trigger == cls(-1).d_rss_trigger
    # The interpreter's own words (they differ by version) with the argument's name.
    with pytest.raises(TypeError, match="'filepathx'"):
        cls(filepath=log, filepathx=log)
    with pytest.raises(TypeError, match="'d_rss_trigger'.* and position"):
        cls(1, d_rss_trigger=2)
    with pytest.raises(TypeError, match="'message'.* and position"):
        cls(1, "m", **{"".join(["mess", "age"]): "n"})
    with pytest.raises(TypeError, match="at most 3 arguments .4 given"):
        cls(1, "m", log, 4)
    with pytest.raises(TypeError, match="message must be a str"):
        cls(1, 2)


def test_missing_directory_raises_at_enter_and_attaches_nothing(tmp_path):
    bad = tmp_path / "no" / "such" / "dir.log"
    p = cPyMemTrace.Profile(filepath=bad)
    with pytest.raises(FileNotFoundError) as info:
        with p:
            pytest.fail("the block must not run")
    assert info.value.filename == str(bad)
    assert sys.getprofile() is None and cPyMemTrace.profile_wrapper_depth() == 0


def test_default_name_in_a_vanished_cwd_raises(tmp_path, monkeypatch):
    gone = tmp_path / "gone"
    gone.mkdir()
    monkeypatch.chdir(gone)
    gone.rmdir()
    with pytest.raises(OSError):
        with cPyMemTrace.Trace():
            pass
    assert sys.gettrace() in (None, _outer_trace)


def test_unwritable_directory_raises_at_enter(tmp_path):
    if os.geteuid() == 0:
        target = pathlib.Path("/proc/pymemtrace-cannot-create.log")   # even root cannot
    else:
        ro = tmp_path / "ro"
        ro.mkdir()
        ro.chmod(0o500)
        target = ro / "x.log"
    with pytest.raises(OSError) as info:
        with cPyMemTrace.Profile(filepath=target):
            pass
    assert info.value.filename == str(target)
    assert sys.getprofile() is None


_UNWRITABLE_CWD_CHECK = """
import os, sys
from pymemtrace import cPyMemTrace   # before dropping privileges: /root is closed to nobody
os.setgid(65534)
os.setuid(65534)
os.chdir(sys.argv[1])
try:
    with cPyMemTrace.Profile():
        pass
except PermissionError as err:
    assert sys.argv[1] in err.filename, err.filename
    assert sys.getprofile() is None
    print("PermissionError", err.filename)
else:
    print("no error")
"""


def test_default_log_in_unwritable_cwd_raises(tmp_path, monkeypatch):
    if os.geteuid() != 0:
        ro = tmp_path / "ro"
        ro.mkdir()
        ro.chmod(0o500)
        monkeypatch.chdir(ro)
        with pytest.raises(PermissionError) as info:
            with cPyMemTrace.Profile():
                pass
        assert str(ro) in info.value.filename
        assert sys.getprofile() is None
        return
    # root can write anywhere: check it as user 'nobody' in a child process,
    # in a directory under /tmp that nobody can enter but not write.
    import subprocess
    import tempfile
    ro = tempfile.mkdtemp(prefix="pymemtrace-ro-", dir="/tmp")
    try:
        os.chmod(ro, 0o555)
        r = subprocess.run([sys.executable, "-c", _UNWRITABLE_CWD_CHECK, ro],
                           capture_output=True, text=True, timeout=60)
        assert r.returncode == 0, r.stderr
        assert r.stdout.startswith("PermissionError " + ro), r.stdout
    finally:
        os.rmdir(ro)


@pytest.mark.skipif(not os.path.exists("/dev/full"), reason="needs /dev/full")
@pytest.mark.parametrize("cls", [cPyMemTrace.Profile, cPyMemTrace.Trace])
def test_disk_full_raises_at_exit_and_detaches(cls):
    with pytest.raises(OSError) as info:
        with cls(0, filepath="/dev/full"):
            for _ in range(3000):       # more than a buffer's worth
                create_string(10)
    assert info.value.errno == errno.ENOSPC
    assert info.value.filename == "/dev/full"
    assert sys.getprofile() is None and cPyMemTrace.profile_wrapper_depth() == 0
    assert cPyMemTrace.trace_wrapper_depth() == 0


def raiser():
    create_string(MIB)
    return 1 / 0


@pytest.mark.parametrize("exc", [ZeroDivisionError, KeyboardInterrupt])
def test_exception_in_block_propagates_and_log_is_complete(exc):
    with pytest.raises(exc):
        with cPyMemTrace.Profile(0, filepath="p.log"):
            create_string(10)
            if exc is ZeroDivisionError:
                raiser()
            raise KeyboardInterrupt
    assert sys.getprofile() is None
    log = cpmt_log.read("p.log")
    assert log.complete
    assert log.notes[-1][1].endswith(f"exit={exc.__name__}")
    funcs = [r.function for r in log.records]
    if exc is ZeroDivisionError:
        assert "raiser" in funcs
    assert "create_string" in funcs


class _ExitsOnDel:
    def __init__(self, ctx):
        self.ctx = ctx

    def __del__(self):
        cPyMemTrace.profile_write_message_to_log("from __del__")
        self.ctx.__exit__(None, None, None)


def test_destructor_run_by_the_profiler_may_exit_it():
    """The profiler drops its references last: a destructor it triggers may even end it."""
    p = cPyMemTrace.Profile(0, filepath="d.log")
    p.__enter__()
    obj = _ExitsOnDel(p)
    method = obj.__sizeof__         # a C method bound to obj: the profiler keeps it
    del obj
    method()
    del method
    len([])                         # the profiler lets go of the method: __del__ runs
    assert sys.getprofile() is None
    text = pathlib.Path("d.log").read_text()
    assert "from __del__" in text
    assert cpmt_log.read("d.log").complete


def test_log_complete_when_thread_abandons_its_profile():
    def worker():
        cPyMemTrace.Profile(0, filepath="abandoned.log").__enter__()
        create_string(10)

    t = threading.Thread(target=worker)
    t.start()
    t.join()
    deadline = time.time() + 5
    while not pathlib.Path("abandoned.log").read_text().count("create_string") and \
            time.time() < deadline:
        time.sleep(0.01)
    assert "create_string" in pathlib.Path("abandoned.log").read_text()


def test_unflushed_log_is_flushed_at_interpreter_exit(tmp_path):
    code = textwrap.dedent("""
        import sys
        from pymemtrace import cPyMemTrace
        def f():
            return 1
        cPyMemTrace.Profile(0, filepath=sys.argv[1]).__enter__()
        f()
        sys.exit(0)
    """)
    path = tmp_path / "atexit.log"
    subprocess.run([sys.executable, "-c", code, str(path)], check=True)
    assert any(r.function == "f" for r in cpmt_log.read(path).records)
