"""The seed's trace_malloc examples, verbatim (section "pymemtrace tracemalloc").

Run: python examples/ex_trace_malloc.py

The decorator example in the seed uses ``logging`` and ``create_string()``
without defining them; the few lines marked "preamble" supply them, the rest
is the seed's text unchanged.
"""
import logging  # preamble
import sys  # preamble


def create_string(size):  # preamble: the seed's example calls this
    return ' ' * size


def example_trace_malloc_for_documentation():
    from pymemtrace import trace_malloc

    list_of_strings = []
    print(f'example_trace_malloc_for_documentation()')
    with trace_malloc.TraceMalloc('filename') as tm:
        for i in range(8):
            list_of_strings.append(' ' * 1024**2)
    print(f' tm.memory_start={tm.memory_start}')
    print(f'tm.memory_finish={tm.memory_finish}')
    print(f'         tm.diff={tm.diff}')
    for stat in tm.statistics:
        print(stat)
    # The seed: "To eliminate the lines that is caused by tracemalloc itself
    # change the last two lines to:"
    print('net_statistics:')
    for stat in tm.net_statistics:
        print(stat)


def example_decorator_for_documentation_main():
    from pymemtrace import trace_malloc

    @trace_malloc.trace_malloc_log(logging.INFO)
    def example_decorator_for_documentation(list_of_strings):
        for i in range(8):
            list_of_strings.append(create_string(1024**2))

    list_of_strings = []
    example_decorator_for_documentation(list_of_strings)


def main() -> int:
    logging.basicConfig(  # preamble: the seed's log format
        level=logging.INFO, stream=sys.stdout,
        format='%(asctime)s - %(filename)16s#%(lineno)-4d - %(process)5d - (%(threadName)-10s) - '
               '%(levelname)-8s - %(message)s')
    example_trace_malloc_for_documentation()
    example_decorator_for_documentation_main()
    return 0


if __name__ == '__main__':
    sys.exit(main())
