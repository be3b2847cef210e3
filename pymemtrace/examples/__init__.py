"""Runnable examples of each tool, named as the original pymemtrace's are.

Run one with ``python -m pymemtrace.examples.ex_trace_malloc`` (and so on):

* ``ex_trace_malloc``: what a block allocated, by line, with tracemalloc.
* ``ex_debug_malloc_stats``: the small-object allocator before and after.
* ``ex_cPyMemTrace``: RSS at every call and return, to a log file.
* ``ex_cPyMemTrace_RefTrace``: every object created and freed (3.13+).
* ``ex_memory_exercise``: memory from each allocator, kept and released.
* ``ex_process``: RSS of this process sampled over time, with labels.
* ``ex_process_decorator``: the same around one function (``log_process_dec``).
* ``ex_process_tree``: worker processes watched as a tree (``process_tree``).
* ``ex_dtrace``: every malloc and free traced with bpftrace (root), reconciled.
* ``example``: a small workload to run under any of the tracers.
"""
