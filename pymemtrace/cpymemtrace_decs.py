"""The original pymemtrace's decorator module, for code written against it.

``profile(...)`` and ``trace(...)`` run each call of the decorated function
inside its own :class:`cPyMemTrace.Profile` / :class:`cPyMemTrace.Trace`
(with the arguments given to the decorator)::

    from pymemtrace import cpymemtrace_decs

    @cpymemtrace_decs.profile(d_rss_trigger=0, message="build")
    def build():
        ...

They are the decorators ``cPyMemTrace.profile`` and ``cPyMemTrace.trace``
(which also work bare, without the parentheses).
"""
from __future__ import annotations

from pymemtrace._cpmt_decorators import profile, trace
from pymemtrace.reference_tracing import reference_tracing  # the original's third decorator (CPython 3.13+)

__all__ = ["profile", "trace"]
