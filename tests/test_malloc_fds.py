"""pymemtrace malloc: the tracer keeps no descriptor in the traced program's way.

The capture is written through shared mappings (src/preload/capfile.c): a
descriptor is open only for the moment a new chunk is mapped.  A shell's
``exec 3>file``, a daemon's ``closerange`` followed by ``open``, a child that
lists the descriptors it inherited, a program whose RLIMIT_NOFILE is low and
full: the program's files hold exactly what it wrote, it sees only its own
descriptors, and the capture stays readable.
"""
import os
import shutil
import subprocess
import sys
import textwrap

import pytest

from pymemtrace.malloc import LIBRARY
from pymemtrace.readers.malloc_capture import load
from malloc_e2e import PY, skip_under_asan

pytestmark = skip_under_asan()


def run_traced(tmp_path, *command):
    cap = tmp_path / "t.cap"
    p = subprocess.run([PY, "-m", "pymemtrace", "malloc", "-o", str(cap), "--", *command],
                       capture_output=True, text=True, cwd=tmp_path)
    return p, cap


def run_python(tmp_path, source, *args):
    script = tmp_path / "prog.py"
    script.write_text(textwrap.dedent(source))
    return run_traced(tmp_path, PY, str(script), *args)


def assert_capture_whole(cap, min_events=1000):
    r = load(str(cap))
    assert r["complete"], r["warnings"]
    assert not r["dropped"] and not r["trailing_bytes"] and not r["seq_gaps"], r
    assert r["events"] >= min_events
    return r


def test_shell_exec_3_writes_only_its_own_lines(tmp_path):
    bash = shutil.which("bash")
    if bash is None:
        pytest.skip("needs bash")
    script = tmp_path / "s.sh"
    # The loop allocates (bash builds strings): buffers fill and are written
    # while the script's fd 3 is open.
    script.write_text(textwrap.dedent("""\
        exec 3>mine.txt
        i=0
        while [ $i -lt 3000 ]; do
            s="line $i $(printf '%040d' $i)"
            echo "$s" >&3
            i=$((i + 1))
        done
        exec 3>&-
        echo done
        """))
    p, cap = run_traced(tmp_path, bash, str(script))
    assert (p.returncode, p.stdout) == (0, "done\n"), p.stderr
    expected = "".join(f"line {i} {i:040d}\n" for i in range(3000))
    assert (tmp_path / "mine.txt").read_bytes() == expected.encode()
    assert_capture_whole(cap)


CLOSERANGE = """\
    import os
    # What daemons and close-fds code do: close everything but stdio.
    os.closerange(3, max(1024, os.sysconf("SC_OPEN_MAX")))
    with open("mine.bin", "wb") as f:
        for i in range(2000):
            keep = [bytearray(600 + j) for j in range(50)]   # fills the tracer's buffers
            f.write(b"%06d" % i + bytes(58))
    def after():
        return bytearray(3_000_017)  # AFTER
    k = after()
    print("ok")
    """


def test_closerange_then_open_leaves_the_programs_file_intact(tmp_path):
    p, cap = run_python(tmp_path, CLOSERANGE)
    assert (p.returncode, p.stdout) == (0, "ok\n"), p.stderr
    assert (tmp_path / "mine.bin").read_bytes() == b"".join(
        b"%06d" % i + bytes(58) for i in range(2000))
    r = assert_capture_whole(cap)
    # what came after is in the capture too
    script = str(tmp_path / "prog.py")
    assert any(s["file"] == script and s["function"] == "after"
               and s["malloc_bytes"] == 3_000_018 for s in r["by_python_site"]), r["warnings"]


NO_DESCRIPTOR = """\
    import os
    cap = os.path.realpath(os.environ["PYMEMTRACE_MALLOC_OUT"])
    def chunks():
        return [bytearray(600 + j) for j in range(20000)]   # many new chunks on the way
    keep = chunks()
    mine = [n for n in os.listdir("/proc/self/fd")
            if os.path.realpath(f"/proc/self/fd/{n}") == cap]
    fd = os.open(os.devnull, os.O_RDONLY)
    print(mine, fd)
    """


def test_tracer_holds_no_descriptor(tmp_path):
    p, cap = run_python(tmp_path, NO_DESCRIPTOR)
    assert (p.returncode, p.stdout) == (0, "[] 3\n"), p.stderr
    assert_capture_whole(cap, min_events=20000)


