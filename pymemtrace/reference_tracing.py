"""Every object creation and destruction, by type (CPython 3.13+).

:class:`ReferenceTracing` and :class:`ReferenceTracingSimple` are context
managers over the interpreter's reference tracer hook
(``PyRefTracer_SetTracer``, new in CPython 3.13).  They are C types
(``src/ext/reftrace/``): the per-event work never runs Python.  They are also
reachable as ``pymemtrace.cPyMemTrace.ReferenceTracing`` and
``pymemtrace.cPyMemTrace.ReferenceTracingSimple``, as in the original
pymemtrace, with the module functions below::

    from pymemtrace import cPyMemTrace

    with cPyMemTrace.ReferenceTracing(include_tp_names=["MyClass"]) as rt:
        ...
        print(rt.live_object_counts())    # {'MyClass': 3}
    print(open(path).read())              # NEW:/DEL: rows, LIVE: at the end

``ReferenceTracing(message=None, filepath=None, include_builtins=False,
exclude_tp_names=(), include_tp_names=(), gc_collect_on_exit=2)`` writes a
log (``filepath``, or ``YYYYMMDD_HHMMSS_PID_O_<depth>_PY<version>.log`` in
the current directory) with one row per creation (``NEW:``) and destruction
(``DEL:``): seconds since the start, address, live objects of that type, type
name, Python file, line and function, RSS and its change.  ``LIVE:`` lines
at the end list the types with objects created in the block and still alive:
the candidates for a leak.  ``include_builtins=False`` leaves out the static
types of the builtins (``int``, ``str``, ``list``, ``range_iterator``...);
``include_tp_names`` logs only the named types; ``exclude_tp_names`` leaves
the named ones out.  ``gc_collect_on_exit`` is the generation collected
before tracing stops (negative: none), so that garbage cycles show as
``DEL:``.  Methods: ``count_new()``, ``count_del()``,
``live_object_counts()``, ``log_file_path()`` (None after the block),
``write_message_to_log(text)``, ``suspend()``, ``resume()``.

``ReferenceTracingSimple()`` only counts (``count_new()``, ``count_del()``).

The interpreter has one tracer slot: nested blocks form a stack, the
innermost gets the events and the outer ones' logs say when they were
detached and re-attached.  Events of every thread go to the innermost.

Before 3.13 (and on free-threaded builds) everything here imports, and using
it raises RuntimeError saying the interpreter lacks the hook.
"""
from __future__ import annotations

import functools
import typing

from pymemtrace import _reftrace

__all__ = [
    "AVAILABLE", "ReferenceTracing", "ReferenceTracingSimple",
    "reference_tracing_wrapper_depth", "reference_tracing_simple_wrapper_depth",
    "reference_tracing_log_path", "reference_tracing_write_message_to_log",
    "reference_tracing_live_object_counts", "reference_tracing",
]

#: True if this interpreter has the reference tracer hook.
AVAILABLE: bool = bool(_reftrace.available)

ReferenceTracing = _reftrace.ReferenceTracing
ReferenceTracingSimple = _reftrace.ReferenceTracingSimple

_FUNCTIONS = (
    "reference_tracing_wrapper_depth", "reference_tracing_simple_wrapper_depth",
    "reference_tracing_log_path", "reference_tracing_write_message_to_log",
    "reference_tracing_live_object_counts",
)


def _missing_hook(name: str) -> typing.Callable:
    def unavailable(*args, **kwargs):
        ReferenceTracingSimple()    # raises RuntimeError naming the missing hook
        raise AssertionError("unreachable")  # pragma: no cover
    unavailable.__name__ = name
    unavailable.__doc__ = f"{name}(): needs CPython 3.13+ (raises RuntimeError here)."
    return unavailable


if AVAILABLE:
    reference_tracing_wrapper_depth = _reftrace.reference_tracing_wrapper_depth
    reference_tracing_simple_wrapper_depth = _reftrace.reference_tracing_simple_wrapper_depth
    reference_tracing_log_path = _reftrace.reference_tracing_log_path
    reference_tracing_write_message_to_log = _reftrace.reference_tracing_write_message_to_log
    reference_tracing_live_object_counts = _reftrace.reference_tracing_live_object_counts
else:
    reference_tracing_wrapper_depth = _missing_hook("reference_tracing_wrapper_depth")
    reference_tracing_simple_wrapper_depth = _missing_hook("reference_tracing_simple_wrapper_depth")
    reference_tracing_log_path = _missing_hook("reference_tracing_log_path")
    reference_tracing_write_message_to_log = _missing_hook("reference_tracing_write_message_to_log")
    reference_tracing_live_object_counts = _missing_hook("reference_tracing_live_object_counts")


def reference_tracing(*dec_args, **dec_kwargs) -> typing.Callable:
    """Decorator: run each call inside its own ``ReferenceTracing(*dec_args, **dec_kwargs)``.

    ``@reference_tracing()`` or ``@reference_tracing(message="load", include_tp_names=["Row"])``
    (the original pymemtrace's ``cpymemtrace_decs.reference_tracing``).
    """
    if len(dec_args) == 1 and not dec_kwargs and callable(dec_args[0]):
        return reference_tracing()(dec_args[0])     # used bare: @reference_tracing

    def decorator(fn: typing.Callable) -> typing.Callable:
        @functools.wraps(fn)
        def wrapper(*args, **kwargs):
            with ReferenceTracing(*dec_args, **dec_kwargs):
                return fn(*args, **kwargs)
        return wrapper
    return decorator


def attach_to(module) -> None:
    """Make the names above attributes of *module* (cPyMemTrace), as in the original."""
    for name in ("ReferenceTracing", "ReferenceTracingSimple") + _FUNCTIONS:
        if not hasattr(module, name):
            setattr(module, name, globals()[name])
