"""``make demo`` part: trace_malloc on the seed's 8 x 1 MiB strings.

Prints the compensated diff next to the truth (sys.getsizeof), the top net
statistics, and writes the decorator's log line to ``trace_malloc.log`` in
the current directory (the demo output directory).
"""
import logging
import os
import sys

from pymemtrace import trace_malloc


def main() -> int:
    list_of_strings = []
    size_before = sys.getsizeof(list_of_strings)
    with trace_malloc.TraceMalloc('lineno') as tm:
        for i in range(8):
            list_of_strings.append(' ' * 1024**2)
    truth = sum(sys.getsizeof(s) for s in list_of_strings) + sys.getsizeof(list_of_strings) - size_before
    print(f'TraceMalloc diff: {tm.diff:,d} bytes; truth (sys.getsizeof): {truth:,d} bytes; '
          f'error {tm.diff - truth:+,d}')
    print(f'tracemalloc own memory: start {tm.memory_start:,d} finish {tm.memory_finish:,d} '
          f'(+{tm.tracemalloc_memory_usage:,d}, not charged to the block)')
    print(f'statistics: {len(tm.statistics)} lines, net_statistics: {len(tm.net_statistics)} lines; top net:')
    for stat in tm.net_statistics[:3]:
        print(f'    {stat}')

    log_path = os.path.abspath('trace_malloc.log')
    handler = logging.FileHandler(log_path, mode='w')
    handler.setFormatter(logging.Formatter(
        '%(asctime)s - %(filename)16s#%(lineno)-4d - %(process)5d - (%(threadName)-10s) - '
        '%(levelname)-8s - %(message)s'))
    log = logging.getLogger('pymemtrace.trace_malloc')
    log.addHandler(handler)
    log.setLevel(logging.INFO)
    try:
        @trace_malloc.trace_malloc_log(logging.INFO)
        def example_decorator_for_documentation(strings):
            for i in range(8):
                strings.append(' ' * 1024**2)
        example_decorator_for_documentation([])
    finally:
        log.removeHandler(handler)
        handler.close()
    with open(log_path) as f:
        print(f'decorator log written to {log_path}:\n    {f.read().strip()}')
    return 0


if __name__ == '__main__':
    sys.exit(main())
