"""pymemtrace bpftrace: the scripts, the report parser and the CLI on recorded outputs.

The fixtures in fixtures/bpftrace/ were recorded from real runs of the scripts
against /usr/bin/python3.11 running bpftrace_workload.py (see the README of
that directory).  These tests need neither root nor bpftrace.
"""
import json
import os
import pathlib
import re
import subprocess
import sys

import pytest

from pymemtrace.readers import bpftrace_log as br
from pymemtrace import bpftrace_run as cb
from pymemtrace import commands as cli

HERE = pathlib.Path(__file__).resolve().parent
FIX = HERE / "fixtures" / "bpftrace"
SIZE = 123_457
SCRIPTS = ("py_flow_malloc_free", "py_flowinfo", "py_flowinfo_rss", "py_malloc", "py_object")
# Lines of bpftrace_workload.py when the fixtures were recorded (re-record the
# fixtures if that file changes).
MAKE_BUFFERS, BUFFER_LINE = 18, 21
MAKE_FLOATS, FLOAT_LINE = 26, 29
LEAF, NESTED = 34, 38
N_BUFFERS = 40


def _cli(*argv, env=None):
    e = dict(os.environ)
    e.update(env or {})
    return subprocess.run([sys.executable, "-m", "pymemtrace", *argv], capture_output=True,
                          text=True, env=e, timeout=120)


def _assert_user_error(r, *needles):
    assert r.returncode == 2, (r.returncode, r.stdout, r.stderr)
    assert "Traceback" not in r.stderr
    lines = [line for line in r.stderr.splitlines() if line.strip()]
    assert len(lines) == 1, r.stderr
    for n in needles:
        assert n in lines[0], lines[0]
    return lines[0]


# ---- the scripts ship with the package and say what they need ------------------------------

def test_scripts_are_installed_as_package_data():
    d = cb.scripts_dir()
    assert d.name == "bpftrace"
    for name in SCRIPTS:
        assert (d / f"{name}.bt").is_file()
    assert set(SCRIPTS) <= set(cb.script_names())


@pytest.mark.parametrize("name", SCRIPTS)
def test_script_header_says_needs_usage_prints(name):
    text = (cb.scripts_dir() / f"{name}.bt").read_text()
    header = text[:text.index("*/")]
    assert f"{name}.bt - " in header
    for word in ("Needs:", "Usage:", "Prints:", "root", "USDT", "/usr/bin/python3.11"):
        assert word in header, word
    # $1 is only ever the PID: 'run -- CMD' rewrites it to bpftrace's cpid.
    code = text[text.index("*/"):]
    uses = re.findall(r".{0,8}\$1\b", code)
    assert uses
    for use in uses:
        assert use.endswith(("pid == $1", "tid == $1", ", $1")), use
    assert f"=== pymemtrace {name} begin ===" in code and f"=== pymemtrace {name} end ===" in code


def test_cmd_mode_rewrites_pid_parameter(tmp_path, monkeypatch):
    monkeypatch.setattr(cb, "target_command",
                        lambda command: (["/usr/bin/python3.11", "x.py"], "/usr/bin/python3.11"))
    argv, label, usdt = cb.build_invocation("py_malloc", "/usr/bin/bpftrace", None,
                                            ["/usr/bin/python3.11", "x.py"], str(tmp_path))
    assert argv[:3] == ["/usr/bin/bpftrace", "-c", "/usr/bin/python3.11 x.py"]  # -o added by run()
    assert argv[-2:] == ["0", "/usr/bin/python3.11"]
    text = pathlib.Path(argv[3]).read_text()
    assert "$1" not in text and "pid == cpid" in text
    # bpftrace -c ends with the command; the script's own exit probe is dropped.
    assert "sched_process_exit" not in text and "exit()" not in text
    assert "sched_process_exit" in (cb.scripts_dir() / "py_malloc.bt").read_text()
    assert label == "x_py"


