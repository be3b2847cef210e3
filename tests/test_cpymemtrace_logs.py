"""cPyMemTrace's log files: messages first and in the middle, filepath as str, path-like
or bytes, default names that never overwrite (not even across threads starting
together), a context object used once."""
import os
import pathlib
import sys
import threading
import time

import pytest

from pymemtrace import cPyMemTrace
from pymemtrace.readers import cpmt_log

from cpymemtrace_helpers import NAME, HEADER, create_string, seed_block
from cpymemtrace_helpers import _in_tmp_cwd  # noqa: F401  (autouse fixture)


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
    # Make every name the next minute could take exist already (a few seconds
    # were not enough on a loaded machine: the contexts opened after them).
    now = time.time()
    keep = []
    for dt in range(0, 60):
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
