"""The original pymemtrace's process API over our C sampler: the context's
value, log_process_dec, ProcessLoggingThread, --log-process, the log readers
(extract_json & co.) and `python -m pymemtrace.process`."""
import argparse
import datetime
import io
import json
import logging
import math
import os
import shutil
import subprocess
import sys
import time

import pytest

from pymemtrace import process


def stops_and_labels(caplog):
    msgs = [r.getMessage() for r in caplog.records if "ProcessLoggingThread-JSON" in r.getMessage()]
    labels = [json.loads(m.split(" ", 1)[1]).get("label") for m in msgs]
    return msgs, [x for x in labels if x]


def test_context_value_has_add_message_to_queue(caplog):
    with caplog.at_level(logging.INFO, logger="pymemtrace.process"):
        with process.log_process(interval=0.05) as proc:
            proc.add_message_to_queue("from the value")
            time.sleep(0.3)
    msgs, labels = stops_and_labels(caplog)
    assert "from the value" in labels
    assert msgs[-1].startswith("ProcessLoggingThread-JSON-STOP")


# ---- log_process_dec -------------------------------------------------------------

def test_log_process_dec_logs_start_samples_stop_around_the_call(caplog):
    @process.log_process_dec(interval=0.05, log_level=logging.WARNING)
    def work(n):
        process.add_message_to_queue("inside")
        time.sleep(0.3)
        return n * 2

    with caplog.at_level(logging.INFO, logger="pymemtrace.process"):
        assert work(21) == 42
    msgs, labels = stops_and_labels(caplog)
    assert msgs[0].startswith("ProcessLoggingThread-JSON-START ")
    assert msgs[-1].startswith("ProcessLoggingThread-JSON-STOP ")
    assert len(msgs) >= 4 and "inside" in labels
    assert all(r.levelno == logging.WARNING for r in caplog.records if "JSON" in r.getMessage())
    assert work.__name__ == "work"
    # a second call logs a second START..STOP
    caplog.clear()
    with caplog.at_level(logging.INFO, logger="pymemtrace.process"):
        work(1)
    assert stops_and_labels(caplog)[0][0].startswith("ProcessLoggingThread-JSON-START")


def test_log_process_dec_without_arguments(caplog):
    @process.log_process_dec
    def f():
        return "done"

    with caplog.at_level(logging.INFO, logger="pymemtrace.process"):
        assert f() == "done"
    msgs, _ = stops_and_labels(caplog)
    assert msgs[0].startswith("ProcessLoggingThread-JSON-START") and "-STOP" in msgs[-1]


@pytest.mark.parametrize("kwargs, exc, words", [
    (dict(interval=0), ValueError, "interval"),
    (dict(interval="1"), TypeError, "interval"),
    (dict(log_level="INFO"), TypeError, "log_level"),
    (dict(pid=-5), ValueError, "pid"),
])
def test_log_process_dec_checks_its_arguments_when_decorating(kwargs, exc, words):
    with pytest.raises(exc, match=words):
        process.log_process_dec(**kwargs)


# ---- ProcessLoggingThread ----------------------------------------------------------

def test_process_logging_thread_start_join(caplog):
    with caplog.at_level(logging.INFO, logger="pymemtrace.process"):
        t = process.ProcessLoggingThread(interval=0.05)
        assert t.name == "ProcMon" and not t.is_alive()
        t.start()
        assert t.is_alive()
        t.add_message_to_queue("thread label")
        time.sleep(0.3)
        t.join()
        assert not t.is_alive()
        t.join()        # idempotent, nothing more logged
    msgs, labels = stops_and_labels(caplog)
    assert msgs[0].startswith("ProcessLoggingThread-JSON-START")
    assert msgs[-1].startswith("ProcessLoggingThread-JSON-STOP")
    assert sum("-STOP" in m for m in msgs) == 1
    assert "thread label" in labels
    assert json.loads(msgs[0].split(" ", 1)[1])["pid"] == os.getpid()


def test_process_logging_thread_bad_arguments():
    with pytest.raises(ValueError, match="interval"):
        process.ProcessLoggingThread(interval=-1)
    with pytest.raises(TypeError, match="target"):
        process.ProcessLoggingThread(target=print)


# ---- add_process_logger_to_argument_parser ----------------------------------------

def test_add_process_logger_to_argument_parser(capsys):
    p = argparse.ArgumentParser(prog="app")
    process.add_process_logger_to_argument_parser(p)
    assert p.parse_args([]).log_process == 0.0
    assert p.parse_args(["--log-process", "0.5"]).log_process == 0.5
    for bad, words in (("-1", "must be >= 0"), ("soon", "not a number"), ("nan", "must be >= 0")):
        with pytest.raises(SystemExit):
            p.parse_args(["--log-process", bad])
        assert words in capsys.readouterr().err
    with pytest.raises(TypeError, match="ArgumentParser"):
        process.add_process_logger_to_argument_parser("--log-process")


# ---- the log readers ------------------------------------------------------------------

