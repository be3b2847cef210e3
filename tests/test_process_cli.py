"""`pymemtrace process`: monitoring a pid or a command, table and plot, bad input."""
import json
import os
import pathlib
import shutil
import signal
import subprocess
import sys
import time

import pytest

from pymemtrace.readers import process_log
from pymemtrace.reporters import process as process_reporter

PMT = [sys.executable, "-m", "pymemtrace", "process"]
HERE = pathlib.Path(__file__).resolve().parent


def run(args, timeout=60, **kw):
    return subprocess.run(PMT + args, capture_output=True, text=True, timeout=timeout, **kw)


def jsonl(path):
    return [json.loads(x) for x in pathlib.Path(path).read_text().splitlines()]


def assert_user_error(r, text):
    assert r.returncode == 2, (r.stdout, r.stderr)
    assert "Traceback" not in r.stderr
    assert text in r.stderr
    assert len(r.stderr.strip().splitlines()) == 1, r.stderr


def test_command_is_monitored_and_its_exit_code_returned(tmp_path):
    out = tmp_path / "c.jsonl"
    code = "import time, sys; x = bytearray(40 * 2**20); x[::4096] = b'y' * len(x[::4096]); time.sleep(0.4); sys.exit(3)"
    r = run(["-i", "0.02", "-o", str(out), "--", sys.executable, "-c", code])
    assert r.returncode == 3, r.stderr
    data = jsonl(out)
    assert data[0]["event"] == "start" and data[-1]["event"] == "stop"
    assert data[-1]["exit_code"] == 3 and data[-1]["reason"] == "process exited"
    samples = [d for d in data if "memory_info" in d]
    assert len(samples) >= 10
    assert len({d["pid"] for d in data}) == 1 and data[0]["pid"] != os.getpid()
    assert max(d["memory_info"]["rss"] for d in samples) > 40 * 2**20
    assert "samples of pid" in r.stderr and str(out) in r.stderr


def test_command_killed_by_a_signal(tmp_path):
    r = run(["-i", "0.05", "-o", str(tmp_path / "k.jsonl"), "--", sys.executable, "-c",
             "import os, signal; os.kill(os.getpid(), signal.SIGTERM)"])
    assert r.returncode == 128 + signal.SIGTERM


def test_command_not_found(tmp_path):
    r = run(["-o", str(tmp_path / "n.jsonl"), "--", "no-such-command-pymemtrace"])
    assert r.returncode == 127
    assert "command not found: no-such-command-pymemtrace" in r.stderr and "Traceback" not in r.stderr



def test_command_not_executable(tmp_path):
    plain = tmp_path / "not-executable"
    plain.write_text("echo hi\n")
    plain.chmod(0o644)
    r = run(["-o", str(tmp_path / "x.jsonl"), "--", str(plain)])
    assert r.returncode == 126
    assert f"cannot execute: {plain}" in r.stderr and "Traceback" not in r.stderr

def test_children_are_summed(tmp_path):
    out = tmp_path / "tree.jsonl"
    child = "import time; x = bytearray(60 * 2**20); x[::4096] = b'y' * len(x[::4096]); time.sleep(0.6)"
    parent = (f"import subprocess, sys; p = subprocess.Popen([sys.executable, '-c', {child!r}]); "
              "sys.exit(p.wait())")
    r = run(["--children", "-i", "0.02", "-o", str(out), "--", sys.executable, "-c", parent])
    assert r.returncode == 0, r.stderr
    samples = [d for d in jsonl(out) if "memory_info" in d]
    assert max(d["nprocs"] for d in samples) == 2
    both = [d for d in samples if d["nprocs"] == 2]
    assert max(d["memory_info"]["rss"] for d in both) > 60 * 2**20
    # without --children only the parent is counted
    out2 = tmp_path / "one.jsonl"
    r = run(["-i", "0.02", "-o", str(out2), "--", sys.executable, "-c", parent])
    samples = [d for d in jsonl(out2) if "memory_info" in d]
    assert "nprocs" not in samples[0]
    assert max(d["memory_info"]["rss"] for d in samples) < 60 * 2**20


