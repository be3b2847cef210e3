"""Example: how a block changed the small-object allocator (pymalloc)."""
import sys

from pymemtrace import debug_malloc_stats


def main() -> int:
    with debug_malloc_stats.DiffSysDebugMallocStats() as malloc_diff:
        pairs = [(i, str(i)) for i in range(10_000)]
    print(f"Kept {len(pairs):,d} tuples; the allocator changed like this:")
    print(malloc_diff.diff())
    before, after = malloc_diff.before, malloc_diff.after
    grew = [r for r in debug_malloc_stats.diff_debugmallocstats(before, after)[2:] if r.strip()]
    print(f"\n({len(grew)} changed lines in the original pymemtrace's list form)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
