"""Example workload: memory from C malloc, PyMem_RawMalloc and PyMem_Malloc,
kept for a moment and released; run it under any pymemtrace tool."""
import argparse
import sys
import time

from pymemtrace import cMemLeak


def exercise(size: int, count: int, pause: float) -> int:
    total = 0
    for cls in (cMemLeak.CMalloc, cMemLeak.PyRawMalloc, cMemLeak.PyMalloc):
        held = [cls(size) for _ in range(count)]
        total += sum(b.size for b in held)
        time.sleep(pause)
        held.clear()
    return total


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--size", type=int, default=1024 ** 2, help="bytes per buffer")
    parser.add_argument("--count", type=int, default=8, help="buffers per allocator")
    parser.add_argument("--pause", type=float, default=0.1, help="seconds to hold them")
    a = parser.parse_args(argv)
    print(f"allocated and released {exercise(a.size, a.count, a.pause):,d} bytes")
    return 0


if __name__ == "__main__":
    sys.exit(main())
