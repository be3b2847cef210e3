"""cPyMemTrace: Profile/Trace logs in the seed's format, attribution, nesting, threads, faults."""
import ctypes
import functools
import ctypes.util
import errno
import os
import pathlib
import re
import subprocess
import sys
import textwrap
import threading
import time
import tracemalloc

import pytest

from pymemtrace import cPyMemTrace
from pymemtrace.readers import cpmt_log

MIB = 1024 ** 2
NAME = re.compile(r"^\d{8}_\d{6}_(\d+)_([PT])_(\d+)_PY" + re.escape(sys.version.split()[0])
                  + r"(-\d+)?\.log$")
HEADER = "      Event dEvent  Clock    What     File    #line Function      RSS           dRSS"


def _fix_mmap_threshold():
    """glibc raises its mmap threshold after large frees, so in a long-lived process a
    later 1 MiB block may reuse resident heap memory and not move RSS at all.  A fixed
    threshold (which also turns the adjustment off) makes every 1 MiB block its own
    mapping, as in a fresh process; the seed's examples also run in fresh processes."""
    name = ctypes.util.find_library("c")
    if name is None:
        return False
    try:
        mallopt = ctypes.CDLL(name).mallopt
    except AttributeError:
        return False
    M_MMAP_THRESHOLD = -3
    return mallopt(M_MMAP_THRESHOLD, 256 * 1024) == 1


# mimalloc (PYTHONMALLOC=mimalloc on 3.13) maps and keeps its own segments: a 1 MiB string
# neither comes from glibc nor gives its pages back when freed.
GLIBC_LARGE_BLOCKS = not (os.environ.get("PYTHONMALLOC", "").startswith("mimalloc")
                          and not sys.flags.ignore_environment)
FIXED_MMAP = GLIBC_LARGE_BLOCKS and _fix_mmap_threshold()
SANITIZED = bool(os.environ.get("PYMEMTRACE_SANITIZE"))   # set by `make sanitize`
needs_fixed_mmap = pytest.mark.skipif(
    not FIXED_MMAP, reason="needs glibc's mallopt so that each 1 MiB block moves RSS")


FRESH_ENV = "PYMEMTRACE_TEST_FRESH"


def in_fresh_interpreter(test):
    """Tests that count the seed's eight 1 MiB RSS steps run in an interpreter of their
    own, as the seed's examples do.  RSS is the whole process's: in the long pytest
    process one step in a thousand was moved by memory that something else in the
    process returned or took during that step (seen on 3.12 and 3.13 in full runs,
    never when the file runs alone), and no retry in the same process fixes that.
    The child runs just this test (its fixtures too) and its outcome is this test's."""
    @functools.wraps(test)
    def run(*args, **kwargs):
        if os.environ.get(FRESH_ENV) == test.__name__:
            return test(*args, **kwargs)
        tmp = kwargs.get("tmp_path") or pathlib.Path.cwd()
        env = dict(os.environ, **{FRESH_ENV: test.__name__})
        r = subprocess.run(
            [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider",
             f"--basetemp={tmp / 'fresh'}", f"{__file__}::{test.__name__}"],
            cwd=os.path.dirname(__file__), env=env, capture_output=True, text=True,
            timeout=300)
        if r.returncode != 0 or not re.search(r"^1 passed", r.stdout, re.M):
            pytest.fail(f"{test.__name__} in a fresh interpreter: exit {r.returncode}\n"
                        f"{r.stdout[-6000:]}\n{r.stderr[-2000:]}", pytrace=False)
    return run


