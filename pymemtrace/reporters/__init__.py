"""Reporters: text, JSON and plots made from what :mod:`pymemtrace.readers` read.

* :mod:`.process`: the process log's table, gnuplot and matplotlib plots;
* :mod:`.malloc_text`: the malloc capture's text report;
* :mod:`.bpftrace`: the bpftrace output's text report.
"""