def rec(t, rss, user, pfaults, pid=100, label=None, stamp="2026-01-02 03:04:05.000001"):
    d = {"timestamp": stamp, "memory_info": {"rss": rss, "vms": 2 * rss, "pfaults": pfaults, "pageins": 0},
         "cpu_times": {"user": user, "system": 0.0, "children_user": 0.0, "children_system": 0.0},
         "elapsed_time": t, "pid": pid}
    if label is not None:
        d["label"] = label
    return json.dumps(d)


LOG = "\n".join([
    "2026-01-02 03:04:05,000 - app.py#3 - INFO - starting",
    "2026-01-02 03:04:05,000 - process.py#1 - INFO - ProcessLoggingThread-JSON-START " + rec(1.0, 1000, 0.5, 100),
    "2026-01-02 03:04:06,000 - process.py#1 - INFO - ProcessLoggingThread-JSON " + rec(3.0, 5000, 1.5, 300, label="big"),
    "2026-01-02 03:04:06,000 - process.py#1 - INFO - ProcessLoggingThread-JSON " + rec(2.0, 700, 0.1, 10, pid=200),
    "2026-01-02 03:04:07,000 - process.py#1 - INFO - ProcessLoggingThread-JSON-STOP " + rec(4.0, 3000, 1.5, 300),
    "other lines are ignored",
]) + "\n"


@pytest.mark.parametrize("line, groups", [
    ("x - ProcessLoggingThread-JSON-START {\"a\": 1}", ("-START", '{"a": 1}')),
    ("x - ProcessLoggingThread-JSON {\"a\": 1}\n", (None, '{"a": 1}')),
    ("x - ProcessLoggingThread-JSON-STOP {\"a\": {\"b\": 2}}", ("-STOP", '{"a": {"b": 2}}')),
])
def test_re_log_line(line, groups):
    assert process.RE_LOG_LINE.match(line).groups() == groups


def test_re_log_line_ignores_other_lines():
    assert process.RE_LOG_LINE.match("2026 INFO - ProcessLoggingThread started") is None


def test_extract_json_reads_records_of_every_pid_in_order():
    recs = process.extract_json(io.StringIO(LOG))
    assert [r["pid"] for r in recs] == [100, 100, 200, 100]
    assert recs[0]["timestamp"] == datetime.datetime(2026, 1, 2, 3, 4, 5, 1)
    assert recs[1]["label"] == "big" and recs[1]["memory_info"]["rss"] == 5000
    assert process.extract_labels_from_json(recs) == [recs[1]]


def test_extract_json_reads_json_lines_too():
    text = rec(1.0, 1000, 0.5, 100) + "\n" + rec(2.0, 2000, 0.6, 110) + "\n"
    assert [r["memory_info"]["rss"] for r in process.extract_json(io.StringIO(text))] == [1000, 2000]


def test_extract_json_drops_a_truncated_last_record():
    cut = LOG.splitlines()[:4]
    cut[-1] = cut[-1][:-20]
    assert len(process.extract_json(io.StringIO("\n".join(cut)))) == 2


def test_extract_json_names_a_malformed_record():
    lines = LOG.splitlines()
    lines[2] = lines[2].replace('"rss": 5000', '"rss": 5000,,')
    with pytest.raises(ValueError, match="line 3: malformed process record"):
        process.extract_json(io.StringIO("\n".join(lines)))


def test_extract_json_refuses_what_is_not_a_process_log():
    with pytest.raises(ValueError, match="not a process log"):
        process.extract_json(io.StringIO("just\nsome log\n"))
    with pytest.raises(TypeError, match="text stream"):
        process.extract_json("/some/path.log")
    with pytest.raises(TypeError, match="text stream"):
        process.extract_json(io.BytesIO(LOG.encode()))


def test_extract_json_as_table_values():
    recs = process.extract_json(io.StringIO(LOG))
    table, t_min, t_max, rss_min, rss_max = process.extract_json_as_table(recs)
    assert sorted(table) == [100, 200]
    assert t_min == {100: 1.0, 200: 2.0} and t_max == {100: 4.0, 200: 2.0}
    assert rss_min == {100: 1000, 200: 700} and rss_max == {100: 5000, 200: 700}
    header, first, second, last = table[100]
    assert header[0].startswith("#t(s)") and header[-1] == "Label"
    # first row: rates since t=0; second: (300-100)/(3-1) faults/s, (1.5-0.5)/(3-1) CPU
    assert first[2].strip() == "100.0" and first[4].strip() == "50.0%"
    assert second[1].strip() == "5000" and second[2].strip() == "100.0"
    assert second[4].strip() == "50.0%" and second[5].strip() == "50.0%"
    assert second[-1] == "# big" and second[6].strip() == "2026-01-02T03:04:05.000001"
    assert last[5].strip() == "0.0%"
    assert len(table[200]) == 2


def test_extract_json_as_table_two_samples_at_the_same_time():
    recs = process.extract_json(io.StringIO(rec(1.0, 10, 0.1, 1) + "\n" + rec(1.0, 20, 0.2, 2) + "\n"))
    row = process.extract_json_as_table(recs)[0][100][2]
    assert row[2].strip() == "nan" and row[5].strip() == "nan%"


