"""pymemtrace malloc --aggregate: the bounded capture of issue 12.

No events: the preload library keeps, per distinct whole stack, what was
allocated, what is live and what was live at the high-water mark
(src/preload/aggregate.c), and writes it as a complete checkpoint every
--checkpoint seconds into one of two slots, the header naming the last whole
one (src/preload/checkpoint.c).  Its size grows with distinct stacks, not
events; its numbers are the event mode's; a SIGKILL at any moment leaves the
last checkpoint readable; a damaged one is said to be.
"""
import os
import random
import shutil
import struct
import subprocess
import sys
import textwrap

import pytest

from malloc_capture import run_and_kill
from malloc_e2e import PY, skip_under_asan
from pymemtrace.readers.malloc_capture import capture_header, load
from pymemtrace.readers.malloc_stacks import load_stacks

pytestmark = skip_under_asan()

# Deterministic: every object a malloc (--python-malloc), a fixed number of
# iterations; `keep` grows (a leak in a list comprehension inside a named
# function) and each `churn` list is freed at once.
WORK = """\
    import sys
    keep = []
    def churn(i):
        return [bytearray(100 + (i + k) % 7) for k in range(20)]
    def leak(i):
        keep.append([bytes(1000 + i % 3) for _ in range(2)])
    def main(n):
        for i in range(n):
            churn(i)
            leak(i)
        keep.clear()
        for i in range(n // 2):
            leak(i)
    main(int(sys.argv[1]))
    """


def run(tmp_path, source, *args, mode=("--aggregate",), name="t.cap", check=True):
    script = tmp_path / "prog.py"
    script.write_text(textwrap.dedent(source))
    cap = tmp_path / name
    cmd = [PY, "-m", "pymemtrace", "malloc", "--python-malloc", *mode, "-o", str(cap), "--",
           PY, str(script), *args]
    p = subprocess.run(cmd, cwd=tmp_path, capture_output=True, text=True, timeout=300)
    if check:
        assert p.returncode == 0, p.stderr
    return cap, str(script), p


def funcs_of(r, script):
    return {f["function"]: f for f in r["functions"] if f["file"] == script}


# Without address randomisation the workload is the same to the byte run after
# run (with it, the order of a few frees at exit changes and the peak moves by
# a hundred bytes, in either mode).
NO_ASLR = ["setarch", "-R"] if shutil.which("setarch") else []


def preloaded(tmp_path, source, n, aggregate):
    """Run source under the preload library directly, with the same environment
    (the same sizes) in both modes: only AGGREGATE's value differs."""
    from pymemtrace.malloc import LIBRARY
    script = tmp_path / "prog.py"
    script.write_text(textwrap.dedent(source))
    cap = tmp_path / ("ag.cap" if aggregate else "ev.cap")
    env = dict(os.environ, LD_PRELOAD=str(LIBRARY), PYMEMTRACE_MALLOC_OUT=str(cap),
               PYMEMTRACE_MALLOC_STACKS="1", PYMEMTRACE_MALLOC_AGGREGATE=str(int(aggregate)),
               PYTHONMALLOC="malloc", PYTHONHASHSEED="0")
    subprocess.run([*NO_ASLR, PY, str(script), str(n)], cwd=tmp_path, env=env, check=True,
                   timeout=300)
    return cap, str(script)


def test_totals_equal_the_event_mode(tmp_path):
    ev, script = preloaded(tmp_path, WORK, 400, aggregate=False)
    ag, _ = preloaded(tmp_path, WORK, 400, aggregate=True)
    assert capture_header(str(ag))["aggregate"] and not capture_header(str(ev))["aggregate"]
    e, a = load_stacks(str(ev)), load_stacks(str(ag))
    # every function of the script, inclusively: allocated, at the peak, at the end
    fe, fa = funcs_of(e, script), funcs_of(a, script)
    assert {"<module>", "main", "churn", "leak"} <= set(fe)    # (+ <listcomp> before 3.12)
    assert fa == fe
    assert fe["leak"]["allocated_count"] >= 600 and fe["leak"]["peak_bytes"] >= 400 * 2000
    # the whole process, the same
    for k in ("events", "allocated_bytes", "allocated_count", "heap_at_end", "leaked_bytes",
              "leaked_count", "kinds", "sizes"):
        assert a[k] == e[k], k
    if NO_ASLR:
        assert (a["peak"], a["peak_live_bytes"]) == (e["peak"], e["peak_live_bytes"])
    else:
        assert abs(a["peak"]["bytes"] - e["peak"]["bytes"]) < 1024
    # the per-line report (report --json's by_python_site and leaks) agrees too
    le, la = load(str(ev)), load(str(ag))
    for k in ("total_bytes", "total_count", "live_bytes", "live_count"):
        assert la[k] == le[k], k
    key = ("file", "line", "function", "bytes", "count", "live_bytes", "live_count")
    assert ([tuple(s[k] for k in key) for s in la["by_python_site"]] ==
            [tuple(s[k] for k in key) for s in le["by_python_site"]])
    assert la["leaks"] == le["leaks"]
    assert la["aggregate"] and la["checkpoint_final"] and not la["warnings"]


