"""Run the Linux versions of the seed's DTrace scripts (``scripts/bpftrace``) with bpftrace.

The scripts and their summaries; what bpftrace needs (the program, privileges,
tracefs, a Python with USDT probes), checked with an error that says how to get
it; one script run against a process or a command, its output saved.  No
per-event work happens in Python: bpftrace writes straight into the output
file.  ``pymemtrace bpftrace`` (:mod:`pymemtrace.commands.bpftrace`) is the
command line over this; :mod:`pymemtrace.readers.bpftrace_log` reads the output.
"""
from __future__ import annotations

import datetime
import mmap
import os
import re
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import List, Optional, Tuple


#: Python executables known to carry the USDT probes, for the error messages.


class BpftraceError(Exception):
    """What bpftrace needs is missing, or the script cannot run: the message says how to fix it."""


KNOWN_USDT_PYTHON = "/usr/bin/python3.11"
TRACEFS = "/sys/kernel/tracing"
DEBUGFS_TRACING = "/sys/kernel/debug/tracing"

# bpftrace settings: 128-byte strings keep most paths whole and fit the BPF
# stack; maps hold up to 32768 keys; 4 MiB of perf buffer per CPU for the
# scripts that print every event.
_BPFTRACE_ENV = {
    "BPFTRACE_STRLEN": "128",
    "BPFTRACE_MAP_KEYS_MAX": "32768",
    "BPFTRACE_PERF_RB_PAGES": "1024",
}
# Noise bpftrace prints on kernels that account BPF memory to cgroups;
# bpftrace 0.17 may also report that its -c child was already reaped.
_NOISE = re.compile(r"couldn't set RLIMIT_MEMLOCK|ulimit -l|"
                    r"waitpid\(\d+\) returned unexpected error: 10")


# ---- the scripts ------------------------------------------------------------------------------

def scripts_dir() -> Path:
    """Where the .bt scripts are: installed package data, else the source tree."""
    here = Path(__file__).resolve().parent
    for cand in (here / "bpftrace", here.parent / "scripts" / "bpftrace"):
        if cand.is_dir() and any(cand.glob("*.bt")):
            return cand
    raise BpftraceError(f"the bpftrace scripts are missing (looked in {here / 'bpftrace'}); "
                    "reinstall pymemtrace")


def script_names() -> List[str]:
    return sorted(p.stem for p in scripts_dir().glob("*.bt"))


def script_path(name: str) -> Path:
    names = script_names()
    if name not in names:
        raise BpftraceError(f"unknown script {name!r}; choose one of: {', '.join(names)}")
    return scripts_dir() / f"{name}.bt"


def script_summary(path: Path) -> str:
    """The description from the script's header comment: its first sentence."""
    words: List[str] = []
    for line in path.read_text().splitlines()[1:40]:
        m = re.match(r"^\s*\*\s?(.*)$", line)
        if m is None or not m.group(1).strip():
            if words:
                break
            continue
        text = m.group(1).strip()
        if not words:
            head = re.match(r"^\S+\.bt\s+-\s+(.*)$", text)
            if head is None:
                continue
            text = head.group(1)
        words.extend(text.split())
    summary = " ".join(words)
    end = summary.find(". ")
    return summary if end < 0 else summary[:end + 1]


# ---- what bpftrace needs ------------------------------------------------------------------------

def find_bpftrace() -> str:
    """The bpftrace executable ($PYMEMTRACE_BPFTRACE, else PATH)."""
    explicit = os.environ.get("PYMEMTRACE_BPFTRACE")
    if explicit:
        if os.path.isfile(explicit) and os.access(explicit, os.X_OK):
            return explicit
        raise BpftraceError(f"bpftrace not found: PYMEMTRACE_BPFTRACE={explicit} is not an "
                        "executable file")
    found = shutil.which("bpftrace")
    if not found:
        raise BpftraceError("bpftrace not found on PATH; install it (Debian/Ubuntu: "
                        "apt-get install bpftrace)")
    return found