def test_list_names_every_script():
    r = _cli("bpftrace", "list")
    assert r.returncode == 0, r.stderr
    for name in SCRIPTS:
        line = next(line for line in r.stdout.splitlines() if line.startswith(name + " "))
        assert len(line.split(None, 1)[1]) > 10


# ---- py_malloc: recorded output ---------------------------------------------------------------

def test_py_malloc_fixture_attributes_known_bytes_to_known_line():
    rep = br.parse_file(str(FIX / "py_malloc_workload.txt"))
    assert rep.script == "py_malloc" and rep.complete and not rep.warnings
    rows = [r for r in rep.by_line() if r["function"] == "make_buffers"
            and r["file"].endswith("bpftrace_workload.py")]
    buf = [r for r in rows if r["line"] == BUFFER_LINE]
    assert buf and buf[0]["count"] == N_BUFFERS and buf[0]["bytes"] == N_BUFFERS * (SIZE + 1)
    # make_buffers is the function that allocated most, and its file the file.
    top = rep.by_function()[0]
    assert top["function"] == "make_buffers" and top["line"] == MAKE_BUFFERS
    assert top["bytes"] >= N_BUFFERS * (SIZE + 1) and top["count"] >= N_BUFFERS
    assert rep.by_file()[0]["file"].endswith("bpftrace_workload.py")
    # Start-up allocations with no Python frame are reported, not dropped.
    assert any(r["function"] == br.NO_FRAME and r["bytes"] > 0 for r in rep.by_function())


def test_report_sorted_by_bytes_and_totals_agree():
    rep = br.parse_file(str(FIX / "py_malloc_workload.txt"))
    for rows in (rep.by_function(), rep.by_file(), rep.by_line()):
        assert [r["bytes"] for r in rows] == sorted((r["bytes"] for r in rows), reverse=True)
        assert sum(r["bytes"] for r in rows) == rep.totals()[0]
        assert sum(r["count"] for r in rows) == rep.totals()[1]
    assert rep.totals()[0] == sum(s.bytes for s in rep.sites)


def test_report_cli_text_and_json():
    path = str(FIX / "py_malloc_workload.txt")
    r = _cli("bpftrace", "report", path)
    assert r.returncode == 0, r.stderr
    assert "By function" in r.stdout and "By file" in r.stdout
    first_row = r.stdout.split("By function")[1].splitlines()[2]
    assert "make_buffers" in first_row and f"{N_BUFFERS * (SIZE + 1):,d}" in first_row
    r = _cli("bpftrace", "report", path, "--json")
    assert r.returncode == 0, r.stderr
    data = json.loads(r.stdout)
    assert data["complete"] is True and data["script"] == "py_malloc"
    for row in data["by_function"]:
        assert set(row) == {"function", "file", "line", "bytes", "count"}
    assert data["by_function"][0]["function"] == "make_buffers"
    assert data["by_file"][0]["file"].endswith("bpftrace_workload.py")


def test_file_names_with_comma_space_parse():
    text = ("=== pymemtrace py_malloc begin ===\n"
            "@alloc[/tmp/a, b/c.py, f, 3, 4]: count 2, average 10, total 20\n"
            "@alloc[, , 0, 0]: count 1, average 5, total 5\n"
            "=== pymemtrace py_malloc end ===\n")
    rep = br.parse(text)
    assert rep.by_function()[0] == {"function": "f", "file": "/tmp/a, b/c.py", "line": 3,
                                    "bytes": 20, "count": 2}
    assert rep.by_function()[1]["function"] == br.NO_FRAME


# ---- truncated, empty, garbage ------------------------------------------------------------------

def test_truncated_inside_a_number_is_not_misread():
    text = (FIX / "py_malloc_workload.txt").read_text()
    line = next(ln for ln in text.splitlines() if "make_buffers" in ln)
    cut = text[:text.index(line) + len(line) - 3]     # "total 4938320" -> "total 4938"
    assert cut.endswith("total 4938")
    rep = br.parse(cut)
    assert not rep.complete
    assert any("truncated" in w for w in rep.warnings)
    assert any("incomplete" in w for w in rep.warnings)
    assert all(r["function"] != "make_buffers" for r in rep.by_function())


