"""pymemtrace.process: log_process, add_message_to_queue and the C sampler."""
import json
import logging
import os
import pathlib
import re
import subprocess
import sys
import threading
import time

import psutil
import pytest

from pymemtrace import _process, process

EXAMPLES = pathlib.Path(__file__).resolve().parent.parent / "examples"
LINE_RE = re.compile(r"ProcessLoggingThread-JSON(-START|-STOP)? (\{.*\})$")
SEED_KEYS = {"timestamp", "memory_info", "cpu_times", "elapsed_time", "pid"}


class ListHandler(logging.Handler):
    def __init__(self):
        super().__init__(level=logging.DEBUG)
        self.records = []

    def emit(self, record):
        self.records.append(record)


@pytest.fixture
def captured():
    """Records that pymemtrace.process logs, in order."""
    log = logging.getLogger("pymemtrace.process")
    h = ListHandler()
    old_level = log.level
    log.addHandler(h)
    log.setLevel(logging.DEBUG)
    _process.clear_messages()
    try:
        yield h.records
    finally:
        log.removeHandler(h)
        log.setLevel(old_level)
        _process.clear_messages()


def parsed(records):
    out = []
    for r in records:
        m = LINE_RE.match(r.getMessage())
        if m:
            out.append(((m.group(1) or "").strip("-"), json.loads(m.group(2)), r))
    return out


def test_seed_example_runs_verbatim_with_the_seed_log_shape(tmp_path):
    # The seed's example, unchanged; only time.sleep is made 10x shorter so
    # the test takes ~2 s (the example's 0.5 s interval is kept).
    code = ("import time, runpy; _s = time.sleep; time.sleep = lambda x: _s(x / 10); "
            f"runpy.run_path({str(EXAMPLES / 'ex_process.py')!r}, run_name='__main__')")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                         timeout=120, cwd=tmp_path)
    assert out.returncode == 0, out.stderr
    lines = out.stderr.splitlines()
    assert "Demonstration of logging a process" in lines[0]
    recs = []
    for line in lines[1:]:
        # '%(asctime)s - %(filename)s#%(lineno)d - %(process)5d - (%(threadName)-10s) - %(levelname)-8s - %(message)s'
        m = re.match(r"\S+ \S+ - process\.py#\d+ - +(\d+) - \((.{10})\) - INFO     - "
                     r"ProcessLoggingThread-JSON(-START|-STOP)? (\{.*\})$", line)
        assert m, line
        recs.append((m.group(3), m.group(2).strip(), json.loads(m.group(4)), int(m.group(1))))
    assert recs[0][0] == "-START" and recs[0][1] == "ProcMon"
    assert recs[-1][0] == "-STOP" and recs[-1][1] == "MainThread"
    assert all(r[0] is None for r in recs[1:-1])
    assert len(recs) >= 4
    for kind, thread, data, pid in recs:
        assert SEED_KEYS <= set(data)
        assert data["pid"] == pid
        assert set(data["memory_info"]) >= {"rss", "vms", "pfaults", "pageins"}
        assert set(data["cpu_times"]) == {"user", "system", "children_user", "children_system"}
    labels = [r[2]["label"] for r in recs if "label" in r[2]]
    assert labels and all(re.fullmatch(r"String of [\d,]+ bytes", x) for x in labels)
    assert "label" not in recs[0][2]
    # the strings are 128..384 MiB: some sample sees RSS above 100 MiB
    assert max(r[2]["memory_info"]["rss"] for r in recs) > 100 * 2**20


def test_records_are_dated_when_sampled_and_in_order(captured):
    with process.log_process(interval=0.005) as lp:
        time.sleep(0.3)
    # the main thread slept: the delivery thread logged the batches
    assert lp.stats["batches_thread"] >= 1
    recs = parsed(captured)
    assert recs[0][0] == "START" and recs[-1][0] == "STOP"
    assert len(recs) >= 10
    times = [r.created for _, _, r in recs]
    assert times == sorted(times)
    for _, data, r in recs:
        ts = time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(int(r.created)))
        assert data["timestamp"].startswith(ts)
        frac = int(data["timestamp"][-6:])
        assert abs(frac / 1e6 - (r.created % 1)) < 2e-6 or abs(frac / 1e6 - (r.created % 1)) > 0.99
        assert r.msecs == pytest.approx(int((r.created % 1) * 1000), abs=1)
    # samples are handed over in batches, after they were taken
    assert any(r.thread != threading.get_ident() for _, _, r in recs[:-1])
    assert {r.threadName for _, _, r in recs[:-1]} == {"ProcMon"}


