"""Readers: one module per log or capture format that pymemtrace's tools write.

* :mod:`.cpmt_log`: cPyMemTrace's Profile / Trace logs (records; their summary in one pass in C, ``_cpmtsum``);
* :mod:`.process_log`: ``pymemtrace process`` / ``log_process`` logs (JSON lines and the seed's form);
* :mod:`.malloc_native`: a capture's allocations by whole native + Python stack, symbolised (``_mallocstacks``);
* :mod:`.malloc_capture`: ``pymemtrace malloc`` captures (through the C reader ``_malloccap``);
* :mod:`.malloc_stacks`: the same aggregated by whole stack (peak, leaks, ranges, threads);
* :mod:`.bpftrace_log`: the output of the bpftrace scripts.

Readers turn bytes into data and nothing else: formatting is in :mod:`pymemtrace.reporters`,
the command line in :mod:`pymemtrace.commands`.  Each takes regular files only, bounds what it
holds, and raises one documented exception type (a ValueError) naming what was wrong.
"""