def test_truncated_after_a_whole_line_keeps_it(tmp_path):
    text = (FIX / "py_malloc_workload.txt").read_text()
    line = next(ln for ln in text.splitlines() if "make_buffers" in ln)
    p = tmp_path / "cut.txt"
    p.write_text(text[:text.index(line) + len(line) + 1])
    r = _cli("bpftrace", "report", str(p), "--json")
    assert r.returncode == 0, r.stderr
    data = json.loads(r.stdout)
    assert data["complete"] is False and data["warnings"]
    row = next(x for x in data["by_function"] if x["function"] == "make_buffers")
    assert row["bytes"] >= N_BUFFERS * (SIZE + 1)
    r = _cli("bpftrace", "report", str(p))
    assert r.returncode == 0 and "INCOMPLETE" in r.stdout and "warning" in r.stderr


def test_over_long_line_is_too_long_not_incomplete(tmp_path):
    """A line over textfile.MAX_LINE in the middle of an output is ignored
    as too long; the rest is read and nothing is called cut short."""
    from pymemtrace.readers.textfile import MAX_LINE
    text = (FIX / "py_malloc_workload.txt").read_text()
    whole = br.parse(text)
    at = text.index("\n@") + 1                        # before the first map line
    p = tmp_path / "long.txt"
    p.write_text(text[:at] + "@junk[" + "x" * (2 * MAX_LINE) + "\n" + text[at:])
    rep = br.parse_file(str(p))
    assert rep.complete is whole.complete
    assert any("1 line(s) longer than" in w for w in rep.warnings), rep.warnings
    assert not any("incomplete" in w for w in rep.warnings), rep.warnings
    assert rep.by_function() == whole.by_function()
    # an over-long last line without its newline is still too long, not misread
    p.write_text(text + "@junk[" + "y" * (MAX_LINE + 5))
    rep = br.parse_file(str(p))
    assert any("longer than" in w for w in rep.warnings), rep.warnings
    assert rep.by_function() == whole.by_function()


def test_flow_without_end_markers_counts_calls(tmp_path):
    text = (FIX / "py_flowinfo_workload.txt").read_text()
    head = text[:text.index("=== pymemtrace")]
    rep = br.parse(head)
    assert not rep.complete and rep.calls


@pytest.mark.parametrize("content,needle", [
    (b"", "empty"),
    (b"hello world\nthis is not bpftrace output\n", "no output of a pymemtrace bpftrace script"),
    (b"\x7fELF\x00\x00\x01binary", "not text"),
    (b"Attaching 9 probes...\n", "no output of a pymemtrace bpftrace script"),
])
def test_report_rejects_bad_files_cleanly(tmp_path, content, needle):
    p = tmp_path / "bad.txt"
    p.write_bytes(content)
    _assert_user_error(_cli("bpftrace", "report", str(p)), needle, str(p))
    _assert_user_error(_cli("bpftrace", "report", str(p), "--json"), needle)


def test_report_missing_file():
    _assert_user_error(_cli("bpftrace", "report", "/nonexistent/out.txt"),
                       "/nonexistent/out.txt", "No such file")


# ---- py_flowinfo: recorded output ---------------------------------------------------------------

