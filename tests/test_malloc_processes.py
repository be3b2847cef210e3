"""pymemtrace malloc across processes: a forked child's capture of its own, exec (the
last program owns the capture), a shell launcher, a tracer that cannot write, a killed
program, threads freeing each other's blocks while forking, a C program's threads and
native symbols, a forked child that execs."""
import os
import subprocess
import textwrap

import pytest

from pymemtrace.malloc import LIBRARY
from pymemtrace.readers.malloc_capture import load
from malloc_e2e import needs_preload, PY, cli, trace, line_of, sites


FORK = """\
    import os, sys
    def parent_side():
        return bytearray(1_000_003)  # PARENT
    def child_side():
        return bytearray(3_000_017)  # CHILD
    keep = parent_side()
    pid = os.fork()
    if pid == 0:
        keep2 = child_side()
        os._exit(5)                  # no destructors: the tracer still writes its tail
    _, status = os.waitpid(pid, 0)
    print("child exit", os.waitstatus_to_exitcode(status))
    """


@needs_preload
def test_fork_child_writes_its_own_capture(tmp_path):
    p, cap, script = trace(tmp_path, FORK)
    assert p.returncode == 0, p.stderr
    assert p.stdout == "child exit 5\n"
    children = list(tmp_path.glob("w.cap.*"))
    assert len(children) == 1, children
    parent = load(str(cap))
    child = load(str(children[0]))
    assert child["ppid"] == parent["pid"] and child["complete"]
    assert [s["malloc_bytes"] for s in sites(parent, script, "parent_side")] == [1_000_004]
    assert sites(parent, script, "child_side") == []        # never in the parent's capture
    assert [s["malloc_bytes"] for s in sites(child, script, "child_side")] == [3_000_018]
    assert sites(child, script, "parent_side") == []


EXEC = """\
    import os, sys
    def before():
        return bytearray(1_000_033)  # BEFORE
    keep = before()
    sys.stdout.flush()
    os.execv(sys.executable, [sys.executable, "-c",
             "def after():\\n    return bytearray(2_000_039)\\nk = after()\\nprint('after exec')"])
    """


@needs_preload
def test_exec_keeps_behaviour_and_the_last_program_owns_the_capture(tmp_path):
    p, cap, script = trace(tmp_path, EXEC)
    assert p.returncode == 0, p.stderr
    assert p.stdout == "after exec\n"
    last = load(str(cap))
    assert [(s["function"], s["malloc_bytes"]) for s in last["by_python_site"]
            if s["file"] == "<string>" and s["function"] == "after"] == [("after", 2_000_040)]
    aside = list(tmp_path.glob("w.cap.*"))
    assert len(aside) == 1
    first = load(str(aside[0]))
    assert first["pid"] == last["pid"] and first["ended_by_exec"]
    assert [s["malloc_bytes"] for s in sites(first, script, "before")] == [1_000_034]
    assert "other processes wrote 1 capture" in p.stderr


@needs_preload
def test_a_shell_that_runs_python_and_a_failed_exec(tmp_path):
    """A launcher script: the shell's capture is set aside, Python's is FILE."""
    script = tmp_path / "w.py"
    script.write_text(textwrap.dedent("""\
        import os
        try:
            os.execv("/nonexistent/program", ["x"])
        except OSError:
            pass
        def still_traced():
            return bytearray(1_500_007)
        k = still_traced()
        """))
    launcher = tmp_path / "run.sh"
    launcher.write_text(f"#!/bin/sh\nexec {PY} {script}\n")
    launcher.chmod(0o755)
    cap = tmp_path / "s.cap"
    p = cli("-o", str(cap), "--", str(launcher), cwd=tmp_path)
    assert p.returncode == 0, p.stderr
    r = load(str(cap))
    assert r["python_status"] == "on" and r["complete"] and not r["ended_by_exec"]
    assert [s["malloc_bytes"] for s in sites(r, script, "still_traced")] == [1_500_008]


@needs_preload
def test_tracer_that_cannot_write_leaves_the_program_alone(tmp_path):
    """Started by hand with a capture path that cannot be created."""
    env = dict(os.environ, LD_PRELOAD=str(LIBRARY),
               PYMEMTRACE_MALLOC_OUT=str(tmp_path / "missing" / "x.cap"))
    p = subprocess.run([PY, "-c", "import sys; print(sum(range(10))); sys.exit(3)"],
                       env=env, capture_output=True, text=True)
    assert (p.returncode, p.stdout) == (3, "45\n")
    assert "pymemtrace malloc: cannot create the capture" in p.stderr
    assert "No such file or directory" in p.stderr


@needs_preload
def test_killed_program_leaves_a_readable_capture(tmp_path):
    src = """\
    import os, signal
    def churn():
        keep = []
        for i in range(20_000):
            keep.append(bytearray(1000 + i % 7))  # CHURN
        return keep
    k = churn()
    os.kill(os.getpid(), signal.SIGKILL)
    """
    p, cap, script = trace(tmp_path, src)
    assert p.returncode == 128 + 9
    r = load(str(cap))
    assert not r["complete"]
    assert any("no end" in w and "killed" in w for w in r["warnings"])
    s = [x for x in sites(r, script, "churn") if x["line"] == line_of(script, "CHURN")]
    # every record is in the file the moment it is made (mapped chunks): none of
    # the 20,000 bytearrays is lost (the list's own reallocs come on top)
    assert 20_000 <= s[0]["malloc_count"] < 20_100
    rep = cli("report", str(cap))
    assert rep.returncode == 0 and "warning: the capture has no end" in rep.stdout


