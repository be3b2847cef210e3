"""The seed's debug_malloc_stats example, verbatim (section "pymemtrace Debug Malloc Stats").

Run: python examples/ex_debug_malloc_stats.py
"""
import sys


def example_debug_malloc_stats_for_documentation():
    from pymemtrace import debug_malloc_stats

    print(f'example_debug_malloc_stats_for_documentation()')
    list_of_strings = []
    with debug_malloc_stats.DiffSysDebugMallocStats() as malloc_diff:
        for i in range(1, 9):
            list_of_strings.append(' ' * (i * 8))
    print(f'DiffSysDebugMallocStats.diff():')
    print(f'{malloc_diff.diff()}')


def main() -> int:
    example_debug_malloc_stats_for_documentation()
    return 0


if __name__ == '__main__':
    sys.exit(main())
