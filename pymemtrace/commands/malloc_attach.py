"""``pymemtrace malloc attach PID``: trace a running process for a while, then let it go.

gdb (the Debian package) attaches to the process, waits for a moment when no
thread is inside the allocator or the dynamic loader, loads the tracer library
into it (``dlopen``, never unloaded) and calls its in-process entry point
``pmt_inproc_start`` (the one ``pymemtrace.malloc.Tracker`` uses), and
detaches: the process runs on, traced.  After ``--duration`` seconds or
Ctrl-C a second gdb call ``pmt_inproc_stop`` puts every relocation slot back
and ends the capture, which is then packed here like any other.  Only a
process of the same user (or root); ptrace must be allowed.
"""
from __future__ import annotations

import argparse
import os
import shutil
import subprocess
import sys
import tempfile
import time
from typing import List, Optional, Sequence

from pymemtrace.commands import UserError
from pymemtrace.commands.malloc import _prepare_capture
from pymemtrace.malloc import LIBRARY

_NATIVE = 1                     # pmt_inproc_start's flag for native stacks
_RTLD_NOW_NODELETE = 0x2 | 0x1000
_TRIES = 20                     # attempts to find the process outside its allocator
_NAME = "pymemtrace malloc attach"

# Runs inside gdb (its Python): is any thread inside the allocator or the
# loader?  Else load the library and call one of its entry points.
_SCRIPT = r'''
import re
import gdb

BUSY = re.compile(r"alloc|free|_int_|tcache|arena|_dl_|dl_open|dlopen|dlclose|fork|pmt_")

def busy():
    for thread in gdb.selected_inferior().threads():
        thread.switch()
        frame, depth = gdb.newest_frame(), 0
        while frame is not None and depth < 12:
            name = frame.name() or ""
            if BUSY.search(name):
                return "thread %d is in %s" % (thread.ptid[1], name)
            try:
                frame = frame.older()
            except gdb.error:
                break
            depth += 1
    return None

def say(*words):
    print("PMT-ATTACH", *words, flush=True)

def text(expr):
    v = gdb.parse_and_eval(expr)
    return v.string() if int(v) else ""

why = busy()
if why:
    say("busy", why)
elif ACTION == "start":
    if not int(gdb.parse_and_eval('(void *)dlopen("%s", %d)' % (LIBRARY, RTLD))):
        say("error", "cannot load the tracer: " + text("(char *)dlerror()"))
    else:
        rc = int(gdb.parse_and_eval('(int)pmt_inproc_start("%s", %d)' % (CAPTURE, FLAGS)))
        say("ok" if rc >= 0 else "error", text("(char *)pmt_inproc_error()") if rc < 0 else "")
else:
    rc = int(gdb.parse_and_eval("(int)pmt_inproc_stop()"))
    if rc < 0:
        say("error", text("(char *)pmt_inproc_error()"))
    else:
        say("ok", rc, int(gdb.parse_and_eval("(long)pmt_inproc_left()")))
'''


def _parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog=_NAME,
        description="Start tracing every allocation of a running process of yours (gdb "
                    "loads the tracer into it), stop after --duration seconds or Ctrl-C, "
                    "and leave the process running as it was.",
        epilog="example:\n  pymemtrace malloc attach 4242 --duration 30 -o svc.cap\n"
               "  pymemtrace malloc report svc.cap --view leaks",
        formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("pid", type=int, help="the process to trace")
    p.add_argument("-o", "--output", metavar="FILE",
                   help="capture path (default: pymemtrace-attach-<pid>.cap here)")
    p.add_argument("--duration", type=float, metavar="S", default=None,
                   help="seconds to trace (default: until Ctrl-C)")
    p.add_argument("--native", action="store_true", help="also record native stacks")
    p.add_argument("--gdb", default="gdb", metavar="PATH", help="the gdb to use (default gdb)")
    return p


def main(argv: Sequence[str]) -> int:
    a = _parser().parse_args(list(argv))
    if a.duration is not None and not 0 < a.duration <= 7 * 86400:
        raise UserError(f"--duration must be seconds above 0 (up to a week), not {a.duration:g}")
    gdb = shutil.which(a.gdb)
    if gdb is None:
        raise UserError(f"attach needs gdb (Debian package gdb): {a.gdb} not found")
    _check_process(a.pid)
    if not LIBRARY.exists():
        raise UserError(f"the tracer library is missing: {LIBRARY} (reinstall pymemtrace)")
    explicit = a.output is not None
    path = os.path.abspath(a.output if explicit else f"pymemtrace-attach-{a.pid}.cap")
    _probe(gdb, a.pid)
    _prepare_capture(path, explicit)

    _call(gdb, a.pid, "start", path, _NATIVE if a.native else 0)
    print(f"{_NAME}: tracing process {a.pid} into {path} "
          + (f"for {a.duration:g} s" if a.duration else "until Ctrl-C"), file=sys.stderr)
    ended = _wait(a.pid, a.duration)
    if ended:
        print(f"{_NAME}: process {a.pid} ended while traced", file=sys.stderr)
    else:
        words = _call(gdb, a.pid, "stop", path, 0)      # ok RESTORED LEFT
        if len(words) >= 3 and words[2] != "0":
            print(f"{_NAME}: {words[2]} relocation slot(s) had been rewritten by someone else "
                  "and were left as they are", file=sys.stderr)
    if os.path.exists(path):
        from pymemtrace import _malloccap
        _malloccap.pack(path)
        print(f"{_NAME}: capture in {path}; read it with: pymemtrace malloc report {path}",
              file=sys.stderr)
    return 0