def test_values_agree_with_the_kernel(captured):
    block = bytearray(48 * 2**20)
    block[::4096] = b"x" * len(block[::4096])
    me = psutil.Process()
    with process.log_process(interval=10.0, status=True, smaps=True):
        pass
    ps_mem = me.memory_info()
    ps_cpu = me.cpu_times()
    recs = parsed(captured)
    kind, data, _ = recs[-1]
    assert kind == "STOP"
    mi = data["memory_info"]
    assert abs(mi["rss"] - ps_mem.rss) < 4 * 2**20
    assert abs(mi["vms"] - ps_mem.vms) < 16 * 2**20
    assert mi["rss"] > 48 * 2**20
    assert mi["shared"] == pytest.approx(ps_mem.shared, abs=4 * 2**20)
    assert mi["pss"] > 0 and 0 < mi["uss"] <= mi["rss"]
    assert mi["rss_peak"] >= mi["rss"] - 2**20 and mi["swap"] >= 0
    # Linux: pfaults = minor + major, pageins = major
    with open(f"/proc/{os.getpid()}/stat") as f:
        fields = f.read().rsplit(")", 1)[1].split()
    minflt, majflt = int(fields[7]), int(fields[9])
    assert mi["pageins"] <= majflt and mi["pfaults"] <= minflt + majflt
    assert mi["pfaults"] >= 48 * 256 // 2
    assert data["cpu_times"]["user"] == pytest.approx(ps_cpu.user, abs=0.05)
    assert data["cpu_times"]["system"] == pytest.approx(ps_cpu.system, abs=0.05)
    # psutil dates the start from /proc/stat's btime, whole seconds; ours
    # from CLOCK_BOOTTIME, as the kernel counts starttime
    started = int(fields[19]) / os.sysconf("SC_CLK_TCK")
    assert data["elapsed_time"] == pytest.approx(
        time.clock_gettime(time.CLOCK_BOOTTIME) - started, abs=0.1)
    assert data["elapsed_time"] == pytest.approx(time.time() - me.create_time(), abs=1.1)
    assert data["pid"] == os.getpid()
    del block


def test_labels_go_to_the_next_samples_in_order(captured):
    with process.log_process(interval=0.02):
        for i in range(3):
            process.add_message_to_queue(f"label {i} \"quoted\"\n")
            time.sleep(0.1)
    recs = parsed(captured)
    labels = [d.get("label") for _, d, _ in recs if "label" in d]
    assert labels == [f"label {i} \"quoted\"\n" for i in range(3)]
    assert "label" not in recs[0][1]


def test_label_queued_before_the_end_is_not_lost(captured):
    with process.log_process(interval=60):
        process.add_message_to_queue("last words")
    recs = parsed(captured)
    assert recs[-1][0] == "STOP" and recs[-1][1]["label"] == "last words"


def test_add_message_rejects_non_str():
    with pytest.raises(TypeError, match="message must be str"):
        process.add_message_to_queue(42)


def test_decorator_runs_a_fresh_sampler_each_call(captured):
    @process.log_process(interval=0.01)
    def work(n):
        time.sleep(0.05)
        return n * 2

    assert work(3) == 6
    assert work(4) == 8
    kinds = [k for k, _, _ in parsed(captured)]
    assert kinds.count("START") == 2 and kinds.count("STOP") == 2
    assert kinds[0] == "START" and kinds[-1] == "STOP"


def test_log_level_and_logger(captured):
    log = logging.getLogger("pymemtrace.test.custom")
    h = ListHandler()
    log.addHandler(h)
    log.setLevel(logging.INFO)
    try:
        with process.log_process(interval=0.01, log_level=logging.DEBUG, logger=log):
            time.sleep(0.05)
        assert h.records == []          # DEBUG is below the logger's level
        with process.log_process(interval=0.01, log_level=logging.WARNING, logger=log):
            time.sleep(0.05)
        assert h.records and {r.levelno for r in h.records} == {logging.WARNING}
    finally:
        log.removeHandler(h)


