"""pymemtrace: where a Python program's memory goes, at low cost.

Tools (see the README):

* ``process``: RSS and friends of any process over time, sampled in C.
* ``cPyMemTrace``: RSS at every Python/C call and return, written by C.
* ``trace_malloc``: a compensated wrapper around :mod:`tracemalloc`.
* ``debug_malloc_stats``: diffs of the small-object allocator's statistics.
* ``pymemtrace malloc``: every malloc/free, attributed to Python lines.
* ``pymemtrace bpftrace``: the Linux versions of the DTrace scripts.
"""

__version__ = "0.1.0"