def _check_process(pid: int) -> None:
    if pid <= 0 or pid == os.getpid():
        raise UserError(f"cannot attach to process {pid}")
    try:
        st = os.stat(f"/proc/{pid}")
    except FileNotFoundError:
        raise UserError(f"no process {pid}") from None
    if os.geteuid() != 0 and st.st_uid != os.geteuid():
        raise UserError(f"process {pid} belongs to uid {st.st_uid}, not to you")


def _probe(gdb: str, pid: int) -> None:
    """Check that gdb can call a function in a process and give it back intact.

    On some kernel and gdb pairs gdb cannot write the registers back after a
    call ("Couldn't write extended state status: Bad address", gdb 13.1 on a
    6.18 kernel): the process then resumes with a broken system call (a
    Python program dies with OSError errno 514).  So a throwaway `sleep`,
    asleep in a system call as most targets are, takes the same kind of call
    first; the user's process is not touched unless it comes through alive.
    """
    sleep = shutil.which("sleep")
    if sleep is None:
        return                  # nothing to try it on: go ahead as before
    victim = subprocess.Popen([sleep, "60"], start_new_session=True, stdin=subprocess.DEVNULL,
                              stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        deadline = time.monotonic() + 5
        while _state(victim.pid) != "S" and time.monotonic() < deadline:
            time.sleep(0.01)
        cmd = [gdb, "-nx", "-batch", "-q", "-iex", "set auto-load off", "-ex", "set confirm off",
               "-ex", "set unwindonsignal on", "-ex", "print (int)getpid()", "-p", str(victim.pid)]
        try:
            r = subprocess.run(cmd, capture_output=True, text=True, timeout=120,
                               start_new_session=True)
        except subprocess.TimeoutExpired:
            raise UserError("gdb did not answer within 120 s on a test process; "
                            f"process {pid} was not touched") from None
        time.sleep(0.1)         # a broken system call ends the sleep at once
        if f"= {victim.pid}" in r.stdout and victim.poll() is None and _state(victim.pid) == "S":
            return
        lines = [ln.strip() for ln in (r.stderr + r.stdout).splitlines() if ln.strip()]
        why = [ln for ln in lines if "ptrace" in ln or "not permitted" in ln
               or "Couldn't" in ln or "Cannot" in ln or "rror" in ln]
        what = (why or lines or ["no answer"])[-1].rstrip(".")
        if victim.poll() is not None and not why:
            what = f"the test process died (exit status {victim.returncode})"
        raise UserError(f"gdb cannot call a function in a process and resume it intact on this "
                        f"machine (tried on a test process: {what}); process {pid} was not "
                        "touched. Trace from the start instead: pymemtrace malloc -- CMD, or "
                        "pymemtrace.malloc.Tracker inside the program")
    finally:
        if victim.poll() is None:
            victim.kill()
        victim.wait()


def _state(pid: int) -> str:
    try:
        with open(f"/proc/{pid}/stat") as f:
            return f.read().rsplit(")", 1)[1].split()[0]
    except OSError:
        return ""


def _call(gdb: str, pid: int, action: str, path: str, flags: int) -> List[str]:
    """Run the gdb script once `action` could be done; its answer's words."""
    with tempfile.NamedTemporaryFile("w", suffix=".py", prefix="pmt-attach-") as f:
        f.write(f"ACTION = {action!r}\nLIBRARY = {str(LIBRARY)!r}\nCAPTURE = {path!r}\n"
                f"FLAGS = {flags}\nRTLD = {_RTLD_NOW_NODELETE}\n" + _SCRIPT)
        f.flush()
        cmd = [gdb, "-nx", "-batch", "-q", "-iex", "set auto-load off",
               "-ex", "set confirm off", "-ex", "set pagination off",
               "-ex", "set unwindonsignal on", "-p", str(pid), "-x", f.name]
        last = ""
        for _ in range(_TRIES):
            # its own session: a Ctrl-C here must not interrupt gdb inside the process
            r = subprocess.run(cmd, capture_output=True, text=True, start_new_session=True)
            answer = [ln for ln in r.stdout.splitlines() if ln.startswith("PMT-ATTACH ")]
            if not answer:
                err = " ".join(ln for ln in r.stderr.splitlines()
                               if "ptrace" in ln or "No such process" in ln
                               or "not permitted" in ln)
                raise UserError(f"gdb could not {action} tracing in process {pid}: "
                                f"{err or (r.stderr.strip().splitlines() or ['no answer'])[-1]}")
            words = answer[-1].split(None, 2)[1:]
            if words[0] == "ok":
                return (answer[-1].split()[1:])
            if words[0] == "error":
                raise UserError(f"cannot {action} tracing in process {pid}: "
                                f"{words[1] if len(words) > 1 else 'unknown error'}")
            last = words[1] if len(words) > 1 else ""
            time.sleep(0.05)
        raise UserError(f"cannot {action} tracing in process {pid}: it stayed inside its "
                        f"allocator ({last}); try again")


def _wait(pid: int, duration: Optional[float]) -> bool:
    """Sleep `duration` seconds (or until Ctrl-C); True if the process ended."""
    deadline = None if duration is None else time.monotonic() + duration
    try:
        while deadline is None or time.monotonic() < deadline:
            if not os.path.exists(f"/proc/{pid}") or _zombie(pid):
                return True
            time.sleep(0.1 if deadline is None else min(0.1, max(0.0, deadline - time.monotonic())))
    except KeyboardInterrupt:
        pass
    return not os.path.exists(f"/proc/{pid}") or _zombie(pid)


def _zombie(pid: int) -> bool:
    state = _state(pid)
    return state in ("Z", "")