@pytest.mark.parametrize("interval, exc, text", [
    (0, ValueError, "interval must be > 0"),
    (-1, ValueError, "interval must be > 0"),
    (float("nan"), ValueError, "interval must be > 0"),
    (float("inf"), ValueError, "interval must be > 0"),
    (1e-6, ValueError, "interval must be at least"),
    (86400 * 2, ValueError, "at most 86400 seconds"),
    ("1", TypeError, "interval must be a number"),
    (True, TypeError, "interval must be a number"),
])
def test_bad_interval(interval, exc, text):
    with pytest.raises(exc, match=text):
        process.log_process(interval=interval)


def test_bad_pid_and_level():
    with pytest.raises(TypeError, match="pid must be an int"):
        process.log_process(pid="1")
    with pytest.raises(ValueError, match="pid must be a process id"):
        process.log_process(pid=-7)
    with pytest.raises(TypeError, match="log_level"):
        process.log_process(log_level="INFO")


def test_nonexistent_pid():
    p = subprocess.Popen([sys.executable, "-c", "pass"])
    p.wait()
    with pytest.raises(ValueError, match=f"pid {p.pid}: no such process"):
        with process.log_process(pid=p.pid):
            pass


def test_other_process_exiting_mid_run(captured):
    p = subprocess.Popen([sys.executable, "-c", "import sys; x = bytearray(30 * 2**20); sys.stdin.read()"],
                         stdin=subprocess.PIPE)
    try:
        with process.log_process(interval=0.02, pid=p.pid) as lp:
            while lp._sampler.stats()["samples"] < 5:
                time.sleep(0.02)
            p.stdin.close()
            p.wait()
            time.sleep(0.1)
    finally:
        p.kill()
        p.wait()
    recs = parsed(captured)
    assert recs[0][0] == "START"
    samples = [d for k, d, _ in recs if k != "STOP"]
    assert len(samples) >= 3 and all(d["pid"] == p.pid for d in samples)
    assert recs[-1][0] == "STOP" and recs[-1][1] == {**recs[-1][1], "error": "process exited", "pid": p.pid}
    assert any("process %d exited" % p.pid == r.getMessage().split(": ", 1)[-1] for r in captured)
    assert lp.stats["errno"] != 0


def test_output_file_mode_writes_json_lines(tmp_path):
    out = tmp_path / "p.jsonl"
    with process.log_process(interval=0.01, output=out):
        process.add_message_to_queue("in the file")
        time.sleep(0.1)
    lines = out.read_text().splitlines()
    data = [json.loads(x) for x in lines]
    assert data[0]["event"] == "start" and data[-1]["event"] == "stop"
    assert all("event" not in d for d in data[1:-1])
    assert len(data) >= 5
    assert all(SEED_KEYS <= set(d) for d in data)
    assert [d["label"] for d in data if "label" in d] == ["in the file"]


def test_output_unwritable(tmp_path):
    with pytest.raises(OSError):
        with process.log_process(output=tmp_path / "no" / "such" / "dir.jsonl"):
            pass
    # a symlink is never followed
    (tmp_path / "target").write_text("keep")
    os.symlink(tmp_path / "target", tmp_path / "link")
    with pytest.raises(OSError):
        with process.log_process(output=tmp_path / "link"):
            pass
    assert (tmp_path / "target").read_text() == "keep"


def test_reentry_is_refused_and_stop_is_idempotent(captured):
    lp = process.log_process(interval=0.05)
    with lp:
        with pytest.raises(RuntimeError, match="already running"):
            lp.__enter__()
    lp.stop()
    with lp:                            # it can run again after it stopped
        pass
    assert [k for k, _, _ in parsed(captured)].count("STOP") == 2


def test_nested_contexts(captured):
    with process.log_process(interval=0.01):
        with process.log_process(interval=0.02):
            time.sleep(0.06)
    kinds = [k for k, _, _ in parsed(captured)]
    assert kinds.count("START") == 2 and kinds.count("STOP") == 2