def test_size_grows_with_stacks_not_events(tmp_path):
    small, _, _ = run(tmp_path, WORK, "300", name="small.cap")
    big, _, _ = run(tmp_path, WORK, "3000", name="big.cap")
    s, b = os.path.getsize(small), os.path.getsize(big)
    # the same stacks: within a few kB (sizes and counts are wider numbers)
    assert b <= s * 1.1 + 2048, (s, b)
    ev_small, _, _ = run(tmp_path, WORK, "300", mode=("--stacks",), name="evs.cap")
    ev_big, _, _ = run(tmp_path, WORK, "3000", mode=("--stacks",), name="evb.cap")
    # the event mode grows with the events (the contrast this mode exists for)
    assert os.path.getsize(ev_big) > 4 * os.path.getsize(ev_small)
    assert load_stacks(str(big))["allocated_count"] > 9 * 300 * 22


# Allocates from two threads, each freeing blocks the other made, and counts
# what it finished (malloc_capture.KILLABLE); checkpoints every 0.05 s.
KILLED = """\
    import queue
    handoff = queue.Queue(maxsize=64)
    def work(slot):
        i = 0
        keep = []
        while True:
            b = bytearray(10_003 + slot)  # MARK
            handoff.put(b)
            keep.append(handoff.get())
            if len(keep) > 500:
                del keep[:250]
            i += 1
            done[slot] = i
    threading.Thread(target=work, args=(1,), daemon=True).start()
    started()
    work(0)
    """


def consistent(r, s):
    """The invariants of one whole checkpoint (a torn one breaks them)."""
    assert s["allocated_count"] == sum(k["count"] for k in s["kinds"].values())
    assert s["allocated_bytes"] == sum(k["bytes"] for k in s["kinds"].values())
    assert s["leaked_bytes"] == s["heap_at_end"] == sum(x["leaked_bytes"] for x in s["stacks"])
    assert s["peak_live_bytes"] == s["peak"]["bytes"] >= s["heap_at_end"]
    assert s["allocated_bytes"] == r["total_bytes"] and s["leaked_bytes"] == r["live_bytes"]
    events = [p[0] for p in s["points"]]
    assert events == sorted(events) and events[-1] == s["events"]


@pytest.mark.parametrize("run_no", range(4))
def test_sigkill_at_a_random_moment_leaves_the_last_checkpoint(tmp_path, run_no):
    cap = tmp_path / "t.cap"
    script, rc, err, done = run_and_kill(
        tmp_path, KILLED, [PY, "-m", "pymemtrace", "malloc", "--aggregate", "--checkpoint",
                           "0.05", "-o", str(cap), "--"], random.Random(run_no).uniform(0.3, 1.2))
    assert rc == 128 + 9, err
    done = sum(done)
    r = load(str(cap))
    assert r["aggregate"] and not r["checkpoint_final"] and r["checkpoint"] >= 1
    assert any("killed or crashed: this is its last checkpoint" in w for w in r["warnings"])
    s = load_stacks(str(cap))
    consistent(r, s)
    mark = next(n for n, line in enumerate(script.read_text().splitlines(), 1) if "MARK" in line)
    made = sum(x["allocated_bytes"] for x in s["stacks"]
               if s["frames"][x["frame"]][2] == mark and
               s["functions"][s["frames"][x["frame"]][1]]["file"] == str(script))
    # a checkpoint taken before the kill: something, and no more than was done
    # (10,003 or 10,004 bytes an iteration, and the arenas of the small objects)
    assert 10_003 <= made <= 10_004 * (done + 2) + 8 * 2 ** 20, (made, done)
    rep = subprocess.run([PY, "-m", "pymemtrace", "malloc", "report", str(cap)],
                         capture_output=True, text=True)
    assert rep.returncode == 0 and "this is its last checkpoint" in rep.stdout