def test_py_flowinfo_fixture_shows_nested_flow_with_indentation():
    text = (FIX / "py_flowinfo_workload.txt").read_text()
    lines = text.splitlines()
    assert lines[2].split() == ["PID", "TID", "DELTA(us)", "DEPTH", "TYPE", "--",
                                "FUNCTION", "(FILE:LINE)"]
    calls = [ln for ln in lines if "-> nested (" in ln or "-> leaf (" in ln]
    assert len(calls) == 5
    depths = [int(ln.split()[3]) for ln in calls]
    assert depths == list(range(depths[0], depths[0] + 5))
    indents = [len(ln.split(" call ")[1]) - len(ln.split(" call ")[1].lstrip()) for ln in calls]
    assert indents == sorted(indents) and len(set(indents)) == 5
    returns = [ln for ln in lines if "<- nested" in ln or "<- leaf" in ln]
    assert len(returns) == 5
    for ln in calls + returns:
        assert int(ln.split()[2]) >= 0          # delta in microseconds
    rep = br.parse(text)
    assert rep.script == "py_flowinfo" and rep.complete
    by_func = {(r["function"], r["line"]): r["count"] for r in rep.by_function()}
    assert by_func[("nested", NESTED)] == 4 and by_func[("leaf", LEAF)] == 1
    assert by_func[("make_buffers", MAKE_BUFFERS)] == 1


def test_killed_flow_recording_reports_calls_so_far():
    path = str(FIX / "py_flowinfo_killed.txt")
    rep = br.parse_file(path)
    assert rep.script == "py_flowinfo" and not rep.complete and rep.warnings
    counts = {(r["function"], r["line"]): r["count"] for r in rep.by_function()}
    assert counts[("make_buffers", MAKE_BUFFERS)] >= 2
    r = _cli("bpftrace", "report", path, "--json")
    assert r.returncode == 0 and json.loads(r.stdout)["complete"] is False


def test_killed_malloc_recording_says_why_there_is_nothing():
    # SIGKILL leaves bpftrace no chance to print its maps: say so plainly.
    line = _assert_user_error(_cli("bpftrace", "report", str(FIX / "py_malloc_killed.txt")),
                              "never printed", "SIGKILL")
    assert "py_malloc" in line


def test_report_on_flow_prints_calls():
    r = _cli("bpftrace", "report", str(FIX / "py_flowinfo_workload.txt"), "--limit", "0")
    assert r.returncode == 0, r.stderr
    assert "calls" in r.stdout and "nested" in r.stdout


# ---- py_flowinfo_rss, py_flow_malloc_free, py_object: recorded outputs ----------------------

def test_py_flowinfo_rss_fixture_columns_and_growth_attribution():
    text = (FIX / "py_flowinfo_rss_workload.txt").read_text()
    lines = text.splitlines()
    assert lines[2].split()[:6] == ["PID", "TID", "DELTA(us)", "DEPTH", "RSS", "dRSS"]
    calls = [ln for ln in lines if " call " in ln and "bpftrace_workload.py" in ln]
    assert calls
    for ln in calls:
        rss, drss = int(ln.split()[4]), int(ln.split()[5])
        assert rss > 1_000_000 and rss % 4096 == 0 and drss % 4096 == 0
    # Consecutive events agree: RSS(n) - RSS(n-1) == dRSS(n) within one process.
    events = [ln.split() for ln in lines if re.match(r"^\s*\d+\s+\d+\s+\d+\s+\d+\s+\d+\s+-?\d+\s+[a-z]", ln)]
    known = [e for e in events if int(e[4]) > 0]
    for prev, cur in zip(known, known[1:]):
        assert int(cur[4]) - int(prev[4]) == int(cur[5])
    rep = br.parse(text)
    assert rep.script == "py_flowinfo_rss" and rep.complete
    assert rep.primary()[0] == "rss"
    top = rep.by_function()[0]
    # 40 buffers of 123,458 bytes: RSS grew by at least 4.5 MiB inside make_buffers.
    assert (top["function"], top["line"]) == ("make_buffers", MAKE_BUFFERS)
    assert top["bytes"] >= N_BUFFERS * SIZE * 0.9


