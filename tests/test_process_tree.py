"""pymemtrace.process_tree (the original's process_tree tool) over
_process.Tree: each process of a tree sampled on its own, shown as a tree."""
import io
import json
import os
import re
import subprocess
import sys
import time

import pytest

from pymemtrace import _process, process_tree

PAGE = os.sysconf("SC_PAGE_SIZE")
SLEEPER = "import os, sys, time; sys.stdout.write('ready\\n'); sys.stdout.flush(); time.sleep(30)"


@pytest.fixture
def family():
    """A child python that has started a grandchild; both sleep."""
    code = ("import subprocess, sys, time; "
            f"g = subprocess.Popen([sys.executable, '-c', {SLEEPER!r}], stdout=subprocess.PIPE); "
            "g.stdout.readline(); print(g.pid, flush=True); time.sleep(30)")
    child = subprocess.Popen([sys.executable, "-c", code], stdout=subprocess.PIPE, text=True)
    grandchild = int(child.stdout.readline())
    yield child, grandchild
    child.kill()
    child.wait()
    try:
        os.kill(grandchild, 9)
    except ProcessLookupError:
        pass


def test_each_process_sampled_with_its_parent(family):
    child, grandchild = family
    t = process_tree.ProcessTree(child.pid)
    rows = t.sample()
    assert [r.pid for r in rows[:1]] == [child.pid]
    by_pid = {r.pid: r for r in rows}
    assert by_pid[grandchild].ppid == child.pid and len(rows) == 2
    with open(f"/proc/{grandchild}/statm") as f:
        rss = int(f.read().split()[1]) * PAGE
    assert abs(by_pid[grandchild].rss - rss) <= 256 * 1024
    assert by_pid[grandchild].state in "SR" and by_pid[grandchild].num_threads >= 1
    assert by_pid[grandchild].uss == -1
    assert t.name(grandchild).startswith("python")
    assert [(d, r.pid) for d, r in process_tree.tree_order(rows)] == [(0, child.pid), (1, grandchild)]
    os.kill(grandchild, 9)
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline and len(t.sample()) > 1:
        time.sleep(0.05)
    assert [r.pid for r in t.sample()] == [child.pid]
    child.kill()
    child.wait()
    assert t.sample() == []
    t.close()


def test_uss_when_asked(family):
    child, _ = family
    rows = process_tree.ProcessTree(child.pid, uss=True).sample()
    assert all(0 < r.uss <= r.rss for r in rows)


def test_open_files_and_context_switches_when_asked(family):
    child, grandchild = family
    t = process_tree.ProcessTree(child.pid, fds=True, ctx=True)
    by_pid = {r.pid: r for r in t.sample()}
    g = by_pid[grandchild]
    assert g.fds == len(os.listdir(f"/proc/{grandchild}/fd"))
    with open(f"/proc/{grandchild}/status") as f:
        status = dict(line.split(":", 1) for line in f if "ctxt_switches" in line)
    assert g.ctx_switches >= int(status["voluntary_ctxt_switches"]) + \
        int(status["nonvoluntary_ctxt_switches"]) - 5 and g.ctx_switches > 0
    assert process_tree.ProcessTree(child.pid).sample()[0].fds == -1


def test_bad_pids():
    with pytest.raises(ValueError, match="no process with pid"):
        process_tree.ProcessTree(999999999)
    with pytest.raises(TypeError, match="pid must be an int"):
        process_tree.ProcessTree("1")
    with pytest.raises(ValueError, match="positive"):
        _process.Tree(0)
    t = _process.Tree(os.getpid())
    t.close()
    with pytest.raises(ValueError, match="closed"):
        t.sample()


