"""pymemtrace: where a Python program's memory goes, at low cost.

Tools (see the README):

* ``process``: RSS and friends of any process over time, sampled in C.
* ``cPyMemTrace``: RSS at every Python/C call and return, written by C.
* ``trace_malloc``: a compensated wrapper around :mod:`tracemalloc`.
* ``debug_malloc_stats``: diffs of the small-object allocator's statistics.
* ``reference_tracing``: every object creation and destruction (3.13+), also
  as ``cPyMemTrace.ReferenceTracing`` like the original pymemtrace.
* ``pymemtrace malloc``: every malloc/free, attributed to Python lines.
* ``pymemtrace bpftrace``: the Linux versions of the DTrace scripts.
"""

__version__ = "0.1.0"


def _attach_reference_tracing() -> None:
    # The original pymemtrace has ReferenceTracing in cPyMemTrace; ours is its
    # own extension (pymemtrace._reftrace), made visible there too.
    try:
        from pymemtrace import cPyMemTrace, reference_tracing
    except ImportError:     # a partial build: the other tools still import
        return
    reference_tracing.attach_to(cPyMemTrace)


_attach_reference_tracing()
