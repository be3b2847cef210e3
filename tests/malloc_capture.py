"""Test helper: write and walk `pymemtrace malloc` captures (format version 4).

The layout is src/core/capture_format.h's.  Tests build captures by hand with
`header()` and `Chunk` (to check the C reader on what a writer could leave:
threads out of order, a cut, a kill) and walk what the preload library wrote
with `walk()` (to check what it recorded, beyond what the reports show);
`cli()` runs `pymemtrace malloc`, `trace()` a program under it, and
`run_and_kill()` a program that counts its work, killed at a given moment.
"""
import os
import signal
import struct
import subprocess
import sys
import textwrap
import time
import zlib

HEADER = struct.Struct("<8sIIIIIIQIIIIQIIQQQIIQ16s")
HEADER_SIZE = 128
CODE, MODULE, STACK, NATIVE_FRAME, THREAD, TIME = 32, 33, 36, 37, 38, 40
SEQ_NEXT, SAME_SITE, KIND_MASK = 0x80, 0x40, 0x3F
FLAG_NATIVE, FLAG_STACKS, FLAG_PACKED = 1, 2, 4
RUNNING, EXIT, EXEC = 0, 1, 2
M64 = (1 << 64) - 1


def header(flags=0, state=EXIT, chunk=4096, python_hex=0x030B07F0, python_status=1,
           dropped=0, stop_events=0, stop_errno=0):
    rs = 40 if flags & FLAG_NATIVE else 32
    return HEADER.pack(b"PMTMALC\0", 4, HEADER_SIZE, rs, flags, 4242, 1, 0, 0x01020304, 4096,
                       chunk, HEADER_SIZE, python_hex, python_status, state, 0, dropped,
                       stop_events, stop_errno, 0, 0, bytes(16))


def uv(v):
    out = bytearray()
    while v >= 0x80:
        out.append((v & 0x7F) | 0x80)
        v >>= 7
    out.append(v)
    return bytes(out)


def zz(delta):
    d = delta & M64
    return ((d << 1) ^ (M64 if d >> 63 else 0)) & M64


class Chunk:
    """One chunk's records, delta-encoded as the writer does."""

    def __init__(self, native=False):
        self.data = bytearray()
        self.native = native
        self.seq = self.addr = self.size = self.code = self.line = self.ret = 0

    def event(self, seq, kind, a=0, b=0, code=0, line=-1, ret=0):
        body = bytearray()
        byte = kind
        if seq - self.seq == 1:
            byte |= SEQ_NEXT
        else:
            body += uv(zz(seq - self.seq))
        body += uv(zz(a - self.addr))
        self.seq, self.addr = seq, a
        if 1 <= kind <= 5:
            body += uv(zz(b - self.size))
            self.size = b
            if (code, line) == (self.code, self.line):
                byte |= SAME_SITE
            else:
                body += uv(zz(code - self.code)) + uv(zz(line - self.line))
                self.code, self.line = code, line
        elif kind == 18:
            body += uv(b)
        if self.native:
            body += uv(zz(ret - self.ret))
            self.ret = ret
        self.data += bytes([byte]) + body
        return self

    def code_def(self, cid, filename, name, firstlineno=1):
        payload = filename.encode() + b"\0" + name.encode() + b"\0"
        self.data += bytes([CODE]) + uv(cid) + uv(zz(firstlineno)) + uv(len(payload)) + payload
        return self

    def node(self, nid, parent, code, line):
        self.data += bytes([STACK]) + uv(nid) + uv(parent) + uv(code) + uv(zz(line))
        return self

    def padded(self, size=4096):
        assert len(self.data) <= size
        return bytes(self.data) + bytes(size - len(self.data))


def _get_uv(data, i):
    v = shift = 0
    while True:
        b = data[i]
        i += 1
        v |= (b & 0x7F) << shift
        shift += 7
        if not b & 0x80:
            return v, i


def _unzz(u):
    return (u >> 1) ^ (M64 if u & 1 else 0)


def read_header(data):
    v = HEADER.unpack_from(data)
    keys = ("magic", "version", "header_size", "record_size", "flags", "pid", "ppid",
            "start_ns", "endian", "page_size", "chunk_size", "data_offset", "python_hex",
            "python_status", "state", "events", "dropped", "stop_events", "stop_errno",
            "reserved0", "packed_len")
    return dict(zip(keys, v))


def unpack(data, h):
    """A packed capture's chunks, inflated: a count n, n stream lengths, the
    streams (src/core/capture_format.h)."""
    n = struct.unpack_from("=I", data, HEADER_SIZE)[0]
    lens = struct.unpack_from(f"={n}I", data, HEADER_SIZE + 4)
    at = HEADER_SIZE + 4 + 4 * n
    out = []
    for k in lens:
        out.append(zlib.decompress(data[at:at + k]))
        at += k
    area = b"".join(out)
    assert len(area) == h["packed_len"], (len(area), h["packed_len"])
    return area