def killed_capture(tmp_path):
    """An aggregated capture of a program killed after a few checkpoints,
    left as the kill left it (unpacked)."""
    from pymemtrace.malloc import LIBRARY
    cap = tmp_path / "raw.cap"
    env = dict(os.environ, PYMEMTRACE_MALLOC_OUT=str(cap), PYMEMTRACE_MALLOC_AGGREGATE="1",
               PYMEMTRACE_MALLOC_CHECKPOINT="0.05", PYTHONMALLOC="malloc",
               LD_PRELOAD=str(LIBRARY))
    _, rc, _, _ = run_and_kill(tmp_path, KILLED, [], 0.5, env=env)
    assert rc == -9
    h = capture_header(str(cap))
    assert h["aggregate"] and h["state"] == 0
    return cap


def report(cap):
    return subprocess.run([PY, "-m", "pymemtrace", "malloc", "report", str(cap)],
                          capture_output=True, text=True, timeout=60)


def test_damaged_truncated_or_missing_checkpoints_are_said(tmp_path):
    cap = killed_capture(tmp_path)
    data = bytearray(cap.read_bytes())
    # header: ckpt_commit at 100, ckpt_slot[2] at 112 (capture_format.h)
    commit = struct.unpack_from("<I", data, 100)[0]
    slots = struct.unpack_from("<QQ", data, 112)
    data_offset = struct.unpack_from("<I", data, 52)[0]
    assert commit >= 2
    head = data_offset + slots[commit & 1]
    # the payload of the last checkpoint damaged: the one before it, said so
    bad = bytearray(data)
    bad[head + 136 + 40] ^= 0xFF
    (tmp_path / "bad.cap").write_bytes(bad)
    r = load(str(tmp_path / "bad.cap"))
    assert r["checkpoint_older"] and r["checkpoint"] == commit - 1
    assert any("the last checkpoint is damaged" in w for w in r["warnings"])
    # both damaged: one line naming it, exit 2
    other = data_offset + slots[(commit - 1) & 1]
    bad[other + 136 + 40] ^= 0xFF
    (tmp_path / "bad2.cap").write_bytes(bad)
    p = report(tmp_path / "bad2.cap")
    assert p.returncode == 2 and "checksum" in p.stderr and len(p.stderr.splitlines()) == 1
    # killed before the first checkpoint (no commit)
    none = bytearray(data)
    struct.pack_into("<I", none, 100, 0)
    (tmp_path / "none.cap").write_bytes(none)
    p = report(tmp_path / "none.cap")
    assert p.returncode == 2 and "before its first" in p.stderr
    # cut short anywhere: a report or one clear line, never a crash
    for cut in sorted(random.Random(1).sample(range(1, len(data)), 12)):
        (tmp_path / "cut.cap").write_bytes(data[:cut])
        p = report(tmp_path / "cut.cap")
        assert p.returncode in (0, 2), (cut, p.stderr)
        assert p.returncode == 0 or len(p.stderr.strip().splitlines()) == 1, (cut, p.stderr)


def test_views_that_need_events_say_so(tmp_path):
    cap, _, _ = run(tmp_path, WORK, "50")
    for args in (["report", str(cap), "--range", "10:20"],
                 ["report", str(cap), "--native"],
                 ["flamegraph", str(cap), "--range", "0:50%"]):
        p = subprocess.run([PY, "-m", "pymemtrace", "malloc", *args], capture_output=True,
                           text=True)
        assert p.returncode == 2 and "aggregated capture" in p.stderr, p.stderr
        assert len(p.stderr.strip().splitlines()) == 1
    p = subprocess.run([PY, "-m", "pymemtrace", "malloc", "report", str(cap), "--view", "time"],
                       capture_output=True, text=True)
    assert p.returncode == 0 and "Peak (^)" in p.stdout and "one point per checkpoint" in p.stdout
    p = subprocess.run([PY, "-m", "pymemtrace", "malloc", "--checkpoint", "2", "--", "true"],
                       capture_output=True, text=True)
    assert p.returncode == 2 and "--checkpoint SECONDS goes with --aggregate" in p.stderr
    p = subprocess.run([PY, "-m", "pymemtrace", "malloc", "--aggregate", "--checkpoint", "0",
                        "--", "true"], capture_output=True, text=True)
    assert p.returncode == 2 and "--checkpoint must be seconds" in p.stderr