def monitored_until_stdin_closes(args, out_lines):
    """Run the monitor on a target that lives until its stdin is closed,
    which happens once out_lines(monitor) >= 5 (lines written so far)."""
    target = subprocess.Popen([sys.executable, "-c", "import sys; sys.stdin.read()"],
                              stdin=subprocess.PIPE)
    try:
        mon = subprocess.Popen(PMT + ["--pid", str(target.pid)] + args,
                               stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        deadline = time.monotonic() + 30
        while out_lines(mon) < 5 and time.monotonic() < deadline and mon.poll() is None:
            time.sleep(0.02)
        target.stdin.close()
        target.wait()
        stdout, stderr = mon.communicate(timeout=30)
    finally:
        target.kill()
        target.wait()
    return subprocess.CompletedProcess(mon.args, mon.returncode, stdout, stderr), target.pid


def count_lines(path):
    try:
        return len(pathlib.Path(path).read_text().splitlines())
    except OSError:
        return 0


def test_pid_until_it_exits(tmp_path):
    out = tmp_path / "p.jsonl"
    # -i 0.02 with a 0.1 s flush: lines appear in the file as the run goes
    r, pid = monitored_until_stdin_closes(["-i", "0.02", "-o", str(out)], lambda mon: count_lines(out))
    assert r.returncode == 0, r.stderr
    data = jsonl(out)
    assert data[0]["event"] == "start"
    assert data[-1] == {**data[-1], "event": "stop", "reason": "process exited", "pid": pid}
    assert len(data) >= 5
    assert "process exited" in r.stderr


def test_ctrl_c_stops_cleanly_with_the_log_complete(tmp_path):
    target = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)"])
    out = tmp_path / "i.jsonl"
    try:
        mon = subprocess.Popen(PMT + ["--pid", str(target.pid), "-i", "0.01", "-o", str(out)],
                               stderr=subprocess.PIPE, text=True)
        deadline = time.monotonic() + 30
        while count_lines(out) < 20 and time.monotonic() < deadline:
            time.sleep(0.02)
        mon.send_signal(signal.SIGINT)
        _, err = mon.communicate(timeout=30)
    finally:
        target.kill()
        target.wait()
    assert mon.returncode == 0, err
    assert "Traceback" not in err and "interrupted" in err
    data = jsonl(out)           # every line complete JSON
    assert data[0]["event"] == "start" and data[-1]["event"] == "stop"
    assert "memory_info" in data[-1]          # the process was still alive
    assert len(data) >= 20


def test_ctrl_c_in_command_mode_waits_for_the_command(tmp_path):
    out = tmp_path / "cmd.jsonl"
    code = ("import signal, sys, time\n"
            "signal.signal(signal.SIGINT, lambda *a: sys.exit(7))\n"
            "print('ready', flush=True)\n"
            "time.sleep(30)\n")
    mon = subprocess.Popen(PMT + ["-i", "0.01", "-o", str(out), "--", sys.executable, "-c", code],
                           stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                           start_new_session=True)
    assert mon.stdout.readline().strip() == "ready"
    deadline = time.monotonic() + 30
    while count_lines(out) < 3 and time.monotonic() < deadline:     # the monitor is sampling
        time.sleep(0.02)
    os.killpg(mon.pid, signal.SIGINT)       # as a terminal's Ctrl-C does
    _, err = mon.communicate(timeout=30)
    assert mon.returncode == 7, err
    data = jsonl(out)
    assert data[-1]["event"] == "stop" and data[-1]["exit_code"] == 7