@needs_preload
def test_threads_freeing_each_others_blocks_while_forking(tmp_path):
    """Producers allocate, consumers free, the main thread forks meanwhile:
    the capture orders every free after its allocation across threads."""
    src = """\
    import os, queue, threading
    q = queue.Queue(maxsize=256)
    N, P = 3000, 4
    def produce():
        for i in range(N):
            q.put(bytearray(600 + i % 300))  # PRODUCE
    def consume():
        while True:
            b = q.get()
            if b is None:
                return
            del b
    ps = [threading.Thread(target=produce) for _ in range(P)]
    cs = [threading.Thread(target=consume) for _ in range(P)]
    for t in ps + cs: t.start()
    for _ in range(5):
        pid = os.fork()
        if pid == 0:
            os._exit(0)
        os.waitpid(pid, 0)
    for t in ps: t.join()
    for _ in cs: q.put(None)
    for t in cs: t.join()
    print("done")
    """
    p, cap, script = trace(tmp_path, src)
    assert (p.returncode, p.stdout) == (0, "done\n"), p.stderr
    r = load(str(cap))
    assert r["complete"] and r["seq_gaps"] == 0, r["warnings"]
    s = [x for x in sites(r, script, "produce") if x["line"] == line_of(script, "PRODUCE")]
    assert s[0]["malloc_count"] == 3000 * 4
    assert s[0]["malloc_bytes"] == 4 * sum(601 + i % 300 for i in range(3000))
    assert s[0]["live_count"] == 0      # every block freed, by another thread
    assert len(list(tmp_path.glob("w.cap.*"))) == 5


C_PROGRAM = r"""
#include <pthread.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

static void *early;

/* runs before main (and maybe before the tracer's own constructor) */
__attribute__((constructor)) static void early_alloc(void) { early = malloc(4321); }

__attribute__((noinline)) void *allocate_distinct(size_t n) { return malloc(n); }

static void *worker(void *arg)
{
    (void)arg;
    for (int i = 0; i < 1000; i++) {
        void *p = allocate_distinct(123457);
        memset(p, 1, 16);
        free(p);
    }
    return NULL;
}

int main(void)
{
    pthread_t t[4];
    for (int i = 0; i < 4; i++) pthread_create(&t[i], NULL, worker, NULL);
    for (int i = 0; i < 4; i++) pthread_join(t[i], NULL);
    void *kept = allocate_distinct(77777);   /* a leak, by a C function */
    (void)kept;
    pid_t pid = fork();
    if (pid == 0) { free(allocate_distinct(99991)); _exit(0); }
    int st;
    waitpid(pid, &st, 0);
    free(early);
    return 42;
}
"""


@needs_preload
def test_a_c_program_threads_and_native_symbols(tmp_path):
    import shutil
    cc = shutil.which("cc") or shutil.which("gcc")
    if cc is None:
        pytest.skip("needs a C compiler")
    src = tmp_path / "prog.c"
    src.write_text(C_PROGRAM)
    exe = tmp_path / "prog"
    subprocess.run([cc, "-O1", "-o", str(exe), str(src), "-lpthread"], check=True)
    cap = tmp_path / "c.cap"
    p = cli("-o", str(cap), "--native", "--", str(exe))
    assert p.returncode == 42, p.stderr
    r = load(str(cap))
    assert r["python_status"] == "none" and r["complete"]
    nat = {n["symbol"].split("+")[0]: n for n in r["by_native_site"] if n["symbol"]}
    d = nat["allocate_distinct"]
    assert d["module"] == str(exe)
    assert d["malloc_count"] == 4 * 1000 + 1
    assert d["malloc_bytes"] == 4 * 1000 * 123457 + 77777
    assert (d["live_bytes"], d["live_count"]) == (77777, 1)
    leaks = [n for n in r["native_leaks"] if n["symbol"].startswith("allocate_distinct")]
    assert leaks and leaks[0]["bytes"] == 77777
    child = list(tmp_path.glob("c.cap.*"))
    assert len(child) == 1
    rc = load(str(child[0]))
    assert any(b["size"] == 99991 and b["freed"] for b in rc["largest"])



@needs_preload
def test_a_forked_child_that_execs_leaves_the_parents_capture_in_place(tmp_path):
    """fork then exec without vfork (CPython 3.9's subprocess): the child's exec
    must not move the parent's FILE aside, nor leave an empty capture of its own."""
    import glob
    py39 = sorted(glob.glob("/root/.pyenv/versions/3.9.*/bin/python3.9"))
    if not py39:
        pytest.skip("needs CPython 3.9 (its subprocess forks without vfork)")
    cap = tmp_path / "w.cap"
    src = "import os, subprocess, sys; subprocess.run([sys.executable, '-c', 'pass']); print(os.getpid())"
    p = cli("-o", str(cap), "--", py39[-1], "-c", src, cwd=tmp_path)
    assert p.returncode == 0, p.stderr
    parent = load(str(cap))
    assert parent["pid"] == int(p.stdout) and parent["complete"]
    children = list(tmp_path.glob("w.cap.*"))
    assert len(children) == 1, children       # the exec'd Python's, nothing from before exec
    assert load(str(children[0]))["ppid"] == parent["pid"]