def _effective_caps() -> int:
    try:
        with open("/proc/self/status") as f:
            for line in f:
                if line.startswith("CapEff:"):
                    return int(line.split()[1], 16)
    except (OSError, ValueError):
        pass
    return 0


def check_privileges() -> None:
    """Root, CAP_SYS_ADMIN, or CAP_BPF with CAP_PERFMON, else a BpftraceError."""
    if os.geteuid() == 0:
        return
    caps = _effective_caps()
    cap_sys_admin, cap_perfmon, cap_bpf = 21, 38, 39
    if caps >> cap_sys_admin & 1 or (caps >> cap_bpf & 1 and caps >> cap_perfmon & 1):
        return
    raise BpftraceError("bpftrace needs root (or CAP_BPF and CAP_PERFMON): run "
                    "'sudo pymemtrace bpftrace run ...'")


def raise_memlock() -> None:
    """Best effort: lift RLIMIT_MEMLOCK for bpftrace (kernels before 5.11 charge
    BPF maps to it; newer ones to the memory cgroup, where it does not matter)."""
    try:
        import resource
        soft, hard = resource.getrlimit(resource.RLIMIT_MEMLOCK)
        try:
            resource.setrlimit(resource.RLIMIT_MEMLOCK,
                               (resource.RLIM_INFINITY, resource.RLIM_INFINITY))
        except (ValueError, OSError):
            if soft != hard:
                resource.setrlimit(resource.RLIMIT_MEMLOCK, (hard, hard))
    except (ImportError, ValueError, OSError):
        pass


def _tracefs_mounted() -> bool:
    return any(os.path.exists(os.path.join(d, "trace")) for d in (TRACEFS, DEBUGFS_TRACING))


def ensure_tracefs() -> None:
    """tracefs mounted, mounting it at /sys/kernel/tracing when root, else a BpftraceError."""
    if _tracefs_mounted():
        return
    if os.geteuid() == 0 and os.path.isdir(TRACEFS):
        r = subprocess.run(["mount", "-t", "tracefs", "nodev", TRACEFS],
                           capture_output=True, text=True)
        if _tracefs_mounted():
            return
        why = (r.stderr or r.stdout).strip().splitlines()
        raise BpftraceError(f"tracefs is not mounted and 'mount -t tracefs nodev {TRACEFS}' "
                        f"failed: {why[0] if why else 'exit ' + str(r.returncode)}")
    raise BpftraceError(f"tracefs is not mounted; as root run: mount -t tracefs nodev {TRACEFS}")


def has_python_usdt(path: str) -> bool:
    """Whether the ELF file at path carries CPython's USDT probes (python:function__entry)."""
    try:
        with open(path, "rb") as f:
            if f.read(4) != b"\x7fELF":
                return False
            with mmap.mmap(f.fileno(), 0, access=mmap.ACCESS_READ) as m:
                # A stapsdt note holds "stapsdt\0", addresses, then
                # "provider\0name\0args\0".
                return m.find(b"stapsdt\0") >= 0 and m.find(b"python\0function__entry\0") >= 0
    except (OSError, ValueError):
        return False


def live_unavailable_reason(python: str = KNOWN_USDT_PYTHON) -> Optional[str]:
    """Why the scripts cannot run live here against *python* ("needs ..."), or None if they can.

    Used by the live tests, the bench and the demo to skip with a reason.  As
    root it mounts tracefs when it is missing.
    """
    if os.geteuid() != 0:
        return "needs root for bpftrace"
    if shutil.which("bpftrace") is None:
        return "needs bpftrace (apt-get install bpftrace)"
    if not has_python_usdt(python):
        return f"needs {python} with USDT probes"
    try:
        ensure_tracefs()
    except Exception as err:           # noqa: BLE001 - any reason is a reason to skip
        return f"needs tracefs: {err}"
    return None


