"""`pymemtrace trace`: run a script under cPyMemTrace, print the log's path and a summary."""
import os
import pathlib
import re
import subprocess
import sys
import textwrap

import pytest

from pymemtrace.readers import cpmt_log

FIX = pathlib.Path(__file__).parent / "fixtures" / "cpmt"

SCRIPT = textwrap.dedent("""\
    import sys

    def grow_by_sixteen_mib():
        return b"x" * (16 * 1024 * 1024)

    keep = []
    for _ in range(3):
        keep.append(grow_by_sixteen_mib())
    print("script args:", sys.argv[1:])
    sys.exit(int(sys.argv[1]) if len(sys.argv) > 1 else 0)
""")


def _run(args, cwd):
    return subprocess.run([sys.executable, "-m", "pymemtrace", "trace", *args],
                          capture_output=True, text=True, cwd=cwd, timeout=120)


def _log_path(out: str) -> pathlib.Path:
    m = re.search(r"log written to (\S+)", out)
    assert m, out
    return pathlib.Path(m.group(1))


@pytest.mark.parametrize("mode,letter", [("--profile", "P"), ("--trace", "T")])
def test_runs_script_and_summarises(tmp_path, mode, letter):
    (tmp_path / "work.py").write_text(SCRIPT)
    r = _run([mode, "work.py", "0", "extra"], tmp_path)
    assert r.returncode == 0, r.stderr
    assert "script args: ['0', 'extra']" in r.stdout
    path = _log_path(r.stdout)
    if not path.is_absolute():
        path = tmp_path / path
    assert path.exists()
    assert re.fullmatch(rf"\d{{8}}_\d{{6}}_\d+_{letter}_\d+_PY[\w.+]+\.log", path.name), path.name
    log = cpmt_log.read(path)
    assert log.complete and not log.truncated
    # each 16 MiB step is on the RETURN of the function that made it, as in the seed
    big = [r for r in log.largest(10) if r.d_rss >= 15 * 1024 * 1024]
    assert len(big) == 3, big
    assert all((r.what, r.function, r.file, r.line) == ("RETURN", "grow_by_sixteen_mib", "work.py", 4)
               for r in big), big
    assert "grow_by_sixteen_mib" in r.stdout.split("Largest RSS changes")[1]


def test_exit_code_is_the_scripts(tmp_path):
    (tmp_path / "work.py").write_text(SCRIPT)
    r = _run(["work.py", "3"], tmp_path)
    assert r.returncode == 3
    assert _log_path(r.stderr).name.endswith(".log")


def test_output_option_and_trigger(tmp_path):
    (tmp_path / "work.py").write_text(SCRIPT)
    out = tmp_path / "run.log"
    r = _run(["-d", "0", "-o", str(out), "work.py"], tmp_path)
    assert r.returncode == 0, r.stderr
    log = cpmt_log.read(out)
    # -d 0 logs every event: calls and returns of grow_by_sixteen_mib all present
    calls = [x for x in log.records if x.what == "CALL" and x.function == "grow_by_sixteen_mib"]
    assert len(calls) == 3
    assert all(x.kind == "NEXT" for x in log.records)


def test_script_exception_keeps_log_and_reports(tmp_path):
    (tmp_path / "boom.py").write_text("def f():\n    raise RuntimeError('boom')\nf()\n")
    r = _run(["boom.py"], tmp_path)
    assert r.returncode == 1
    assert "RuntimeError: boom" in r.stderr
    assert _log_path(r.stderr)


@pytest.mark.parametrize("args,msg", [
    (["missing.py"], "no such script: missing.py"),
    (["-d", "-5", "x.py"], "--d-rss-trigger must be"),
    (["-o", "/nonexistent-dir/x.log", "x.py"], "/nonexistent-dir/x.log"),
    (["report"], "usage: pymemtrace trace report [-n N] LOG"),
    (["report", "-n", "x", "a.log"], "--top must be a number, not 'x'"),
    (["report", "nope.log"], "no such log: nope.log"),
])
def test_user_errors_are_one_line(tmp_path, args, msg):
    (tmp_path / "x.py").write_text("pass\n")
    r = _run(args, tmp_path)
    assert r.returncode == 2, (r.stdout, r.stderr)
    assert msg in r.stderr
    assert "Traceback" not in r.stderr


def test_report_on_seed_log_and_garbage(tmp_path):
    r = _run(["report", str(FIX / "seed-profile.log")], tmp_path)
    assert r.returncode == 0, r.stderr
    assert "+1,052,672" in r.stdout and "create_string" in r.stdout
    assert "+8,421,376 in     8 rows  create_string (test.py)" in r.stdout
    bad = tmp_path / "bad.log"
    bad.write_text("garbage\n")
    r = _run(["report", str(bad)], tmp_path)
    assert r.returncode == 2 and "not a cPyMemTrace log" in r.stderr


@pytest.mark.skipif(not pathlib.Path("/dev/full").exists(), reason="needs /dev/full")
def test_disk_full_is_one_clear_line(tmp_path):
    (tmp_path / "work.py").write_text(SCRIPT)
    r = _run(["-o", "/dev/full", "work.py"], tmp_path)
    assert r.returncode == 1, (r.stdout, r.stderr)
    assert "writing the log /dev/full failed: No space left on device" in r.stderr
    assert "Traceback" not in r.stderr
    assert "script args: []" in r.stdout      # the script itself ran undisturbed


def test_report_into_a_closed_pipe_is_quiet(tmp_path):
    """`pymemtrace trace report LOG | head -1`: the reader has gone (here: before the
    first write, so the write surely fails with EPIPE); the report stops without a
    BrokenPipeError traceback and exits 0."""
    (tmp_path / "work.py").write_text(SCRIPT)
    r = _run(["--profile", "-o", "run.log", "work.py"], tmp_path)
    assert r.returncode == 0, r.stderr
    rd, wr = os.pipe()
    os.close(rd)
    try:
        p = subprocess.run([sys.executable, "-m", "pymemtrace", "trace", "report", "run.log"],
                           stdout=wr, stderr=subprocess.PIPE, text=True, cwd=tmp_path, timeout=120)
    finally:
        os.close(wr)
    assert "Traceback" not in p.stderr and "BrokenPipe" not in p.stderr, p.stderr
    assert p.returncode == 0, p.stderr