def test_py_flow_malloc_free_fixture_inline_and_aggregates():
    text = (FIX / "py_flow_malloc_free_workload.txt").read_text()
    lines = text.splitlines()
    start = next(i for i, ln in enumerate(lines) if "-> make_buffers (" in ln)
    end = next(i for i, ln in enumerate(lines) if "<- make_buffers" in ln)
    inside = lines[start + 1:end]
    mallocs = [ln for ln in inside if f" malloc " in ln and f" {SIZE + 1} -> 0x" in ln]
    assert len(mallocs) == N_BUFFERS
    addresses = {ln.rsplit("0x", 1)[1] for ln in mallocs}
    frees = [ln for ln in lines[end:] if f" {SIZE + 1} <- 0x" in ln and " free " in ln]
    assert {ln.rsplit("0x", 1)[1] for ln in frees} == addresses
    rep = br.parse(text)
    assert rep.complete and rep.maps() == ["alloc", "free"]
    row = next(r for r in rep.by_line() if r["function"] == "make_buffers"
               and r["line"] == BUFFER_LINE)
    assert row["count"] == N_BUFFERS and row["bytes"] == N_BUFFERS * (SIZE + 1)
    freed = rep.by_function("free")
    assert sum(r["bytes"] for r in freed if r["file"].endswith("bpftrace_workload.py")) \
        >= N_BUFFERS * (SIZE + 1)


def test_py_object_fixture_sees_float_objects():
    rep = br.parse_file(str(FIX / "py_object_workload.txt"))
    assert rep.script == "py_object" and rep.complete
    assert rep.primary()[0] == "object" and "object_free" in rep.maps()
    row = next(r for r in rep.by_line() if r["function"] == "make_floats"
               and r["line"] == FLOAT_LINE)
    # 1000 floats of 24 bytes, less the few the float free list had kept.
    assert 900 <= row["count"] <= 1000 and row["bytes"] == 24 * row["count"]
    data = rep.to_json()
    assert data["other_maps"]["object_free"]


# ---- run: the checks before bpftrace starts --------------------------------------------------------

def test_run_unknown_script():
    _assert_user_error(_cli("bpftrace", "run", "py_nope", "-p", "1"), "unknown script", "py_malloc")


def test_run_needs_a_target():
    _assert_user_error(_cli("bpftrace", "run", "py_malloc"), "-p PID", "--")
    _assert_user_error(_cli("bpftrace", "run", "py_malloc", "--"), "-p PID")


def test_run_rejects_both_targets():
    _assert_user_error(_cli("bpftrace", "run", "py_malloc", "-p", "1", "--", "/bin/true"),
                       "not both")


def test_run_bad_pid_values():
    _assert_user_error(_cli("bpftrace", "run", "py_malloc", "-p", "abc"), "abc")
    _assert_user_error(_cli("bpftrace", "run", "py_malloc", "-p", "0"), "process ID")


def test_run_bpftrace_missing():
    r = _cli("bpftrace", "run", "py_malloc", "--", "/usr/bin/python3.11", "-c", "pass",
             env={"PYMEMTRACE_BPFTRACE": "/nonexistent/bpftrace"})
    _assert_user_error(r, "bpftrace not found")
    r = _cli("bpftrace", "run", "py_malloc", "-p", "1", env={"PATH": "/nonexistent"})
    _assert_user_error(r, "bpftrace not found", "apt-get install bpftrace")


def test_run_not_root(monkeypatch, capsys):
    monkeypatch.setattr(cb, "find_bpftrace", lambda: "/usr/bin/bpftrace")
    monkeypatch.setattr(cb.os, "geteuid", lambda: 1000)
    monkeypatch.setattr(cb, "_effective_caps", lambda: 0)
    assert cli.main(["bpftrace", "run", "py_malloc", "-p", str(os.getpid())]) == 2
    err = capsys.readouterr().err
    assert "needs root" in err and "CAP_BPF" in err and err.count("\n") == 1


def test_run_capabilities_are_enough(monkeypatch):
    monkeypatch.setattr(cb.os, "geteuid", lambda: 1000)
    monkeypatch.setattr(cb, "_effective_caps", lambda: (1 << 38) | (1 << 39))
    cb.check_privileges()