def _libpythons_of_pid(pid: int) -> List[str]:
    libs = []
    try:
        with open(f"/proc/{pid}/maps") as f:
            for line in f:
                parts = line.split(None, 5)
                if len(parts) == 6 and "libpython" in os.path.basename(parts[5].strip()):
                    p = parts[5].strip()
                    if p not in libs:
                        libs.append(p)
    except OSError:
        pass
    return libs


def _libpythons_of_exe(exe: str) -> List[str]:
    try:
        r = subprocess.run(["ldd", exe], capture_output=True, text=True, timeout=20)
    except (OSError, subprocess.TimeoutExpired):
        return []
    libs = []
    for line in r.stdout.splitlines():
        m = re.search(r"=>\s*(\S*libpython\S*)", line)
        if m:
            libs.append(m.group(1))
    return libs


def _no_usdt(what: str) -> BpftraceError:
    return BpftraceError(f"{what} has no Python USDT probes (python:function__entry): the "
                     f"scripts need a Python built with --with-dtrace, such as "
                     f"{KNOWN_USDT_PYTHON}")


def target_pid(pid: int) -> Tuple[str, str]:
    """(executable, file with the USDT probes) of a running process."""
    if pid <= 0:
        raise BpftraceError(f"-p: {pid} is not a process ID")
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        raise BpftraceError(f"-p: no process with PID {pid}") from None
    except PermissionError:
        pass
    try:
        exe = os.readlink(f"/proc/{pid}/exe")
    except OSError as err:
        raise BpftraceError(f"-p: cannot read /proc/{pid}/exe: {err.strerror}") from None
    exe = exe.removesuffix(" (deleted)")
    for cand in [f"/proc/{pid}/exe"] + _libpythons_of_pid(pid):
        if has_python_usdt(cand):
            return exe, (exe if cand.startswith("/proc/") else cand)
    raise _no_usdt(f"PID {pid} ({exe})")


def _shebang(path: str) -> Optional[List[str]]:
    try:
        with open(path, "rb") as f:
            first = f.readline(256)
    except OSError:
        return None
    if not first.startswith(b"#!"):
        return None
    words = first[2:].decode("utf-8", "replace").split()
    if not words:
        return None
    if os.path.basename(words[0]) == "env" and len(words) > 1:
        found = shutil.which(words[1])
        return [found] + words[2:] if found else None
    return words


def target_command(command: List[str]) -> Tuple[List[str], str]:
    """(command to give bpftrace -c, file with the USDT probes).

    bpftrace attaches the probes to the command's own executable before it
    runs, so that executable must be the Python: a script whose "#!" line
    names a Python is run by that Python directly.
    """
    if not command:
        raise BpftraceError("nothing to trace: give -p PID or a command after '--'")
    exe = shutil.which(command[0])
    if exe is None:
        raise BpftraceError(f"command not found: {command[0]}")
    exe = os.path.abspath(exe)
    argv = [exe] + command[1:]
    if not _is_elf(exe):
        interp = _shebang(exe)
        if interp is None or not _is_elf(interp[0]):
            raise BpftraceError(f"{command[0]} is neither a program nor a script with a '#!' line "
                            "naming one")
        argv = interp + [exe] + command[1:]
        exe = interp[0]
    real = os.path.realpath(exe)
    usdt = real if has_python_usdt(real) else None
    if usdt is None:
        usdt = next((lib for lib in _libpythons_of_exe(real) if has_python_usdt(lib)), None)
    if usdt is None:
        raise _no_usdt(command[0] if command[0] == exe else f"{command[0]} (runs {exe})")
    for arg in argv:
        if not arg or re.search(r"\s", arg):
            raise BpftraceError(f"bpftrace -c cannot pass the argument {arg!r} (it splits the "
                            "command on spaces); put the command in a script or use -p PID")
    argv[0] = exe   # as given: a venv's python finds its pyvenv.cfg from this path
    return argv, usdt


def _is_elf(path: str) -> bool:
    try:
        with open(path, "rb") as f:
            return f.read(4) == b"\x7fELF"
    except OSError:
        return False


# ---- run ----------------------------------------------------------------------------------------