LOW_LIMIT = """\
    import os, resource, subprocess, sys
    # CPython's test_close_fds_when_max_fd_is_lowered: RLIMIT_NOFILE at 29,
    # descriptor 28 open in the parent, a child with close_fds=True must not
    # see it; and a program holding every descriptor it may still runs.
    resource.setrlimit(resource.RLIMIT_NOFILE, (29, 29))
    held = []
    while True:
        try:
            held.append(os.open(os.devnull, os.O_RDONLY))
        except OSError:
            break
    def full():
        return [bytearray(600 + j) for j in range(5000)]   # no descriptor for new chunks
    keep = full()
    for fd in held[1:]:
        os.close(fd)
    os.dup2(held[0], 28)
    out = subprocess.check_output([sys.executable, "-c",
        "import os; print(sorted(int(n) for n in os.listdir('/proc/self/fd')))"],
        close_fds=True)
    def after():
        return bytearray(3_000_017)  # AFTER
    k = after()
    print(held[-1], out.decode().strip())
    """


def test_low_rlimit_nofile_full_of_the_programs_descriptors(tmp_path):
    p, cap = run_python(tmp_path, LOW_LIMIT)
    assert p.returncode == 0, p.stderr
    last, listed = p.stdout.split(" ", 1)
    assert int(last) == 28                      # the program had every descriptor up to 28
    assert 28 not in eval(listed)               # the child saw only its own (0, 1, 2 and listdir's)
    r = load(str(cap))
    assert r["complete"] and not r["stop_errno"], r["warnings"]
    # what came once descriptors were free again is recorded
    script = str(tmp_path / "prog.py")
    assert any(s["file"] == script and s["function"] == "after"
               and s["malloc_bytes"] == 3_000_018 for s in r["by_python_site"]), r["warnings"]


MOVE = """\
    import os
    cap = os.path.realpath(os.environ["PYMEMTRACE_MALLOC_OUT"])
    for i in range(200):
        keep = [bytearray(600 + j) for j in range(50)]
    os.rename(cap, "moved.cap")
    for i in range(2000):
        keep = [bytearray(600 + j) for j in range(50)]   # new chunks: the file is gone
    print("ok")
    """


def test_a_capture_moved_away_stops_and_says_so(tmp_path):
    p, cap = run_python(tmp_path, MOVE)
    assert (p.returncode, p.stdout) == (0, "ok\n"), p.stderr
    assert "the capture stopped at event" in p.stderr
    assert "the capture file was removed or replaced" in p.stderr
    r = load(str(tmp_path / "moved.cap"))
    assert r["complete"] and r["events"] > 10000 and r["stop_errno"]
    assert r["stop_events"] <= r["events"] and r["dropped"] > 0
    assert any("stopped at event" in w for w in r["warnings"])


PASS_FDS = """\
    import os, subprocess, sys
    LIST = '''
    import errno, os
    fds = []
    for fd in range(min(os.sysconf("SC_OPEN_MAX"), 65536)):
        try:
            os.fstat(fd)
        except OSError as e:
            if e.errno != errno.EBADF:
                raise
            continue
        fds.append(fd)
    print(",".join(map(str, fds)))
    '''
    pass_fds = [os.open(os.devnull, os.O_RDWR) for _ in range(2)]
    r, w = os.pipe()
    pass_fds.insert(1, w)
    with subprocess.Popen([sys.executable, "-c", LIST], stdin=pass_fds[0],
                          stdout=pass_fds[1], stderr=pass_fds[2], close_fds=True,
                          pass_fds=pass_fds):
        out = os.read(r, 1024)
    got = {int(n) for n in out.split(b",")}
    print(sorted(got) == sorted({0, 1, 2} | set(pass_fds)), sorted(got), sorted(pass_fds))
    """


def test_child_with_pass_fds_sees_only_its_own_descriptors(tmp_path):
    """CPython's test_subprocess test_pass_fds_redirected, the child traced too."""
    p, cap = run_python(tmp_path, PASS_FDS)
    assert p.returncode == 0, p.stderr
    assert p.stdout.startswith("True "), p.stdout
    children = list(tmp_path.glob("t.cap.*"))
    assert len(children) == 1      # the child was traced, and wrote its own capture
    assert_capture_whole(children[0])