def test_flamegraph_and_pprof_of_an_aggregated_capture(tmp_path):
    cap, script, _ = run(tmp_path, WORK, "100")
    out = tmp_path / "c.collapsed"
    p = subprocess.run([PY, "-m", "pymemtrace", "malloc", "export", str(cap), "--format",
                        "collapsed", "--view", "all", "-o", str(out)], capture_output=True,
                       text=True)
    assert p.returncode == 0, p.stderr
    text = out.read_text()
    assert f"main ({script}:" in text and f"leak ({script}:" in text
    p = subprocess.run([PY, "-m", "pymemtrace", "malloc", "flamegraph", str(cap), "-o",
                        str(tmp_path / "f.html")], capture_output=True, text=True)
    assert p.returncode == 0 and (tmp_path / "f.html").stat().st_size > 1000


FORKS = """\
    import os, sys
    def parent_work():
        return [bytearray(5000) for _ in range(10)]
    def child_work():
        return [bytearray(7000) for _ in range(30)]
    keep = parent_work()
    pid = os.fork()
    if pid == 0:
        held = child_work()
        os._exit(0)
    os.waitpid(pid, 0)
    print(pid)
    """


def test_a_forked_child_writes_its_own_aggregated_capture(tmp_path):
    cap, script, p = run(tmp_path, FORKS)
    child = int(p.stdout.strip().splitlines()[-1])
    theirs = tmp_path / f"t.cap.{child}"
    assert theirs.exists(), p.stderr
    mine, its = load_stacks(str(cap)), load_stacks(str(theirs))
    assert capture_header(str(theirs))["aggregate"]
    fm, fc = funcs_of(mine, script), funcs_of(its, script)
    assert fm["parent_work"]["allocated_bytes"] >= 10 * 5000 and "child_work" not in fm
    # the child counts only what it did itself; its blocks were live at its _exit
    assert "parent_work" not in fc and fc["child_work"]["leaked_bytes"] >= 30 * 7000
    assert load(str(theirs))["checkpoint_final"]


# 20,000 distinct lines each allocate: a checkpoint of about 1.1 MB, more than
# the 1 MiB file system holds.
MANY_STACKS = """\
    import sys
    src = "\\n".join(f"x{i} = bytearray(600 + {i} % 7)" for i in range(20_000))
    small = [bytearray(64) for _ in range(100)]      # the first checkpoint fits
    import time; time.sleep(0.3)
    exec(compile(src, "generated.py", "exec"))
    sys.exit(3)
    """


def test_a_full_disk_keeps_the_last_checkpoint_and_says_so(tmp_path):
    small = tmp_path / "small"
    if os.geteuid() != 0:
        pytest.skip("mounting a small tmpfs needs root")
    small.mkdir()
    m = subprocess.run(["mount", "-t", "tmpfs", "-o", "size=1m", "tmpfs", str(small)],
                       capture_output=True, text=True)
    if m.returncode != 0:
        pytest.skip(f"cannot mount a tmpfs: {m.stderr.strip()}")
    try:
        script = tmp_path / "prog.py"
        script.write_text(textwrap.dedent(MANY_STACKS))
        cap = small / "t.cap"
        p = subprocess.run([PY, "-m", "pymemtrace", "malloc", "--aggregate", "--checkpoint",
                            "0.1", "-o", str(cap), "--", PY, str(script)], cwd=tmp_path,
                           capture_output=True, text=True, timeout=300)
        assert p.returncode == 3, p.stderr          # the program's own exit code
        assert "checkpoints of" in p.stderr and "because the disk was full" in p.stderr
        r = load(str(cap))
        assert r["aggregate"] and r["complete"] and not r["checkpoint_final"]
        assert r["checkpoint"] >= 1
        assert any("checkpoints stopped at event" in w and "the disk was full" in w
                   for w in r["warnings"]), r["warnings"]
        assert not any("killed" in w for w in r["warnings"])
        consistent(r, load_stacks(str(cap)))
    finally:
        subprocess.run(["umount", str(small)], check=False)