def _default_output(name: str, label: str) -> str:
    stamp = datetime.datetime.now().strftime("%Y%m%d_%H%M%S")
    return f"{name}_{stamp}_{label}.txt"


def _open_output(path: Optional[str], name: str, label: str):
    """Open the output file: -o FILE is overwritten; a default name never is."""
    flags = os.O_WRONLY | os.O_CREAT | os.O_NOFOLLOW | os.O_CLOEXEC
    if path is None:
        base = _default_output(name, label)
        for n in range(1000):
            cand = base if n == 0 else base.replace(".txt", f"_{n}.txt")
            try:
                return cand, os.open(cand, flags | os.O_EXCL, 0o644)
            except FileExistsError:
                continue
            except OSError as err:
                raise BpftraceError(f"cannot create {cand}: {err.strerror}") from None
        raise BpftraceError(f"cannot find a free output file name like {base}")
    try:
        return path, os.open(path, flags | os.O_TRUNC, 0o644)
    except OSError as err:
        raise BpftraceError(f"-o: cannot write {path}: {err.strerror}") from None


_EXIT_PROBE = re.compile(r"^tracepoint:sched:sched_process_exit\n/[^\n]*/\n\{\n\s*exit\(\);\n\}\n",
                         re.M)


def _check_symbols(name: str, text: str, usdt: str) -> None:
    """Scripts with uprobes on the Python file ($2) need its symbols exported."""
    wanted = sorted(set(re.findall(r"^uprobe:\$2:(\w+)", text, re.M)))
    if not wanted:
        return
    try:
        with open(usdt, "rb") as f, mmap.mmap(f.fileno(), 0, access=mmap.ACCESS_READ) as m:
            missing = [sym for sym in wanted if m.find(sym.encode() + b"\0") < 0]
    except (OSError, ValueError):
        return
    if missing:
        raise BpftraceError(f"{name} needs {', '.join(missing)} exported by {usdt}, which does not "
                        "export them")


def build_invocation(name: str, bpftrace: str, pid: Optional[int], command: List[str],
                     workdir: str) -> Tuple[List[str], str, str]:
    """(bpftrace argv, label for the output name, USDT file) for one run.

    The scripts take the PID as $1 and the file with the USDT probes as $2.
    With a command, bpftrace's -c starts it only after the probes are
    attached, and the script's $1 becomes bpftrace's ``cpid``.
    """
    text = script_path(name).read_text()
    if "curtask->" in text and not os.path.exists("/sys/kernel/btf/vmlinux"):
        raise BpftraceError(f"{name} reads the kernel's task structures and needs kernel BTF "
                        "(/sys/kernel/btf/vmlinux, CONFIG_DEBUG_INFO_BTF)")
    if pid is not None:
        _, usdt = target_pid(pid)
        _check_symbols(name, text, usdt)
        path = script_path(name)
        return [bpftrace, str(path), str(pid), usdt], str(pid), usdt
    argv, usdt = target_command(command)
    _check_symbols(name, text, usdt)
    path = os.path.join(workdir, f"{name}.bt")
    # bpftrace -c ends by itself when the command exits; the script's own
    # exit() on sched_process_exit would race with that and, now and then,
    # make bpftrace skip END (its markers and clear()s): drop it.
    text = _EXIT_PROBE.sub("", text)
    with open(path, "w") as f:
        f.write(re.sub(r"\$1\b", "cpid", text))
    label = next((a for a in argv[1:] if not a.startswith("-")), argv[0])
    label = re.sub(r"[^A-Za-z0-9_-]+", "_", os.path.basename(label))[:40] or "cmd"
    return [bpftrace, "-c", " ".join(argv), path, "0", usdt], label, usdt


