"""Example for the bpftrace scripts: the seed's create_string() workload.

Run it under a script, as root, with a Python that has USDT probes:

    sudo pymemtrace bpftrace run py_malloc -o py_malloc.txt -- /usr/bin/python3.11 examples/ex_bpftrace.py
    pymemtrace bpftrace report py_malloc.txt

create_string() asks for eight strings of 1 MiB: each is one malloc() of a
little over 1 MiB made while its return line runs, so the report puts about
8 MiB against create_string.
"""
import sys


def create_string(size: int) -> str:
    return ' ' * size


def main() -> int:
    strings = []
    for _ in range(8):
        strings.append(create_string(1024 ** 2))
    while strings:
        strings.pop()
    return 0


if __name__ == '__main__':
    sys.exit(main())
