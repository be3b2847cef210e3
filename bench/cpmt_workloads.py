"""Workloads for the cPyMemTrace benchmarks (bench_cpymemtrace.py, callgrind_cpymemtrace.py).

Each is the kind of code real programs are full of; ``WORKLOADS[name](scale)`` runs it.
Scale 1 is short (untraced on CPython 3.11 here: fib 0.27 ms, churn ~4 ms, json ~12 ms,
objects ~4 ms): enough for instruction counts (callgrind_cpymemtrace.py runs scale 1 under
valgrind).  For CPU and wall time, bench_cpymemtrace.py runs ``TIMED_SCALE[name]``, ~50-60
ms untraced each, so that a time stamp's resolution, a context switch or the tracer's fixed
cost per context are small against the body:

  * fib:    recursion, fib(17) per scale: calls and returns, no allocation.
  * churn:  strings of 0 to 2 KiB appended to a list cleared every 1000: allocation
            churn that glibc and pymalloc serve by reusing what was just freed.
  * json:   a JSON round trip (dumps + loads) of a ~0.5 MB document.
  * objects: a class-heavy object graph: 5000 nodes with attributes, children and
            parent links, built, walked and dropped.
"""
import json
import random

_rnd = random.Random(1)
_SIZES = [_rnd.randrange(0, 2048) for _ in range(1000)]
_DOC = {f"key{i}": {"id": i, "name": f"item {i}" * 3, "tags": [str(j) for j in range(5)],
                    "score": i / 7} for i in range(2500)}


def fib(n):
    return n if n < 2 else fib(n - 1) + fib(n - 2)


def churn(scale=1):
    lst = []
    sizes = _SIZES
    for i in range(20000 * scale):
        lst.append(" " * sizes[i % 1000])
        if len(lst) == 1000:
            lst.clear()


def json_round_trip(scale=1):
    for _ in range(scale):
        json.loads(json.dumps(_DOC))


class Node:
    def __init__(self, i, parent):
        self.i = i
        self.parent = parent
        self.children = []
        self.label = f"n{i}"

    def depth(self):
        d, p = 0, self.parent
        while p is not None:
            d, p = d + 1, p.parent
        return d


def objects(scale=1):
    for _ in range(scale):
        nodes = [Node(0, None)]
        for i in range(1, 5000):
            parent = nodes[(i - 1) // 4]
            node = Node(i, parent)
            parent.children.append(node)
            nodes.append(node)
        sum(n.depth() for n in nodes[::50])
        del nodes


def recursion(scale=1):
    for _ in range(scale):
        fib(17)


WORKLOADS = {"fib": recursion, "churn": churn, "json": json_round_trip, "objects": objects}
# The scale for CPU / wall timing: ~50-60 ms untraced each (CPython 3.11.7 here).
TIMED_SCALE = {"fib": 200, "churn": 12, "json": 4, "objects": 12}