def walk(path):
    """(header, events, codes, nodes) of a whole capture the library wrote:
    events as (seq, kind, a, b, code, line), codes {id: (file, name)}, nodes
    {id: (parent, code, line)}."""
    with open(path, "rb") as f:
        data = f.read()
    h = read_header(data)
    assert (h["magic"], h["version"]) == (b"PMTMALC\0", 4), h
    area = unpack(data, h) if h["flags"] & FLAG_PACKED else data[h["data_offset"]:]
    native = h["flags"] & FLAG_NATIVE
    events, codes, nodes = [], {}, {}
    cs = h["chunk_size"]
    for start in range(0, len(area), cs):
        chunk = area[start:start + cs]
        i = 0
        seq = addr = size = code = line = ret = 0
        while i < len(chunk) and chunk[i]:
            byte = chunk[i]
            i += 1
            kind = byte & KIND_MASK
            if byte in (CODE, STACK, MODULE, NATIVE_FRAME, THREAD, TIME):
                vals = []
                for _ in range({CODE: 3, STACK: 4, MODULE: 4, NATIVE_FRAME: 3, THREAD: 3,
                                TIME: 3}[byte]):
                    v, i = _get_uv(chunk, i)
                    vals.append(v)
                if byte == TIME:
                    continue
                if byte == NATIVE_FRAME:    # (parent, 0, -1): a native frame, vals[2] its address
                    nodes[vals[0]] = (vals[1], 0, -1)
                    continue
                if byte == STACK:
                    nodes[vals[0]] = (vals[1], vals[2], _unzz(vals[3]) - (1 << 64)
                                      if _unzz(vals[3]) >> 63 else _unzz(vals[3]))
                    continue
                payload = chunk[i:i + vals[-1]]
                i += vals[-1]
                if byte == CODE:
                    f, n = payload.split(b"\0")[:2]
                    codes[vals[0]] = (f.decode(), n.decode())
                continue
            if byte & SEQ_NEXT:
                seq += 1
            else:
                v, i = _get_uv(chunk, i)
                seq = (seq + _unzz(v)) & M64
            v, i = _get_uv(chunk, i)
            addr = (addr + _unzz(v)) & M64
            b = 0
            ev_code, ev_line = 0, -1
            if 1 <= kind <= 5:
                v, i = _get_uv(chunk, i)
                size = (size + _unzz(v)) & M64
                b = size
                if not byte & SAME_SITE:
                    v, i = _get_uv(chunk, i)
                    code = (code + _unzz(v)) & M64
                    v, i = _get_uv(chunk, i)
                    line = (line + _unzz(v)) & M64
                ev_code = code
                ev_line = line - (1 << 64) if line >> 63 else line
            elif kind == 18:
                b, i = _get_uv(chunk, i)
            if native:
                v, i = _get_uv(chunk, i)
                ret = (ret + _unzz(v)) & M64
            events.append((seq, kind, addr, b, ev_code, ev_line))
    events.sort()
    return h, events, codes, nodes


def cli(*args, check=True):
    """Run `pymemtrace malloc ARGS` with this interpreter; its CompletedProcess."""
    p = subprocess.run([sys.executable, "-m", "pymemtrace", "malloc", *args],
                       capture_output=True, text=True)
    if check and p.returncode != 0:
        raise AssertionError(f"rc={p.returncode}\n{p.stdout}\n{p.stderr}")
    return p


def trace(directory, name, program, *flags):
    """Write `program` (dedented) as DIRECTORY/NAME.py and run it under
    `pymemtrace malloc FLAGS`: (capture path, script path, its stdout)."""
    script = directory / f"{name}.py"
    script.write_text(textwrap.dedent(program))
    cap = directory / f"{name}.cap"
    p = cli(*flags, "-o", str(cap), "--", sys.executable, str(script))
    return cap, script, p.stdout


# The start of every program run_and_kill() runs.  `done[slot] = n` stores a
# count in ./done (a MAP_SHARED mapping) with one aligned 8-byte store, so a
# SIGKILL leaves either the old count or the new one.  Not struct.pack_into:
# it zeroes the destination first and then converts and writes the value, so
# a thread killed (or preempted, then killed) in between leaves 0 -- which
# made the count of a whole thread read 0 about once in 110 kills under load.
# `started()` writes ./pid, whole (a rename), once the program runs.
KILLABLE = """\
import mmap, os, threading
_f = open("done", "w+b")
_f.write(bytes(16))
_f.flush()
done = memoryview(mmap.mmap(_f.fileno(), 16)).cast("Q")
def started():
    with open("pid.tmp", "w") as p:
        p.write(str(os.getpid()))
    os.rename("pid.tmp", "pid")
"""


def run_and_kill(directory, body, prefix, delay, env=None):
    """Run KILLABLE + `body` (dedented) as DIRECTORY/prog.py: the command is
    PREFIX + [this interpreter, the script], in DIRECTORY.  DELAY seconds after
    the program called started(), SIGKILL it.  (script path, return code of
    the command, its stderr, the program's two counts)."""
    script = directory / "prog.py"
    script.write_text(KILLABLE + textwrap.dedent(body))
    proc = subprocess.Popen([*prefix, sys.executable, str(script)], cwd=directory, env=env,
                            stderr=subprocess.PIPE, text=True)
    pid_file = directory / "pid"
    deadline = time.monotonic() + 60
    while not pid_file.exists():
        if proc.poll() is not None or time.monotonic() > deadline:
            proc.kill()
            raise AssertionError(f"the program never started: {proc.communicate()[1]}")
        time.sleep(0.01)
    time.sleep(delay)
    os.kill(int(pid_file.read_text()), signal.SIGKILL)
    _, err = proc.communicate(timeout=60)
    counts = struct.unpack("=QQ", (directory / "done").read_bytes())
    return script, proc.returncode, err, counts
