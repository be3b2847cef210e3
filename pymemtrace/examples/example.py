"""A small workload to trace: lists of strings built, trimmed and dropped.

Pure Python with no pymemtrace import, so any interpreter can run it by
path under a tracer, e.g.::

    pymemtrace trace -- python pymemtrace/examples/example.py
    pymemtrace bpftrace run py_flow_malloc_free -- /usr/bin/python3.11 .../example.py
"""
import sys
import time


def make_list_strings(n: int) -> list:
    lst = []
    for _ in range(n):
        lst.append(" " * 1024)
    time.sleep(0.05)
    return lst


def trim_list(lst: list, length: int) -> list:
    while len(lst) > length:
        lst.pop()
    time.sleep(0.03)
    return lst


def just_sleep(t: float) -> None:
    time.sleep(t)


def main(rounds: int = 3) -> int:
    kept = 0
    for _ in range(rounds):
        lst = make_list_strings(1024 * 10)
        just_sleep(0.05)
        kept += len(trim_list(lst, 128))
        just_sleep(0.02)
    print(f"example: {rounds} rounds of 10,240 strings of 1 KiB, {kept} kept to the end of a round")
    return 0


if __name__ == "__main__":
    sys.exit(main(int(sys.argv[1]) if len(sys.argv) > 1 else 3))