def run(name: str, pid: Optional[int], command: List[str], output: Optional[str],
        quiet: bool = False) -> Tuple[int, str]:
    """Run script ``name`` on a PID or a command; return (exit code, output path)."""
    script_path(name)
    if pid is not None and command:
        raise BpftraceError("give either -p PID or a command after '--', not both")
    if pid is None and not command:
        raise BpftraceError("nothing to trace: give -p PID or a command after '--'")
    bpftrace = find_bpftrace()
    check_privileges()
    ensure_tracefs()
    raise_memlock()
    with tempfile.TemporaryDirectory(prefix="pymemtrace-bpftrace-") as tmp:
        argv, label, _ = build_invocation(name, bpftrace, pid, command, tmp)
        out_path, fd = _open_output(output, name, label)
        env = dict(os.environ, **_BPFTRACE_ENV)
        # A script whose usage line asks for another string length (to keep
        # its programs within the BPF stack) gets it.
        m = re.search(r"BPFTRACE_STRLEN=(\d+) bpftrace", script_path(name).read_text()[:4096])
        if m:
            env["BPFTRACE_STRLEN"] = m.group(1)
        if command:
            # A command started by bpftrace -c shares bpftrace's stdout: let
            # bpftrace write the file itself (-o) so that the command's own
            # output still reaches the terminal.
            os.close(fd)
            argv = [argv[0], "-o", out_path] + argv[1:]
            out = None
        else:
            # -p: bpftrace's stdout is the file, written line by line, so
            # the file can be followed while tracing.
            out = fd
        err_path = os.path.join(tmp, "stderr.txt")
        with open(err_path, "w+b") as err_file:
            try:
                proc = subprocess.Popen(argv, stdout=out, stderr=err_file, env=env)
            except OSError as err:
                raise BpftraceError(f"cannot run {bpftrace}: {err.strerror}") from None
            finally:
                if out is not None:
                    os.close(out)
            _wait(proc, pid)
            err_file.seek(0)
            err_text = err_file.read().decode("utf-8", "replace")
    errors = [line for line in err_text.splitlines() if line.strip() and not _NOISE.search(line)]
    if proc.returncode < 0:
        raise BpftraceError(f"bpftrace was killed by signal {-proc.returncode}; what it wrote "
                        f"before is in {out_path}")
    if proc.returncode != 0:
        first = next((e for e in errors if "ERROR" in e or "rror" in e), errors[0] if errors else "")
        raise BpftraceError(f"bpftrace failed (exit {proc.returncode}): "
                        f"{first.strip() or 'no message'} [output so far in {out_path}]")
    for line in errors:
        print(f"bpftrace: {line}", file=sys.stderr)
    preload = os.environ.get("LD_PRELOAD", "")
    if command and preload and "uprobe:libc:" in script_path(name).read_text():
        print(f"pymemtrace bpftrace: warning: LD_PRELOAD={preload} was passed to the command: "
              "a preloaded malloc hides allocations from the libc probes", file=sys.stderr)
    if not quiet:
        print(f"pymemtrace bpftrace: wrote {out_path}; report with: "
              f"pymemtrace bpftrace report {out_path}", file=sys.stderr)
    return 0, out_path


def _wait(proc: subprocess.Popen, pid: Optional[int]) -> None:
    """Wait for bpftrace to end.

    Ctrl-C reaches bpftrace too (same process group); it is forwarded anyway
    in case only this process got it, and the wait goes on so that what
    bpftrace prints at END is saved.  With -p, the script stops itself when
    the process exits; if the process was already gone before the probes
    were attached, bpftrace is told to stop here.
    """
    gone_since = None
    while True:
        try:
            proc.wait(timeout=0.5)
            return
        except subprocess.TimeoutExpired:
            if pid is None:
                continue
            if os.path.exists(f"/proc/{pid}"):
                gone_since = None
                continue
            now = time.monotonic()
            if gone_since is None:
                gone_since = now
            elif now - gone_since > 2.0:
                _signal(proc, signal.SIGINT)
                gone_since = now + 60.0     # then give it time to print its maps
        except KeyboardInterrupt:
            _signal(proc, signal.SIGINT)


def _signal(proc: subprocess.Popen, sig: int) -> None:
    try:
        proc.send_signal(sig)
    except ProcessLookupError:
        pass