def test_run_tracefs_missing_and_not_root(monkeypatch):
    monkeypatch.setattr(cb, "_tracefs_mounted", lambda: False)
    monkeypatch.setattr(cb.os, "geteuid", lambda: 1000)
    with pytest.raises(cb.BpftraceError, match="tracefs is not mounted.*mount -t tracefs"):
        cb.ensure_tracefs()


def test_run_mounts_tracefs_when_root(monkeypatch):
    mounted = []
    monkeypatch.setattr(cb, "_tracefs_mounted", lambda: bool(mounted))
    monkeypatch.setattr(cb.os, "geteuid", lambda: 0)
    monkeypatch.setattr(cb.os.path, "isdir", lambda p: True)

    def fake_run(argv, **kw):
        mounted.append(argv)
        return subprocess.CompletedProcess(argv, 0, "", "")
    monkeypatch.setattr(cb.subprocess, "run", fake_run)
    cb.ensure_tracefs()
    assert mounted == [["mount", "-t", "tracefs", "nodev", "/sys/kernel/tracing"]]


def test_run_says_when_mounting_tracefs_fails(monkeypatch):
    monkeypatch.setattr(cb, "_tracefs_mounted", lambda: False)
    monkeypatch.setattr(cb.os, "geteuid", lambda: 0)
    monkeypatch.setattr(cb.os.path, "isdir", lambda p: True)
    monkeypatch.setattr(cb.subprocess, "run", lambda argv, **kw: subprocess.CompletedProcess(
        argv, 32, "", "mount: permission denied\n"))
    with pytest.raises(cb.BpftraceError, match="mount -t tracefs .* failed: mount: permission denied"):
        cb.ensure_tracefs()


@pytest.fixture
def checks_pass(monkeypatch):
    """Pretend bpftrace, privileges and tracefs are fine, to reach the target checks."""
    monkeypatch.setattr(cb, "find_bpftrace", lambda: "/usr/bin/bpftrace")
    monkeypatch.setattr(cb, "check_privileges", lambda: None)
    monkeypatch.setattr(cb, "ensure_tracefs", lambda: None)


def test_run_pid_that_does_not_exist(checks_pass, capsys):
    pid = 2 ** 22 + 12345     # above pid_max's default ceiling
    assert cli.main(["bpftrace", "run", "py_malloc", "-p", str(pid)]) == 2
    err = capsys.readouterr().err
    assert f"no process with PID {pid}" in err


def test_run_pid_without_usdt_probes(checks_pass, capsys):
    # This test's own interpreter is the default python3, built without --with-dtrace.
    if cb.has_python_usdt(os.path.realpath(sys.executable)):
        pytest.skip("needs a test interpreter without USDT probes")
    assert cli.main(["bpftrace", "run", "py_malloc", "-p", str(os.getpid())]) == 2
    err = capsys.readouterr().err
    assert "no Python USDT probes" in err and "/usr/bin/python3.11" in err


def test_run_command_without_usdt_probes(checks_pass, capsys):
    if cb.has_python_usdt(os.path.realpath(sys.executable)):
        pytest.skip("needs a test interpreter without USDT probes")
    assert cli.main(["bpftrace", "run", "py_malloc", "--", sys.executable, "-c", "pass"]) == 2
    err = capsys.readouterr().err
    assert "no Python USDT probes" in err and "/usr/bin/python3.11" in err


def test_run_command_not_found(checks_pass, capsys):
    assert cli.main(["bpftrace", "run", "py_malloc", "--", "no-such-command-xyz"]) == 2
    assert "command not found: no-such-command-xyz" in capsys.readouterr().err


@pytest.mark.skipif(not cb.has_python_usdt("/usr/bin/python3.11"),
                    reason="needs /usr/bin/python3.11 with USDT probes")
def test_run_command_with_whitespace_argument(checks_pass, capsys):
    assert cli.main(["bpftrace", "run", "py_malloc", "--", "/usr/bin/python3.11", "-c",
                     "print(1)\nprint(2)"]) == 2
    assert "splits the command on spaces" in capsys.readouterr().err