def test_extract_json_as_table_bad_input():
    with pytest.raises(TypeError, match="list of dicts"):
        process.extract_json_as_table("text")
    with pytest.raises(TypeError, match="record 0"):
        process.extract_json_as_table(["text"])
    with pytest.raises(ValueError, match="record 0 has no 'cpu_times'"):
        process.extract_json_as_table([{"pid": 1, "memory_info": {"rss": 1}, "elapsed_time": 1.0}])


def test_write_log_to_stdout(tmp_path, capsys):
    path = tmp_path / "app.log"
    path.write_text(LOG)
    process.write_log_to_stdout(str(path))
    out = capsys.readouterr().out.splitlines()
    assert out[0].strip("-") == " PID: 100 " and out[-1].strip("-") == " PID: 200 DONE "
    assert sum(line.endswith("# big") for line in out) == 1
    assert len(out) == (2 + 4) + (2 + 2)


def test_log_readers_refuse_bad_paths(tmp_path):
    with pytest.raises(FileNotFoundError, match="no such process log"):
        process.write_log_to_stdout(str(tmp_path / "missing.log"))
    with pytest.raises(ValueError, match="not a regular file"):
        process.write_log_to_stdout(str(tmp_path))
    notlog = tmp_path / "notes.txt"
    notlog.write_text("hello\n")
    with pytest.raises(ValueError, match="notes.txt: no process records"):
        process.invoke_gnuplot(str(notlog), str(tmp_path / "out"))
    with pytest.raises(TypeError, match="log_path"):
        process.write_log_to_stdout(3)


def test_invoke_gnuplot_writes_data_script_and_plot(tmp_path):
    path = tmp_path / "app.log"
    path.write_text(LOG)
    out = tmp_path / "plots"
    ret = process.invoke_gnuplot(str(path), str(out))
    dat = (out / "app.log_100.dat").read_text().splitlines()
    assert len(dat) == 4 and dat[0].startswith("#t(s)")
    assert "nan" not in dat[2] and dat[2].split()[4] == "0.5000"     # CPU as a fraction
    plt = (out / "app.log_100.plt").read_text()
    assert 'set label "big" at 3.0,' in plt and 'set output "app.log_100.png"' in plt
    if shutil.which("gnuplot") is None:
        assert ret == -1
        pytest.skip("gnuplot is not installed: the plot itself is not drawn")
    assert ret == 0
    assert (out / "app.log_100.png").stat().st_size > 1000
    assert (out / "app.log_200.png").exists()


# ---- python -m pymemtrace.process ------------------------------------------------------

MOD = [sys.executable, "-m", "pymemtrace.process"]


def test_module_cli_tabulates_and_plots_a_log(tmp_path):
    path = tmp_path / "app.log"
    path.write_text(LOG)
    r = subprocess.run(MOD + [str(path)], capture_output=True, text=True, timeout=60)
    assert r.returncode == 0, r.stderr
    assert " PID: 100 " in r.stdout and "# big" in r.stdout
    r = subprocess.run(MOD + [str(path), str(tmp_path / "g")], capture_output=True, text=True, timeout=60)
    assert (tmp_path / "g" / "app.log_100.dat").exists()
    assert r.returncode == (0 if shutil.which("gnuplot") else 1), r.stderr


def test_module_cli_bad_log_is_one_line(tmp_path):
    r = subprocess.run(MOD + [str(tmp_path / "nope.log")], capture_output=True, text=True, timeout=60)
    assert r.returncode == 1 and "Traceback" not in r.stderr
    assert r.stderr.strip().splitlines() == [f"python -m pymemtrace.process: error: no such process log: "
                                             f"{tmp_path / 'nope.log'}"]


def test_module_cli_logs_another_process_until_it_exits(tmp_path):
    # the child lives until 6 records were logged (however slow the machine)
    child = subprocess.Popen([sys.executable, "-c", "import sys; sys.stdin.read()"], stdin=subprocess.PIPE)
    mon = subprocess.Popen(MOD + ["-i", "0.1", "-p", str(child.pid)], stderr=subprocess.PIPE, text=True)
    lines = []
    try:
        for line in mon.stderr:
            lines.append(line)
            if sum("ProcessLoggingThread-JSON" in x for x in lines) == 6:
                child.stdin.close()
        assert mon.wait(timeout=60) == 0, "".join(lines)
    finally:
        if not child.stdin.closed:
            child.stdin.close()
        child.wait()
        if mon.poll() is None:
            mon.kill()
    log = tmp_path / "out.log"
    log.write_text("".join(lines))
    with open(log) as f:
        recs = process.extract_json(f)
    assert len(recs) >= 7 and {x["pid"] for x in recs} == {child.pid}
    assert any("ProcessLoggingThread-JSON-START" in x for x in lines[:3])
    assert "ProcessLoggingThread-JSON-STOP" in "".join(lines[-3:])


def test_module_cli_no_such_pid():
    r = subprocess.run(MOD + ["-p", "999999999"], capture_output=True, text=True, timeout=60)
    assert r.returncode == 1 and "Traceback" not in r.stderr
    assert "no such process" in r.stderr