def test_stdout_output(tmp_path):
    first = []

    def read_some(mon):
        first.append(mon.stdout.readline())     # flushed every 0.1 s
        return len(first)

    r, _ = monitored_until_stdin_closes(["-i", "0.05", "-o", "-"], read_some)
    assert r.returncode == 0, r.stderr
    lines = [json.loads(x) for x in "".join(first).splitlines() + r.stdout.splitlines()]
    assert lines[0]["event"] == "start" and lines[-1]["event"] == "stop"


def test_default_output_name_never_overwrites(tmp_path):
    r = run(["-i", "0.05", "--", sys.executable, "-c", "pass"], cwd=tmp_path)
    assert r.returncode == 0, r.stderr
    made = list(tmp_path.glob("process_*.jsonl"))
    assert len(made) == 1 and os.path.basename(sys.executable) in made[0].name
    made[0].write_text("precious")
    # same second: the same name would be chosen, and refused
    name = made[0].name
    fake_now = name.rsplit("_", 2)
    r2 = run(["-i", "0.05", "--", sys.executable, "-c", "pass"], cwd=tmp_path)
    assert made[0].read_text() == "precious" or r2.returncode == 2
    assert fake_now


@pytest.mark.parametrize("interval, text", [
    ("0", "interval must be > 0"),
    ("-1", "interval must be > 0"),
    ("nan", "interval must be > 0"),
    ("1e9", "at most 86400 seconds"),
])
def test_bad_interval(interval, text, tmp_path):
    assert_user_error(run(["-i", interval, "-o", str(tmp_path / "x"), "--", "true"]), text)
    assert not (tmp_path / "x").exists() or (tmp_path / "x").stat().st_size == 0


def test_bad_pid():
    p = subprocess.Popen([sys.executable, "-c", "pass"])
    p.wait()
    assert_user_error(run(["--pid", str(p.pid), "-o", "-"]), f"no process with pid {p.pid}")
    assert_user_error(run(["--pid", "-3", "-o", "-"]), "--pid must be a positive process id")
    r = run(["--pid", "abc"])           # argparse's usage error
    assert r.returncode == 2 and "invalid int value" in r.stderr and "Traceback" not in r.stderr


def test_nothing_or_both():
    assert_user_error(run([]), "nothing to monitor")
    assert_user_error(run(["--pid", "1", "--", "true"]), "not both")


def test_unwritable_output_is_refused_before_the_command_runs(tmp_path):
    marker = tmp_path / "ran"
    r = run(["-o", str(tmp_path / "no" / "dir" / "x.jsonl"), "--", sys.executable, "-c",
             f"open({str(marker)!r}, 'w')"])
    assert_user_error(r, "cannot write")
    assert not marker.exists()


def test_output_write_error_mid_run(tmp_path):
    if not os.path.exists("/dev/full"):
        pytest.skip("needs /dev/full")
    r = run(["-i", "0.01", "-o", "/dev/full", "--", sys.executable, "-c", "import time; time.sleep(0.5); raise SystemExit(4)"])
    assert r.returncode == 4            # the command's code is still returned
    assert "writing /dev/full failed" in r.stderr and "Traceback" not in r.stderr


def test_permission_denied_as_another_user(tmp_path):
    if os.geteuid() != 0:
        pytest.skip("needs root (to run the command as user nobody against a root process)")
    # import everything first: nobody may not be able to read the stdlib
    code = ("import os, sys; from pymemtrace import commands as cli; import pymemtrace.commands.process; "
            "cli.build_parser(); os.setgid(65534); os.setuid(65534); "
            f"sys.exit(cli.main(['process', '--pid', '{os.getpid()}', '--smaps', '-o', '-']))")
    r = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)
    assert_user_error(r, f"permission denied reading /proc/{os.getpid()}")


# ---- table and plot -------------------------------------------------------

