"""A workload with known allocations, for the bpftrace tests, demo and bench.

``make_buffers(n)`` asks for ``n`` bytearrays of SIZE bytes, each on its own
line: a bytearray of SIZE (> 512) bytes is one malloc(SIZE + 1) made while
that line runs, so a tracer must attribute exactly n * (SIZE + 1) bytes in n
calls to that line of ``make_buffers``.  ``make_floats(n)`` makes n float objects
(24 bytes each, from the object allocator once the float free list is empty)
on FLOAT_LINE.  ``nested(depth)`` makes a known call flow.  With ``--wait`` the workload first reads one line from stdin, so that
a tracer attached with -p can be ready before the work starts.

Usage: python bpftrace_workload.py [N] [--wait] [--repeat R]
"""
import sys

SIZE = 123_457


def make_buffers(n: int) -> int:
    keep = []
    for _ in range(n):
        buf = bytearray(SIZE)  # BUFFER_LINE: the one malloc(SIZE + 1)
        keep.append(buf)
    return len(keep)


def make_floats(n: int) -> int:
    keep = []
    for i in range(n):
        f = i + 0.5  # FLOAT_LINE: a new 24-byte float object from the object allocator
        keep.append(f)
    return len(keep)


def leaf(i: int) -> int:
    return i * 2


def nested(depth: int) -> int:
    if depth == 0:
        return leaf(depth)
    return nested(depth - 1) + 1


def main(argv) -> int:
    args = list(argv[1:])
    wait = "--wait" in args
    repeat = 1
    if "--repeat" in args:
        i = args.index("--repeat")
        repeat = int(args[i + 1])
        del args[i:i + 2]
    args = [a for a in args if a != "--wait"]
    n = int(args[0]) if args else 50
    if wait:
        sys.stdin.readline()
    for _ in range(repeat):
        make_buffers(n)
        make_floats(1000)
        nested(3)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
