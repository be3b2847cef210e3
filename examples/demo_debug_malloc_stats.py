"""``make demo`` part: debug_malloc_stats on the seed's example and on a block
that keeps 200 complex numbers (one size class, no free list).

Writes the full before/after texts and the diffs to
``debug_malloc_stats.txt`` in the current directory (the demo output directory).
"""
import os
import sys

from pymemtrace import debug_malloc_stats


def main() -> int:
    list_of_strings = []
    with debug_malloc_stats.DiffSysDebugMallocStats() as seed_diff:
        for i in range(1, 9):
            list_of_strings.append(' ' * (i * 8))
    print("The seed's example (8 strings and the list's item array = 9 blocks):")
    print(seed_diff.diff())

    keep = [None] * 200
    c = 1j
    with debug_malloc_stats.DiffSysDebugMallocStats() as complex_diff:
        for i in range(200):
            keep[i] = c * i
    deltas = complex_diff.size_class_deltas()
    print(f'200 complex numbers (32 bytes each): size class deltas {dict((i, d.blocks_in_use) for i, d in deltas.items())}')

    with debug_malloc_stats.DiffSysDebugMallocStats() as empty_diff:
        pass
    print(f'empty block: {empty_diff.diff().strip()}')

    path = os.path.abspath('debug_malloc_stats.txt')
    with open(path, 'w') as f:
        f.write("# seed example: before\n" + seed_diff.before.text)
        f.write("\n# seed example: after\n" + seed_diff.after.text)
        f.write("\n# seed example: diff\n" + seed_diff.diff())
        f.write("\n# 200 complex numbers: diff\n" + complex_diff.diff())
    print(f'before/after texts and diffs written to {path}')
    return 0


if __name__ == '__main__':
    sys.exit(main())
