"""Peaks that fall between two samples: the STOP record and `process table`
give the kernel's peak RSS (VmHWM, or wait4's ru_maxrss for a command that
`pymemtrace process` launched) beside the highest RSS sampled."""
import json
import os
import pathlib
import signal
import subprocess
import sys
import time

from pymemtrace.readers import process_log
from pymemtrace.reporters import process as process_reporter

PMT = [sys.executable, "-m", "pymemtrace", "process"]
MIB = 2**20
# 160 MiB touched for a moment, well within one 5 s interval, then freed
PEAK = "b = b'x' * (160 << 20); del b"


# Under `make sanitize` ASan's allocator keeps a freed block in its quarantine
# (256 MiB by default), mapped and resident: the 160 MiB would stay in RSS and
# there would be no peak between samples.  The process that makes the peak runs
# without the quarantine (every other ASan check stays on; the monitor's is whole).
PEAK_ENV = dict(os.environ)
if os.environ.get("PYMEMTRACE_SANITIZE") == "1":
    PEAK_ENV["ASAN_OPTIONS"] = ":".join(filter(None, [os.environ.get("ASAN_OPTIONS"),
                                                      "quarantine_size_mb=0"]))


def jsonl(path):
    return [json.loads(x) for x in pathlib.Path(path).read_text().splitlines()]


def table_of(path):
    r = subprocess.run(PMT + ["table", str(path)], capture_output=True, text=True, timeout=60)
    assert r.returncode == 0, r.stderr
    return r.stdout


def test_command_peak_between_samples_is_wait4s(tmp_path):
    out = tmp_path / "cmd.jsonl"
    code = f"import time; time.sleep(0.3); {PEAK}; time.sleep(0.3)"
    r = subprocess.run(PMT + ["-i", "5", "-o", str(out), "--", sys.executable, "-c", code],
                       capture_output=True, text=True, timeout=60)
    assert r.returncode == 0, r.stderr
    stop = jsonl(out)[-1]
    assert stop["event"] == "stop" and stop["rss_peak_source"] == "wait4 ru_maxrss"
    assert stop["rss_peak_kernel"] >= 160 * MIB
    # the sampler saw only the start: the peak fell between samples
    assert stop["rss_max_sampled"] <= stop["rss_peak_kernel"] - 100 * MIB
    text = table_of(out)
    assert "Peak RSS: " in text and "from the kernel (wait4 ru_maxrss)" in text
    assert f"{stop['rss_peak_kernel']:,d}" in text


def test_pid_peak_between_samples_is_vmhwm(tmp_path):
    out = tmp_path / "pid.jsonl"
    target = subprocess.Popen([sys.executable, "-c",
                               f"import sys, time; {PEAK}; print('ready', flush=True); "
                               "sys.stdin.read()"],
                              stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True,
                              env=PEAK_ENV)
    try:
        assert target.stdout.readline().strip() == "ready"      # the peak is over
        mon = subprocess.Popen(PMT + ["--pid", str(target.pid), "-i", "5", "-o", str(out)],
                               stderr=subprocess.PIPE, text=True)
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline and (not out.exists() or not out.read_text()):
            time.sleep(0.02)
        mon.send_signal(signal.SIGINT)
        _, err = mon.communicate(timeout=30)
    finally:
        target.kill()
        target.wait()
    assert mon.returncode == 0, err
    stop = jsonl(out)[-1]
    assert stop["rss_peak_source"] == "VmHWM"
    assert stop["rss_peak_kernel"] >= 160 * MIB
    assert stop["rss_max_sampled"] == max(d["memory_info"]["rss"] for d in jsonl(out) if "memory_info" in d)
    assert stop["rss_max_sampled"] <= stop["rss_peak_kernel"] - 100 * MIB


def test_pid_that_exits_keeps_the_last_vmhwm_read(tmp_path):
    out = tmp_path / "gone.jsonl"
    target = subprocess.Popen([sys.executable, "-c", "import sys; sys.stdin.read()"],
                              stdin=subprocess.PIPE)
    try:
        mon = subprocess.Popen(PMT + ["--pid", str(target.pid), "-i", "0.05", "-o", str(out)],
                               stderr=subprocess.PIPE, text=True)
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline and (not out.exists() or out.read_text().count("\n") < 3):
            time.sleep(0.02)
        target.stdin.close()        # it exits
        _, err = mon.communicate(timeout=30)
    finally:
        target.kill()
        target.wait()
    r = subprocess.CompletedProcess(mon.args, mon.returncode, "", err)
    assert r.returncode == 0, r.stderr
    stop = jsonl(out)[-1]
    assert stop["reason"] == "process exited" and "memory_info" not in stop
    assert stop["rss_peak_source"] == "VmHWM at the last sample"
    assert stop["rss_peak_kernel"] >= stop["rss_max_sampled"] > 0


def test_in_process_peak_between_samples(tmp_path):
    out = tmp_path / "self.jsonl"
    code = ("from pymemtrace import process\n"
            f"with process.log_process(interval=5, output={str(out)!r}):\n"
            f"    {PEAK}\n")
    r = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60,
                       env=PEAK_ENV)
    assert r.returncode == 0, r.stderr
    data = jsonl(out)
    stop = data[-1]
    assert stop["event"] == "stop" and "memory_info" in stop
    assert stop["rss_peak_source"] == "VmHWM"
    assert stop["rss_peak_kernel"] >= 160 * MIB
    assert stop["rss_max_sampled"] <= stop["rss_peak_kernel"] - 100 * MIB
    log = process_log.read_log(str(out))
    assert log.records[-1].kind == "STOP"


def test_logging_mode_stop_record_has_the_peaks(caplog):
    import logging
    from pymemtrace import process
    with caplog.at_level(logging.INFO, logger="pymemtrace.process"):
        with process.log_process(interval=5):
            pass
    stops = [r.getMessage() for r in caplog.records if "JSON-STOP" in r.getMessage()]
    assert len(stops) == 1
    stop = json.loads(stops[0].split(" ", 1)[1])
    assert stop["rss_peak_source"] == "VmHWM"
    assert stop["rss_peak_kernel"] >= stop["rss_max_sampled"] >= stop["memory_info"]["rss"] > 0
