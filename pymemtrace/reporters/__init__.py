"""Reporters: text, JSON and plots made from what :mod:`pymemtrace.readers` read.

* :mod:`.process`: the process log's table, gnuplot and matplotlib plots;
* :mod:`.malloc_native`: those stacks by bytes (``report --native``);
* :mod:`.malloc_text`: the malloc capture's text report;
* :mod:`.malloc_views`: its views by stack (peak, leaks, all, time, summary) as text and JSON;
* :mod:`.flamegraph`: its flame graph, one self-contained HTML page (``templates/``);
* :mod:`.malloc_export`: pprof and collapsed stacks;
* :mod:`.bpftrace`: the bpftrace output's text report.
"""