SEED_LOG = """\
2025-02-12 14:16:58,675 - ex_process.py#19 - 10193 - (MainThread) - INFO     - Demonstration of logging a process
2025-02-12 14:16:58,676 - process.py#289 - 10193 - (ProcMon   ) - INFO     - ProcessLoggingThread-JSON-START {"timestamp": "2025-02-12 14:16:58.676195", "memory_info": {"rss": 18067456, "vms": 34990526464, "pfaults": 6963, "pageins": 1369}, "cpu_times": {"user": 0.340946528, "system": 0.991057664, "children_user": 0.0, "children_system": 0.0}, "elapsed_time": 5.407800197601318, "pid": 10193}
2025-02-12 14:16:59,180 - process.py#293 - 10193 - (ProcMon   ) - INFO     - ProcessLoggingThread-JSON {"timestamp": "2025-02-12 14:16:59.180476", "memory_info": {"rss": 199512064, "vms": 35171934208, "pfaults": 51261, "pageins": 1374}, "cpu_times": {"user": 0.379827552, "system": 1.031979648, "children_user": 0.0, "children_system": 0.0}, "elapsed_time": 5.912204027175903, "pid": 10193, "label": "String of 181,403,648 bytes"}
some other application line
2025-02-12 14:16:59,682 - process.py#289 - 10193 - (ProcMon   ) - INFO     - ProcessLoggingThread-JSON {"timestamp": "2025-02-12 14:16:59.681947", "memory_info": {"rss": 18104320, "vms": 34990526464, "pfaults": 51262, "pageins": 1374}, "cpu_times": {"user": 0.380316928, "system": 1.047401792, "children_user": 0.0, "children_system": 0.0}, "elapsed_time": 6.413706064224243, "pid": 10193}
2025-02-12 14:17:12,763 - process.py#289 - 10193 - (MainThread) - INFO     - ProcessLoggingThread-JSON-STOP {"timestamp": "2025-02-12 14:17:12.762896", "memory_info": {"rss": 18116608, "vms": 34990526464, "pfaults": 508756, "pageins": 1374}, "cpu_times": {"user": 0.820827264, "system": 1.663195264, "children_user": 0.0, "children_system": 0.0}, "elapsed_time": 19.49466300010681, "pid": 10193}
"""


def test_reader_accepts_the_seeds_form():
    log = process_log.parse_lines(SEED_LOG.splitlines(True))
    assert [r.kind for r in log.records] == ["START", "SAMPLE", "SAMPLE", "STOP"]
    assert log.skipped == 2 and not log.truncated and not log.bad
    assert log.records[1].label == "String of 181,403,648 bytes"
    assert log.records[1].mem("rss") == 199512064
    assert log.records[3].time - log.records[0].time == pytest.approx(14.086701, abs=1e-6)


def test_reader_tolerates_garbage_and_a_truncated_last_line():
    lines = SEED_LOG.splitlines(True)
    text = "".join(lines[:3]) + "\x00\x01 garbage {not json\n" + '{"a": 1}\n' + lines[4][:120]
    log = process_log.parse_lines(text.splitlines(True))
    assert [r.kind for r in log.records] == ["START", "SAMPLE"]
    assert log.truncated
    assert log.skipped == 2         # an ordinary log line and the garbage
    assert log.bad == [(5, "no timestamp or pid")]


def test_table_of_a_seed_log(tmp_path):
    p = tmp_path / "seed.log"
    p.write_text(SEED_LOG)
    r = run(["table", str(p)])
    assert r.returncode == 0, r.stderr
    lines = r.stdout.splitlines()
    assert lines[0].split()[:4] == ["Event", "Time(s)", "Timestamp", "RSS"]
    assert lines[1].split()[0] == "START" and "18,067,456" in lines[1]
    assert "+181,444,608" in lines[2] and lines[2].endswith("String of 181,403,648 bytes")
    assert "4 samples over 14.087 s" in r.stdout
    assert "max 199,512,064 at 0.504 s" in r.stdout