def test_a_busy_main_thread_does_not_stall_sampling(captured):
    # The sampler keeps its schedule while Python holds the GIL; records
    # arrive later, in batches, still one per sample.
    # Busy until 50 records were logged (by this thread's pending calls) or
    # 20 s: a machine under load wakes the sampler late, never on a clock.
    with process.log_process(interval=0.002) as lp:
        t0 = time.perf_counter()
        x = 0
        while len(captured) < 50 and time.perf_counter() - t0 < 20:
            x += 1
    n = len(parsed(captured))
    assert lp.stats["samples"] >= 50
    assert n == lp.stats["samples"] + 1       # + STOP
    assert lp.stats["dropped"] == 0
    # the busy main thread logged the batches itself (pending calls)
    assert lp.stats["batches_main"] >= 1


@pytest.mark.filterwarnings("ignore::pytest.PytestUnraisableExceptionWarning")
def test_handler_errors_do_not_stop_sampling(captured):
    # An exception from a handler on the delivery thread is reported as
    # unraisable and sampling goes on; the STOP record is logged from the
    # caller's thread, where it propagates like any logging call's.
    class Bad(logging.Handler):
        def emit(self, record):
            raise RuntimeError("broken handler")
    log = logging.getLogger("pymemtrace.test.bad")
    log.propagate = False
    log.addHandler(Bad())
    log.setLevel(logging.INFO)
    logging.raiseExceptions, old = True, logging.raiseExceptions
    lp = process.log_process(interval=0.01, logger=log)
    try:
        with pytest.raises(RuntimeError, match="broken handler"):
            with lp:
                time.sleep(0.1)
    finally:
        logging.raiseExceptions = old
    assert lp.stats["samples"] >= 5 and lp.stats["callback_error"] == 1


def test_fork_child_leaves_the_parents_sampler_alone(captured, tmp_path):
    out = tmp_path / "f.jsonl"
    with process.log_process(interval=0.01, output=out):
        pid = os.fork()
        if pid == 0:
            code = 0
            try:
                # The context's __exit__ runs in the child too: it must
                # neither hang nor write into the parent's file.
                pass
            finally:
                os._exit(code)
        _, status = os.waitpid(pid, 0)
        assert os.waitstatus_to_exitcode(status) == 0
        time.sleep(0.05)
    data = [json.loads(x) for x in out.read_text().splitlines()]
    assert {d["pid"] for d in data} == {os.getpid()}


def test_exit_in_a_forked_child_running_the_context(tmp_path):
    code = f"""
import os, sys, time
from pymemtrace import process
lp = process.log_process(interval=0.01, output={str(tmp_path / 'c.jsonl')!r})
lp.__enter__()
pid = os.fork()
if pid == 0:
    lp.stop()      # must not hang: the threads are the parent's
    os._exit(0)
os.waitpid(pid, 0)
time.sleep(0.05)
lp.stop()
print("ok")
"""
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)
    assert out.stdout.strip() == "ok", out.stderr
    lines = (tmp_path / "c.jsonl").read_text().splitlines()
    assert json.loads(lines[-1])["event"] == "stop"
    assert sum(1 for x in lines if '"stop"' in x) == 1


def test_running_sampler_is_stopped_at_interpreter_exit(tmp_path):
    code = f"""
import logging, time
from pymemtrace import process
logging.basicConfig(level=logging.INFO)
process.log_process(interval=0.005).__enter__()
process.log_process(interval=0.005, output={str(tmp_path / 'x.jsonl')!r}).__enter__()
time.sleep(0.1)
"""
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)
    assert out.returncode == 0, out.stderr
    assert "ProcessLoggingThread-JSON-STOP" in out.stderr
    lines = (tmp_path / "x.jsonl").read_text().splitlines()
    assert json.loads(lines[-1])["event"] == "stop"


def test_smaps_of_another_users_process_is_refused():
    if os.geteuid() != 0:
        pytest.skip("needs root (to run a probe as user nobody against a root process)")
    code = f"""
import os, sys
from pymemtrace import process   # before dropping privileges: the stdlib may be unreadable to nobody
os.setgid(65534); os.setuid(65534)
try:
    process.log_process(pid={os.getpid()}, smaps=True).__enter__()
except PermissionError as e:
    print("refused:", e)
    sys.exit(0)
print("not refused")
"""
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)
    assert out.returncode == 0, out.stderr
    assert out.stdout.startswith("refused:") and f"pid {os.getpid()}" in out.stdout


