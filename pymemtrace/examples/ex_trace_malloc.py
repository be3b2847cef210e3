"""Example: what a block allocated, line by line, measured with tracemalloc."""
import sys

from pymemtrace import trace_malloc


def make_strings(n: int, size: int) -> list:
    return [" " * size for _ in range(n)]


def main() -> int:
    with trace_malloc.TraceMalloc("lineno") as tm:
        kept = make_strings(8, 1024 ** 2)
    print(f"The block kept {len(kept)} strings; tracemalloc says it allocated "
          f"{tm.diff:,d} bytes (its own bookkeeping grew {tm.tracemalloc_memory_usage:,d}).")
    print("Largest lines:")
    for stat in tm.net_statistics()[:3]:      # also works as tm.net_statistics
        print(f"  {stat}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