@pytest.fixture(autouse=True)
def _in_tmp_cwd(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    yield
    assert sys.getprofile() is None and sys.gettrace() in (None, _outer_trace)
    assert cPyMemTrace.profile_wrapper_depth() == 0
    assert cPyMemTrace.trace_wrapper_depth() == 0


_outer_trace = sys.gettrace()   # pytest-cov or a debugger may have one


def create_string(n: int) -> str:
    return ' ' * n


def seed_block():
    l = []
    for i in range(8):
        l.append(create_string(1024**2))
    while len(l):
        l.pop()


def logs(kind="P"):
    return sorted(p for p in pathlib.Path.cwd().iterdir() if NAME.match(p.name)
                  and NAME.match(p.name).group(2) == kind)


def steps_on_create_string(log):
    return [r for r in log.next_records
            if r.function == "create_string" and r.d_rss >= MIB and r.event != 0]


# ---- the seed's examples ------------------------------------------------------------------

SEED = """\
from pymemtrace import cPyMemTrace

def create_string(l: int) -> str:
    return ' ' * l

with cPyMemTrace.{ctx}:
    l = []
    for i in range(8):
        l.append(create_string(1024**2))
    while len(l):
        l.pop()
"""


def run_seed(ctx):
    """The seed's example, verbatim, in a fresh interpreter; returns (pid, log path)."""
    pathlib.Path("test_cpymemtrace.py").write_text(SEED.format(ctx=ctx))
    proc = subprocess.Popen([sys.executable, "test_cpymemtrace.py"])
    assert proc.wait() == 0
    (path,) = logs(ctx[0])
    return proc.pid, path


def test_seed_example_default_trigger():
    pid, path = run_seed("Profile()")
    m = NAME.match(path.name)
    assert (int(m.group(1)), m.group(3)) == (pid, "1")
    text = path.read_text()
    assert text.splitlines()[0] == HEADER
    log = cpmt_log.read(path)
    assert log.complete and not log.truncated and log.messages == []
    rows = log.records
    assert (rows[0].kind, rows[0].event, rows[0].d_event, rows[0].what, rows[0].function) == \
        ("NEXT", 0, 0, "CALL", "create_string")
    assert rows[0].d_rss == rows[0].rss
    # each +1 MiB step is on the RETURN of create_string, as the seed shows
    steps = steps_on_create_string(log)
    assert len(steps) == 8
    assert all(r.what == "RETURN" and r.file == "test_cpymemtrace.py" for r in steps)
    # The first call also pages in the interpreter code it runs for the first time: with a
    # shared libpython (Debian's python3) that is file-backed RSS too, up to ~200 KiB.
    assert MIB <= steps[0].d_rss <= MIB + 512 * 1024
    assert all(MIB <= r.d_rss <= MIB + 64 * 1024 for r in steps[1:])
    # NEXT 0, NEXT 1, PREV 4, NEXT 5, PREV 8, NEXT 9, ... as in the seed's table
    assert [(r.kind, r.event) for r in rows[:6]] == \
        [("NEXT", 0), ("NEXT", 1), ("PREV", 4), ("NEXT", 5), ("PREV", 8), ("NEXT", 9)]
    prev, nxt = rows[2], rows[3]
    assert (prev.what, prev.function, prev.d_event, prev.d_rss) == ("CALL", "create_string", 3, 0)
    assert (nxt.d_event, nxt.rss - prev.rss) == (4, nxt.d_rss)
    for a, b in zip(rows, rows[1:]):
        if b.kind == "PREV":
            assert a.kind == "NEXT" and b.event > a.event + 1
    # glibc gives each freed 1 MiB block back: each -1 MiB appears right after a pop
    # (ASan's allocator, under `make sanitize`, keeps freed memory in quarantine)
    if not SANITIZED and GLIBC_LARGE_BLOCKS:
        drops = [r for r in log.next_records if r.d_rss <= -MIB]
        assert len(drops) == 8
        assert all(r.function in ("pop", "len") for r in drops)
    end = text.splitlines()[-1]
    assert re.match(r"^# END events=66 clock=\d+\.\d{6} rss=\d+ rss_peak=\d+ exit=ok$", end)


def test_seed_example_every_event():
    _, path = run_seed("Profile(0)")
    log = cpmt_log.read(path)
    assert log.complete
    assert [r.event for r in log.records] == list(range(66))
    assert all(r.kind == "NEXT" and r.d_event == (1 if r.event else 0) for r in log.records)
    whats = [(r.what, r.function) for r in log.records[:6]]
    assert whats == [("CALL", "create_string"), ("RETURN", "create_string"),
                     ("C_CALL", "append"), ("C_RETURN", "append"),
                     ("CALL", "create_string"), ("RETURN", "create_string")]
    assert log.records[-1].what == "C_RETURN" and log.records[-1].function == "len"
    # dRSS is the change since the previous row, so the rows add up
    for a, b in zip(log.records, log.records[1:]):
        assert b.d_rss == b.rss - a.rss
    assert len(steps_on_create_string(log)) == 8
    assert all(r.what == "RETURN" for r in steps_on_create_string(log))


def test_row_layout_matches_the_seed():
    _, path = run_seed("Profile(0)")
    line = path.read_text().splitlines()[2]
    assert re.match(r"^NEXT: 1     \+1      \d\.\d{6} RETURN   test_cpymemtrace\.py #   4 "
                    r"create_string +\d{7,} +\d+$", line), line


def test_trace_logs_lines():
    _, path = run_seed("Trace()")
    log = cpmt_log.read(path)
    assert log.complete
    steps = steps_on_create_string(log)
    assert len(steps) == 8 and all(r.what == "RETURN" for r in steps)
    with cPyMemTrace.Trace(0, filepath="every.log") as t:
        seed_block()
    assert t.log_path == "every.log"
    every = cpmt_log.read("every.log")
    whats = {r.what for r in every.records}
    assert {"LINE", "CALL", "RETURN"} <= whats
    assert not whats & {"C_CALL", "C_RETURN"}
    lines = {r.line for r in every.records if r.what == "LINE" and r.function == "seed_block"}
    first = seed_block.__code__.co_firstlineno
    assert {first + 1, first + 2, first + 3, first + 4, first + 5} <= lines


def test_trace_reports_exceptions():
    def boom():
        raise ValueError("x")

    with cPyMemTrace.Trace(0, filepath="t.log"):
        try:
            boom()
        except ValueError:
            pass
    whats = [(r.what, r.function) for r in cpmt_log.read("t.log").records]
    assert ("EXCEPTION", "boom") in whats


def test_profile_reports_c_exceptions():
    with cPyMemTrace.Profile(0, filepath="p.log"):
        try:
            int("not a number")
        except ValueError:
            pass
    whats = [(r.what, r.function) for r in cpmt_log.read("p.log").records]
    assert ("C_CALL", "int") not in whats   # int is a type: called without a C_CALL
    with cPyMemTrace.Profile(0, filepath="p2.log"):
        try:
            divmod(1, 0)
        except ZeroDivisionError:
            pass
    whats = [(r.what, r.function) for r in cpmt_log.read("p2.log").records]
    assert ("C_CALL", "divmod") in whats and ("C_EXCEPTION", "divmod") in whats


# ---- messages, paths, names ------------------------------------------------------------------

def test_message_first_and_messages_in_the_middle():
    with cPyMemTrace.Profile(message="my run\nsecond line") as p:
        assert cPyMemTrace.profile_log_path() == p.log_path
        cPyMemTrace.profile_write_message_to_log("half way")
        seed_block()
    text = pathlib.Path(p.log_path).read_text().splitlines()
    assert text[:3] == ["my run", "second line", HEADER]
    assert "half way" in text
    log = cpmt_log.read(p.log_path)
    assert log.messages == ["my run", "second line"]
    assert any(t == "half way" for _, t in log.notes)


def test_write_message_needs_an_active_context_and_a_str():
    with pytest.raises(RuntimeError, match="a profile log file when no .* is active"):
        cPyMemTrace.profile_write_message_to_log("x")
    with pytest.raises(RuntimeError, match="a trace log file when no .* is active"):
        cPyMemTrace.trace_write_message_to_log("x")
    with cPyMemTrace.Trace(filepath="t.log"):
        cPyMemTrace.trace_write_message_to_log("in trace")
        with pytest.raises(TypeError, match="msg must be a str"):
            cPyMemTrace.trace_write_message_to_log(b"bytes")
    assert "in trace" in pathlib.Path("t.log").read_text()
    assert cPyMemTrace.profile_log_path() is None and cPyMemTrace.trace_log_path() is None


def test_filepath_str_pathlike_bytes(tmp_path):
    for fp in ("a.log", tmp_path / "b.log", os.fsencode(tmp_path / "c.log")):
        with cPyMemTrace.Profile(filepath=fp) as p:
            create_string(10)
        assert p.log_path == os.fsdecode(fp) if not isinstance(fp, pathlib.Path) else str(fp)
        assert cpmt_log.read(fp if not isinstance(fp, bytes) else os.fsdecode(fp)).complete


def test_default_name_never_overwrites(tmp_path):
    # Make every name the next few seconds could take exist already.
    now = time.time()
    keep = []
    for dt in range(0, 3):
        stamp = time.strftime("%Y%m%d_%H%M%S", time.localtime(now + dt))
        name = f"{stamp}_{os.getpid()}_P_1_PY{sys.version.split()[0]}.log"
        (tmp_path / name).write_text("keep me\n")
        keep.append(tmp_path / name)
    with cPyMemTrace.Profile() as p1:
        pass
    with cPyMemTrace.Profile() as p2:
        pass
    assert all(k.read_text() == "keep me\n" for k in keep)
    assert p1.log_path != p2.log_path
    for p in (p1, p2):
        assert NAME.match(os.path.basename(p.log_path)).group(4)    # a -N suffix
        assert cpmt_log.read(p.log_path).complete


def test_threads_starting_together_get_distinct_default_logs():
    barrier = threading.Barrier(4)
    paths = []

    def worker():
        barrier.wait()
        with cPyMemTrace.Profile() as p:
            create_string(10)
        paths.append(p.log_path)

    threads = [threading.Thread(target=worker) for _ in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert len(set(paths)) == 4
    assert all(cpmt_log.read(p).complete for p in paths)


def test_profile_object_is_single_use():
    p = cPyMemTrace.Profile(filepath="x.log")
    with p:
        with pytest.raises(RuntimeError, match="already been entered"):
            p.__enter__()
    with pytest.raises(RuntimeError, match="already been used"):
        with p:
            pass


# ---- nesting ------------------------------------------------------------------------------

@needs_fixed_mmap
@in_fresh_interpreter
def test_nested_profiles_stack_and_notes():
    assert cPyMemTrace.profile_wrapper_depth() == 0
    with cPyMemTrace.Profile() as outer:
        assert cPyMemTrace.profile_wrapper_depth() == 1
        create_string(MIB)
        with cPyMemTrace.Profile() as inner:
            assert cPyMemTrace.profile_wrapper_depth() == 2
            assert cPyMemTrace.profile_log_path() == inner.log_path
            seed_block()
        assert cPyMemTrace.profile_wrapper_depth() == 1
        assert cPyMemTrace.profile_log_path() == outer.log_path
        create_string(MIB)
    assert cPyMemTrace.profile_wrapper_depth() == 0
    assert NAME.match(os.path.basename(outer.log_path)).group(3) == "1"
    assert NAME.match(os.path.basename(inner.log_path)).group(3) == "2"
    out = cpmt_log.read(outer.log_path)
    inn = cpmt_log.read(inner.log_path)
    assert out.complete and inn.complete
    notes = [t for _, t in out.notes]
    assert re.match(r"^# DETACH event=\d+ clock=\d+\.\d{6} depth=2 log=" + re.escape(inner.log_path)
                    + "$", notes[0])
    assert re.match(r"^# RESUME event=\d+ clock=\d+\.\d{6}$", notes[1])
    assert notes[-1].startswith("# END ")
    # the inner block's work is in the inner log only
    assert len(steps_on_create_string(inn)) == 8
    assert not [r for r in out.records if r.function in ("seed_block", "append")]
    detach_ev = int(re.search(r"event=(\d+)", notes[0]).group(1))
    resume_ev = int(re.search(r"event=(\d+)", notes[1]).group(1))
    assert detach_ev == resume_ev   # the outer saw no event while detached


def test_profile_and_trace_together():
    with cPyMemTrace.Profile(0, filepath="p.log"):
        with cPyMemTrace.Trace(0, filepath="t.log"):
            assert cPyMemTrace.profile_wrapper_depth() == 1
            assert cPyMemTrace.trace_wrapper_depth() == 1
            create_string(10)
    assert any(r.function == "create_string" for r in cpmt_log.read("p.log").records)
    assert any(r.what == "LINE" for r in cpmt_log.read("t.log").records)


def test_inner_exits_after_outer_leaves_nothing_attached():
    outer = cPyMemTrace.Profile(filepath="o.log")
    inner = cPyMemTrace.Profile(filepath="i.log")
    outer.__enter__()
    inner.__enter__()
    outer.__exit__(None, None, None)        # out of order
    inner.__exit__(None, None, None)
    assert sys.getprofile() is None
    assert cpmt_log.read("o.log").complete and cpmt_log.read("i.log").complete


def test_restores_a_foreign_profiler():
    seen = []

    def foreign(frame, event, arg):
        seen.append(event)

    sys.setprofile(foreign)
    try:
        with cPyMemTrace.Profile(filepath="p.log"):
            create_string(10)
        assert sys.getprofile() is foreign
    finally:
        sys.setprofile(None)


# ---- threads and fork ---------------------------------------------------------------------

def other_thread_work(n):
    return [create_string(100) for _ in range(n)]


def test_other_threads_run_undisturbed():
    result = {}

    def worker():
        result["profile"] = sys.getprofile()
        result["depth"] = cPyMemTrace.profile_wrapper_depth()
        result["path"] = cPyMemTrace.profile_log_path()
        result["value"] = len(other_thread_work(1000))

    with cPyMemTrace.Profile(0, filepath="main.log"):
        t = threading.Thread(target=worker)
        t.start()
        t.join()
        create_string(10)
    assert result == {"profile": None, "depth": 0, "path": None, "value": 1000}
    funcs = {r.function for r in cpmt_log.read("main.log").records}
    assert "create_string" in funcs and "other_thread_work" not in funcs and "worker" not in funcs


def test_each_thread_its_own_profile():
    def worker(i):
        with cPyMemTrace.Profile(0, filepath=f"t{i}.log"):
            assert cPyMemTrace.profile_wrapper_depth() == 1
            other_thread_work(50 + i)

    threads = [threading.Thread(target=worker, args=(i,)) for i in range(3)]
    with cPyMemTrace.Profile(0, filepath="main.log"):
        for t in threads:
            t.start()
        for t in threads:
            t.join()
    for i in range(3):
        log = cpmt_log.read(f"t{i}.log")
        assert log.complete
        calls = [r for r in log.records if r.what == "CALL" and r.function == "create_string"]
        assert len(calls) == 50 + i
    main = cpmt_log.read("main.log")
    assert not [r for r in main.records if r.function in ("create_string", "worker")]


def child_only_function():
    return create_string(10)


@pytest.mark.skipif(not hasattr(os, "fork"), reason="needs os.fork")
def test_fork_child_never_writes_into_the_parents_log():
    with cPyMemTrace.Profile(0, filepath="p.log") as p:
        create_string(10)
        pid = os.fork()
        if pid == 0:    # child: well over a buffer's worth of events, then both ways out
            try:
                for _ in range(5000):
                    child_only_function()
                cPyMemTrace.profile_write_message_to_log("from the child")
            finally:
                os._exit(0)
        _, status = os.waitpid(pid, 0)
        assert os.WEXITSTATUS(status) == 0
        create_string(20)
    text = pathlib.Path(p.log_path).read_text()
    assert "child_only_function" not in text and "from the child" not in text
    log = cpmt_log.read(p.log_path)
    assert log.complete
    assert [r.event for r in log.records] == list(range(len(log.records)))


@pytest.mark.skipif(not hasattr(os, "fork"), reason="needs os.fork")
def test_fork_flushes_the_parents_rows_first():
    with cPyMemTrace.Profile(0, filepath="p.log"):
        create_string(10)
        assert "create_string" not in pathlib.Path("p.log").read_text()   # still buffered
        pid = os.fork()
        if pid == 0:
            os._exit(0)
        os.waitpid(pid, 0)
        assert "create_string" in pathlib.Path("p.log").read_text()       # on disk at fork
    assert cpmt_log.read("p.log").complete


@pytest.mark.skipif(not hasattr(os, "fork"), reason="needs os.fork")
def test_fork_child_leaving_the_block_does_not_write():
    with cPyMemTrace.Profile(0, filepath="p.log") as p:
        pid = os.fork()
        if pid == 0:
            child_only_function()
        create_string(10)
    if pid == 0:
        os._exit(0)     # the child left the with-block: its __exit__ ran, and wrote nothing
    os.waitpid(pid, 0)
    text = pathlib.Path(p.log_path).read_text()
    assert "child_only_function" not in text
    assert text.count("# END ") == 1


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


# ---- how RSS is read: the gate ----------------------------------------------------------------

def c_malloc_touch(libc, n):
    p = libc.malloc(n)
    ctypes.memset(p, 1, n)
    return p


def nothing():
    pass


def _libc():
    name = ctypes.util.find_library("c")
    if name is None:
        pytest.skip("needs the C library through ctypes")
    libc = ctypes.CDLL(name)
    libc.malloc.restype = ctypes.c_void_p
    libc.malloc.argtypes = [ctypes.c_size_t]
    libc.free.argtypes = [ctypes.c_void_p]
    return libc


@pytest.mark.parametrize("exact", [False, True])
def test_memory_from_c_outside_python_allocators_appears_within_the_event_bound(exact):
    libc = _libc()
    limits = cPyMemTrace.get_gate_limits()
    assert limits == {"bytes": cPyMemTrace.GATE_BYTES, "blocks": cPyMemTrace.GATE_BLOCKS,
                      "events": cPyMemTrace.GATE_EVENTS, "seconds": cPyMemTrace.GATE_SECONDS}
    # No time bound: only the event bound may catch it (deterministic).
    cPyMemTrace.set_gate_limits(seconds=0)
    old = cPyMemTrace.set_exact_rss(exact)
    try:
        with cPyMemTrace.Profile(0, filepath="c.log"):
            p = c_malloc_touch(libc, 64 * MIB)
            for _ in range(cPyMemTrace.GATE_EVENTS):
                nothing()
        libc.free(p)
    finally:
        cPyMemTrace.set_exact_rss(old)
        cPyMemTrace.set_gate_limits(**limits)
    log = cpmt_log.read("c.log")
    (ret,) = [r for r in log.records if r.what == "RETURN" and r.function == "c_malloc_touch"]
    big = next(r for r in log.next_records if r.d_rss >= 60 * MIB and r.event != 0)
    assert ret.event <= big.event <= ret.event + cPyMemTrace.GATE_EVENTS
    if exact:
        assert big.event == ret.event


def test_time_bound_catches_c_memory_on_the_next_event():
    libc = _libc()
    limits = cPyMemTrace.get_gate_limits()
    cPyMemTrace.set_gate_limits(events=0, seconds=0.001)    # the default time bound only
    try:
        with cPyMemTrace.Profile(filepath="c.log"):
            p = c_malloc_touch(libc, 64 * MIB)
            time.sleep(0.002)
            nothing()
        libc.free(p)
    finally:
        cPyMemTrace.set_gate_limits(**limits)
    log = cpmt_log.read("c.log")
    big = next(r for r in log.next_records if r.d_rss >= 60 * MIB and r.event != 0)
    # memset of 64 MiB and the sleep each take longer than the bound: it shows by the next
    # event after the sleep at the latest
    assert big.function in ("c_malloc_touch", "sleep", "nothing")


@needs_fixed_mmap
@in_fresh_interpreter
def test_gate_off_reads_only_on_allocator_movement():
    """With both bounds off, RSS still follows Python's allocations (the counters)."""
    limits = cPyMemTrace.get_gate_limits()
    cPyMemTrace.set_gate_limits(events=0, seconds=0)
    try:
        with cPyMemTrace.Profile(filepath="g.log"):
            seed_block()
    finally:
        cPyMemTrace.set_gate_limits(**limits)
    log = cpmt_log.read("g.log")
    steps = steps_on_create_string(log)
    assert len(steps) == 8 and all(r.what == "RETURN" for r in steps)


def test_set_gate_limits_checks_its_arguments():
    with pytest.raises(ValueError):
        cPyMemTrace.set_gate_limits(bytes=0)
    with pytest.raises(TypeError):
        cPyMemTrace.set_gate_limits(4096)
    assert cPyMemTrace.get_gate_limits()["bytes"] == cPyMemTrace.GATE_BYTES


@needs_fixed_mmap
@in_fresh_interpreter
def test_exact_mode_gives_the_seed_attribution_too():
    old = cPyMemTrace.set_exact_rss(True)
    try:
        with cPyMemTrace.Profile(filepath="e.log"):
            seed_block()
    finally:
        assert cPyMemTrace.set_exact_rss(old) is True
    steps = steps_on_create_string(cpmt_log.read("e.log"))
    assert len(steps) == 8 and all(r.what == "RETURN" for r in steps)


def test_clock_never_goes_back_and_follows_the_wall():
    t0 = time.monotonic()
    with cPyMemTrace.Profile(0, filepath="m.log"):
        for _ in range(3):
            other_thread_work(3000)
            time.sleep(0.02)
    elapsed = time.monotonic() - t0
    clocks = [r.clock for r in cpmt_log.read("m.log").records]
    assert len(clocks) > 18000
    assert all(a <= b for a, b in zip(clocks, clocks[1:]))
    span = clocks[-1] - clocks[0]
    assert 0.06 <= span <= elapsed + 0.001


def test_trigger_accepts_integer_like_objects():
    class Bytes:
        def __index__(self):
            return 8192

    with cPyMemTrace.Profile(Bytes(), filepath="i.log") as p:
        pass
    assert p.d_rss_trigger == 8192
    assert cPyMemTrace.Profile(-1).d_rss_trigger == os.sysconf("SC_PAGE_SIZE")


def test_rss_in_rows_agrees_with_the_kernel():
    with cPyMemTrace.Profile(0, filepath="k.log"):
        create_string(10)
        now = cPyMemTrace.rss()
        create_string(10)
    last = cpmt_log.read("k.log").records[-1]
    assert abs(last.rss - now) <= 64 * 1024


@needs_fixed_mmap
@in_fresh_interpreter
def test_tracemalloc_before_and_after(tmp_path):
    tracemalloc.start()
    try:
        with cPyMemTrace.Profile(filepath="a.log"):
            seed_block()
            tracemalloc.stop()          # removes its hooks, maybe ours under them
            seed_block()
            tracemalloc.start()
            seed_block()
    finally:
        tracemalloc.stop()
    log = cpmt_log.read("a.log")
    # The first block's steps are exact; tracemalloc.stop() took our counters with its
    # own hooks, so the next steps may show up to one bound late, until the next read
    # puts the counters back.  Nothing is lost: RSS rose 24 times by 1 MiB.
    steps = steps_on_create_string(log)
    assert len(steps) >= 16 and all(r.what == "RETURN" for r in steps[:8])
    rises = sum(r.d_rss for r in log.next_records[1:] if r.d_rss > 0)
    assert 24 * MIB <= rises <= 24 * MIB + 8 * MIB
    with cPyMemTrace.Profile(filepath="b.log"):
        tracemalloc.start()
        seed_block()
    tracemalloc.stop()
    assert len(steps_on_create_string(cpmt_log.read("b.log"))) == 8


def test_allocators_are_given_back_after_exit():
    code = textwrap.dedent("""
        import sys
        from pymemtrace import cPyMemTrace
        sys._debugmallocstats()
        sys.stderr.write("==== AFTER ====\\n"); sys.stderr.flush()
        with cPyMemTrace.Profile():
            x = [str(i) for i in range(1000)]
        sys._debugmallocstats()
    """)
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                         check=True, cwd=os.getcwd())
    before, after = out.stderr.split("==== AFTER ====")
    if "arenas allocated total" not in before:
        pytest.skip("needs pymalloc (PYTHONMALLOC selects another allocator)")
    assert "arenas allocated total" in after   # pymalloc is visible again


# ---- decorators -----------------------------------------------------------------------------

def test_decorators():
    @cPyMemTrace.profile(0, message="decorated", filepath="d.log")
    def work(n):
        """Doc."""
        return len(create_string(n))

    @cPyMemTrace.trace
    def traced():
        return create_string(5)

    assert work(10) == 10 and work.__name__ == "work" and work.__doc__ == "Doc."
    assert traced() == "     "
    log = cpmt_log.read("d.log")
    assert log.messages == ["decorated"] and log.complete
    assert {"work", "create_string"} <= {r.function for r in log.records}
    (t,) = logs("T")
    assert any(r.what == "LINE" for r in cpmt_log.read(t).records)
    with pytest.raises(TypeError, match="d_rss_trigger"):
        cPyMemTrace.profile("x")
    with pytest.raises(AttributeError):
        cPyMemTrace.no_such_thing
    assert {"profile", "trace", "Profile", "Trace", "rss"} <= set(dir(cPyMemTrace))
    from pymemtrace.cPyMemTrace import profile, trace    # noqa: F401


def test_backend_before_3_12_is_legacy_and_monitoring_is_refused_with_the_version():
    if sys.version_info >= (3, 12):
        assert cPyMemTrace.get_backend() == "monitoring"
        return
    assert cPyMemTrace.get_backend() == "legacy"
    with pytest.raises(ValueError, match=r"sys.monitoring needs CPython 3.12 or later, this is 3\."):
        cPyMemTrace.set_backend("monitoring")
    assert cPyMemTrace.set_backend("legacy") == "legacy"