@pytest.mark.skipif(not cb.has_python_usdt("/usr/bin/python3.11"),
                    reason="needs /usr/bin/python3.11 with USDT probes")
def test_run_script_with_shebang_runs_its_python(tmp_path):
    script = tmp_path / "s.py"
    script.write_text("#!/usr/bin/python3.11 -u\nprint(1)\n")
    script.chmod(0o755)
    argv, usdt = cb.target_command([str(script), "a"])
    assert argv == [os.path.realpath("/usr/bin/python3.11"), "-u", str(script), "a"]
    assert usdt == os.path.realpath("/usr/bin/python3.11")


def test_has_python_usdt_is_false_for_non_elf(tmp_path):
    p = tmp_path / "x"
    p.write_bytes(b"stapsdt\0python\0function__entry\0")
    assert not cb.has_python_usdt(str(p))
    assert not cb.has_python_usdt(str(tmp_path / "missing"))


# ---- the demo --------------------------------------------------------------------------------

def test_demo_falls_back_to_the_recorded_output(monkeypatch, capsys, tmp_path):
    import importlib.util
    spec = importlib.util.spec_from_file_location("demo_bpftrace",
                                                  HERE.parent / "examples" / "demo_bpftrace.py")
    demo = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(demo)
    monkeypatch.setattr(demo, "_why_not", lambda: "bpftrace needs root")
    monkeypatch.chdir(tmp_path)
    assert demo.main() == 0
    out = capsys.readouterr().out
    assert "Not tracing live: bpftrace needs root" in out
    assert "create_string is first: True (8,389,000 bytes in 8 calls)" in out
    for name in SCRIPTS:
        assert name in out


def test_wait_stops_bpftrace_when_the_traced_pid_is_gone():
    # If the process exits before the probes are attached, the script's own
    # exit probe never fires: run() must stop bpftrace (SIGINT) itself.
    dead = subprocess.Popen(["true"])
    dead.wait()
    stand_in = subprocess.Popen(["sleep", "300"])
    try:
        cb._wait(stand_in, dead.pid)
        assert stand_in.returncode == -2          # ended by SIGINT, not by timeout
    finally:
        if stand_in.poll() is None:
            stand_in.kill()
            stand_in.wait()


def test_py_object_needs_the_allocator_symbols(tmp_path):
    fake = tmp_path / "python"
    fake.write_bytes(b"\x7fELF stapsdt\0python\0function__entry\0 PyObject_Free\0")
    with pytest.raises(cb.BpftraceError, match="py_object needs PyObject_Calloc, PyObject_Malloc, "
                                            "PyObject_Realloc exported by"):
        cb._check_symbols("py_object", (cb.scripts_dir() / "py_object.bt").read_text(), str(fake))
    cb._check_symbols("py_malloc", (cb.scripts_dir() / "py_malloc.bt").read_text(), str(fake))


def test_maps_printed_by_bpftrace_itself_when_end_did_not_run():
    rep = br.parse_file(str(FIX / "py_flow_malloc_free_no_end.txt"))
    assert rep.complete and any("no end markers" in w for w in rep.warnings)
    assert rep.maps() == ["alloc", "free"]       # @depth, @indent, @size... are not sites
    row = next(r for r in rep.by_line() if r["function"] == "make_buffers"
               and r["line"] == BUFFER_LINE)
    assert row["count"] == 11 and row["bytes"] == 11 * (SIZE + 1)


def test_map_lines_outside_markers_are_ignored_when_markers_exist():
    text = ("=== pymemtrace py_malloc begin ===\n"
            "@alloc[/a.py, f, 1, 2]: count 1, average 10, total 10\n"
            "=== pymemtrace py_malloc end ===\n"
            "@alloc[/a.py, f, 1, 2]: count 1, average 10, total 10\n")
    assert br.parse(text).totals() == (10, 1)