def test_table_of_a_truncated_jsonl_log(tmp_path):
    out = tmp_path / "t.jsonl"
    r = run(["-i", "0.02", "-o", str(out), "--", sys.executable, "-c", "import time; time.sleep(0.2)"])
    text = out.read_text()
    out.write_text("garbage line\n" + text[: len(text) - 30])
    r = run(["table", str(out)])
    assert r.returncode == 0
    assert "last line of" in r.stderr and "truncated" in r.stderr
    assert "1 other lines skipped" in r.stdout and "the last line was truncated" in r.stdout


@pytest.mark.parametrize("content, text", [
    (None, "no such log file"),
    ("", "no process records"),
    ("hello\nworld\n", "no process records"),
])
def test_table_bad_logs(tmp_path, content, text):
    p = tmp_path / "bad.log"
    if content is not None:
        p.write_text(content)
    assert_user_error(run(["table", str(p)]), text)
    assert_user_error(run(["plot", str(p), "-o", str(tmp_path)]), text)


def test_plot_writes_gnuplot_files_and_pngs(tmp_path):
    p = tmp_path / "seed.log"
    p.write_text(SEED_LOG.replace("String of 181,403,648 bytes", "it's \\\"quoted\\\""))
    r = run(["plot", str(p), "-o", str(tmp_path / "plots")])
    assert r.returncode == 0, r.stderr
    d = tmp_path / "plots"
    dat = (d / "seed.dat").read_text().splitlines()
    assert dat[0].startswith("# pymemtrace process: time_s rss_mib")
    assert dat[1] == "# pid 10193" and len(dat) == 6
    assert float(dat[3].split()[1]) == pytest.approx(199512064 / 2**20, abs=1e-5)
    plt = (d / "seed.plt").read_text()
    # the label is a marker on the time axis, quoted for gnuplot
    assert "set arrow 1 from 0.504281, graph 0" in plt
    assert "set label 1 'it''s \"quoted\"' at 0.504281" in plt
    if shutil.which("gnuplot"):
        assert (d / "seed.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    try:
        import matplotlib  # noqa: F401
        assert (d / "seed.mpl.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    except ImportError:
        assert "matplotlib not installed" in r.stdout


def test_plot_unwritable_directory(tmp_path):
    p = tmp_path / "seed.log"
    p.write_text(SEED_LOG)
    (tmp_path / "file").write_text("")
    assert_user_error(run(["plot", str(p), "-o", str(tmp_path / "file")]), "not a directory")


def test_help_has_an_example():
    r = run(["--help"])
    assert r.returncode == 0 and "pymemtrace process --pid 1234" in r.stdout


def test_plot_and_table_of_several_processes(tmp_path):
    # two processes logging into one file (e.g. workers sharing a log)
    other = SEED_LOG.replace('"pid": 10193', '"pid": 20001').replace("14:1", "14:2")
    p = tmp_path / "two.log"
    p.write_text(SEED_LOG + other)
    r = run(["table", str(p)])
    assert r.returncode == 0 and "PID" in r.stdout.splitlines()[0]
    r = run(["plot", str(p), "-o", str(tmp_path)])
    assert r.returncode == 0, r.stderr
    dat = (tmp_path / "two.dat").read_text()
    assert "# pid 10193" in dat and "# pid 20001" in dat and "\n\n\n# pid 20001" in dat
    plt = (tmp_path / "two.plt").read_text()
    assert "index 0 using 1:2 with lines lw 2 title 'RSS pid 10193'" in plt
    assert "index 1 using 1:2 with lines lw 2 title 'RSS pid 20001'" in plt


def test_table_shows_process_counts_with_children(tmp_path):
    out = tmp_path / "tree.jsonl"
    r = run(["--children", "-i", "0.05", "-o", str(out), "--", sys.executable, "-c", "import time; time.sleep(0.2)"])
    assert r.returncode == 0
    r = run(["table", str(out)])
    assert r.stdout.splitlines()[0].split()[3] == "Procs"