def test_a_custom_record_factory_is_honoured(captured):
    old = logging.getLogRecordFactory()

    def factory(*args, **kwargs):
        rec = old(*args, **kwargs)
        rec.custom = "yes"
        return rec

    logging.setLogRecordFactory(factory)
    try:
        with process.log_process(interval=0.01):
            time.sleep(0.05)
    finally:
        logging.setLogRecordFactory(old)
    recs = parsed(captured)
    assert len(recs) >= 3
    assert all(getattr(r, "custom", None) == "yes" for _, _, r in recs)
    assert all(r.created == pytest.approx(time.mktime(time.strptime(d["timestamp"][:19], "%Y-%m-%d %H:%M:%S"))
                                          + int(d["timestamp"][20:]) / 1e6, abs=1e-5) for _, d, r in recs)


def test_records_carry_the_standard_attributes(captured):
    with process.log_process(interval=0.01, log_level=logging.WARNING):
        time.sleep(0.05)
    recs = parsed(captured)
    fmt = logging.Formatter("%(asctime)s %(filename)s#%(lineno)d %(process)d (%(threadName)s) "
                            "%(levelname)s %(name)s %(funcName)s %(message)s")
    for _, _, r in recs:
        line = fmt.format(r)
        assert f" process.py#" in line and f" {os.getpid()} " in line and " WARNING pymemtrace.process " in line
        assert r.levelno == logging.WARNING and r.args is None and r.exc_info is None


def test_forked_child_leaving_the_context_logs_nothing():
    code = """
import logging, os, sys, time
from pymemtrace import process
logging.basicConfig(level=logging.INFO, format="%(process)d %(message)s")
with process.log_process(interval=0.01):
    pid = os.fork()
    if pid == 0:
        sys.exit(0)         # runs the with block's exit in the child
    os.waitpid(pid, 0)
    time.sleep(0.03)
"""
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)
    assert out.returncode == 0, out.stderr
    stops = [x for x in out.stderr.splitlines() if "ProcessLoggingThread-JSON-STOP" in x]
    assert len(stops) == 1
    parent_pid = int(stops[0].split()[0])
    assert all(int(x.split()[0]) == parent_pid for x in out.stderr.splitlines() if "ProcessLogging" in x)


def test_children_sums_the_descendants(captured):
    child = subprocess.Popen([sys.executable, "-c",
                              "import time; x = bytearray(40 * 2**20); x[::4096] = b'y' * len(x[::4096]); "
                              "print('ready', flush=True); time.sleep(30)"], stdout=subprocess.PIPE, text=True)
    try:
        assert child.stdout.readline().strip() == "ready"
        with process.log_process(interval=0.02, children=True):
            time.sleep(0.1)
    finally:
        child.kill()
        child.wait()
    recs = parsed(captured)
    assert all(d["nprocs"] == 2 for _, d, _ in recs)
    me = psutil.Process().memory_info().rss
    assert recs[-1][1]["memory_info"]["rss"] > me + 30 * 2**20


def test_slow_sampling_never_logs_from_the_main_thread(captured):
    # one sample per batch: the delivery thread logs it, so a slow handler's
    # I/O never runs inside the main thread's code
    with process.log_process(interval=0.12) as lp:
        t0 = time.perf_counter()
        while time.perf_counter() - t0 < 0.5:
            pass
    assert lp.stats["batches_main"] == 0 and lp.stats["batches_thread"] >= 2
    assert len(parsed(captured)) == lp.stats["samples"] + 1


@pytest.mark.parametrize("interval", [0.005, 0.2])     # main thread / delivery thread
def test_stop_from_inside_a_handler_is_refused_not_deadlocked(interval):
    log = logging.getLogger(f"pymemtrace.test.stopper{interval}")
    log.propagate = False
    log.setLevel(logging.INFO)
    lp = process.log_process(interval=interval, logger=log)
    errors = []

    class Stopper(logging.Handler):
        def emit(self, record):
            if "JSON-STOP" in record.getMessage():
                return
            try:
                lp.stop()
            except RuntimeError as err:
                errors.append(str(err))

    log.addHandler(Stopper())
    with lp:
        t0 = time.perf_counter()
        while time.perf_counter() - t0 < 0.5 and not errors:
            pass
    assert errors and "from inside the logging of its own records" in errors[0]
    assert lp.stats["samples"] >= 1