def test_log_process_tree_table_and_json(family, tmp_path):
    child, grandchild = family
    out = io.StringIO()
    js = tmp_path / "tree.json"
    cols = [process_tree.COLUMNS[c] for c in ("rss", "cpu", "threads", "status")]
    n = process_tree.log_process_tree(child.pid, 0.05, cols, ostream=out, json_path=str(js), count=3)
    assert n == 3
    lines = out.getvalue().splitlines()
    assert lines[0].split()[:5] == ["Time(s)", "PID", "Name", "RSS(MB)", "dRSS(MB)"]
    assert len(lines) == 1 + 3 * 2
    child_line = [ln for ln in lines if f" {grandchild} " in ln][0]
    assert f" {grandchild}   python" in child_line     # indented under its parent
    # the grandchild sleeps 30 s once it said ready; a loaded machine may sample it just
    # before it got there, so 'running' is a true answer too
    assert re.search(r"\b(sleeping|running)\b", child_line) and "\x1b[" not in out.getvalue()
    data = json.loads(js.read_text())
    assert len(data) == 3 and data[0]["pid"] == child.pid
    assert data[0]["children"][0]["pid"] == grandchild and data[0]["children"][0]["RSS"] > 1
    assert data[2]["children"][0]["Status"] in ("sleeping", "running")


def test_log_process_tree_sep_and_omit_first(family):
    child, _ = family
    out = io.StringIO()
    n = process_tree.log_process_tree(child.pid, 0.05, [process_tree.COLUMNS["rss"]], ostream=out,
                                      sep="|", omit_first=True, count=2)
    lines = out.getvalue().splitlines()
    assert n == 2 and lines[0] == "Time(s)|PID|Name|RSS(MB)|dRSS(MB)"
    assert len(lines) == 1 + 2 * 2
    assert all(len(ln.split("|")) == 5 for ln in lines[1:])
    assert float(lines[1].split("|")[0]) > 0       # the first sample was omitted


def test_log_process_tree_bad_interval():
    with pytest.raises(ValueError, match="interval"):
        process_tree.log_process_tree(os.getpid(), 0)


MOD = [sys.executable, "-m", "pymemtrace.process_tree"]


def test_cli_launches_a_command_and_returns_its_exit_code():
    code = ("import subprocess, sys, time; "
            "p = subprocess.Popen([sys.executable, '-c', 'import time; time.sleep(0.8)']); "
            "time.sleep(0.8); p.wait(); sys.exit(3)")
    r = subprocess.run(MOD + ["-i", "0.1", "-a", "--", sys.executable, "-c", code],
                       capture_output=True, text=True, timeout=120)
    assert r.returncode == 3, r.stderr
    lines = r.stdout.splitlines()
    assert lines[0].startswith("CMD: ") and "Thrds" in lines[1] and "Status" in lines[1]
    assert any(ln.split()[2:3] == ["python3"] or "  python" in ln for ln in lines[2:])


def test_cli_bad_input_is_one_line():
    r = subprocess.run(MOD + ["-p", "999999999"], capture_output=True, text=True, timeout=60)
    assert r.returncode == 1 and r.stderr.strip().splitlines() == [
        "python -m pymemtrace.process_tree: error: no process with pid 999999999"]
    r = subprocess.run(MOD + ["-n", "--count", "1"], capture_output=True, text=True, timeout=60)
    assert r.returncode == 2 and "-n/--net-connections is not provided" in r.stderr
    r = subprocess.run(MOD + ["-i", "0"], capture_output=True, text=True, timeout=60)
    assert r.returncode == 2 and "--interval must be > 0" in r.stderr
    r = subprocess.run(MOD + ["--", "/no/such/command"], capture_output=True, text=True, timeout=60)
    assert r.returncode == 127 and "cannot run /no/such/command" in r.stderr


def test_cli_watches_itself_by_default():
    r = subprocess.run(MOD + ["--count", "2", "-i", "0.05", "-c", "-f", "-x"], capture_output=True, text=True,
                       timeout=60)
    assert r.returncode == 0, r.stderr
    rows = r.stdout.splitlines()[2:]
    assert len(rows) == 2 and all(" User(s) " not in x for x in rows)
    header = r.stdout.splitlines()[1].split()
    assert header[3:] == ["RSS(MB)", "dRSS(MB)", "CPU(%)", "dCPU(%)", "User(s)", "Sys(s)", "Ctx", "dCtx",
                          "Files", "dFiles"]
    files = int(rows[0].split()[-2].replace(",", ""))
    assert 3 <= files < 1000
