"""pymemtrace malloc --stacks: whole Python stacks per allocation (issue 12, started).

With --stacks the preload library writes a capture in which every
allocation names the innermost node of its stack, and each node (parent,
code id, line) is a STACK record written once.  The C reader reads such a
capture and attributes by the innermost frame as before; it has no by-stack
view yet, so these tests also walk the records themselves
(malloc_capture.walk) to check the stacks that were written.
"""
import os
import subprocess
import sys
import textwrap

import pytest

import malloc_capture
from pymemtrace.malloc import LIBRARY
from pymemtrace.readers.malloc_capture import load
from malloc_e2e import line_of, skip_under_asan
from test_malloc_pyversions import interpreters

pytestmark = skip_under_asan()

def stacks_of(path, size):
    """The stacks ([(function, line), ...], innermost first) of allocations of `size`."""
    h, events, codes, nodes = malloc_capture.walk(path)
    assert h["flags"] & malloc_capture.FLAG_STACKS
    codes = {cid: name for cid, (_, name) in codes.items()}
    hits = [code for _, kind, _, b, code, _ in events if 1 <= kind <= 5 and b == size]
    out = []
    for node in hits:
        frames = []
        while node in nodes:    # a THREAD node (not in nodes) is the root
            parent, code, line = nodes[node]
            frames.append((codes[code], line))
            node = parent
        out.append(frames)
    return out


SCRIPT = """\
    def leaf():
        return bytearray(3_000_017)  # LEAF

    def mid():
        return [leaf() for _ in range(2)]  # MID

    def top():
        return mid()  # TOP

    keep = top()  # MODULE
    """


@pytest.mark.parametrize("python", interpreters())
def test_every_allocation_carries_its_whole_stack(python, tmp_path):
    if python is None:
        pytest.skip("that CPython is not installed here")
    script = tmp_path / "app.py"
    script.write_text(textwrap.dedent(SCRIPT))
    cap = tmp_path / "app.cap"
    p = subprocess.run([sys.executable, "-m", "pymemtrace", "malloc", "--stacks", "-o",
                        str(cap), "--", python, str(script)], capture_output=True, text=True)
    assert p.returncode == 0, p.stderr
    at = {m: line_of(script, m) for m in ("LEAF", "MID", "TOP", "MODULE")}
    whole = [("leaf", at["LEAF"]), ("mid", at["MID"]), ("top", at["TOP"]),
             ("<module>", at["MODULE"])]
    got = stacks_of(cap, 3_000_018)
    assert len(got) == 2, got
    for frames in got:
        # before 3.12 the comprehension is a frame of its own (PEP 709)
        assert [f for f in frames if f[0] != "<listcomp>"] == whole, frames
    # both allocations (one stack, written once) resolve to the same frames
    assert got[0] == got[1]
    # the report reads it and attributes each block to its innermost line
    r = load(str(cap))
    assert r["complete"] and r["python_status"] == "on"
    big = [(b["function"], b["line"]) for b in r["largest"] if b["size"] == 3_000_018]
    assert big == [whole[0], whole[0]]
