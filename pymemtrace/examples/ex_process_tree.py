"""Example: worker processes that take and give back memory, watched as a tree.

Starts a pool of worker processes, each holding strings of a few MiB for a
few rounds, and meanwhile shows this process and its workers with
:func:`pymemtrace.process_tree.log_process_tree` every 0.2 s.  To watch
another program instead: ``python -m pymemtrace.process_tree -p PID -a``.
"""
import argparse
import multiprocessing
import random
import sys
import time


def sub_process(task_id: int, size: int = 8 * 1024 ** 2, rounds: int = 3) -> int:
    """Hold a string of about *size* bytes for a moment, *rounds* times."""
    total = 0
    for _ in range(rounds):
        s = " " * random.randint(size // 2, size)
        total += len(s)
        time.sleep(0.2 + random.random() / 5)
        del s
        time.sleep(0.1)
    return total


def main(argv=None) -> int:
    from pymemtrace import process_tree

    ap = argparse.ArgumentParser(prog="python -m pymemtrace.examples.ex_process_tree")
    ap.add_argument("--processes", type=int, default=3, help="worker processes [default: 3]")
    ap.add_argument("--tasks", type=int, default=3, help="tasks for them [default: 3]")
    args = ap.parse_args(argv)
    with multiprocessing.Pool(processes=args.processes) as pool:
        result = pool.map_async(sub_process, range(args.tasks))
        process_tree.log_process_tree(
            multiprocessing.current_process().pid, 0.2,
            [process_tree.COLUMNS[c] for c in ("rss", "cpu", "threads", "status")],
            until=result.ready)
        total = sum(result.get())
    print(f"{args.tasks} tasks in {args.processes} processes held {total:,d} bytes in all")
    return 0


if __name__ == "__main__":
    sys.exit(main())
