"""The original pymemtrace's smallest example of the reference tracer hook.

``RefTraceCount()`` starts counting object creations (``count_new()``) and
destructions (``count_del()``) as it is created, and stops when it is freed.
It is :class:`pymemtrace.reference_tracing.ReferenceTracingSimple` without
the ``with`` block.  CPython 3.13+; before, creating one raises RuntimeError.
"""
from pymemtrace.reference_tracing import ReferenceTracingSimple

__all__ = ["RefTraceCount"]


class RefTraceCount:
    """Counts object creations and destructions from its creation on."""

    def __init__(self) -> None:
        self._counting = False
        self._simple = ReferenceTracingSimple()
        self._simple.__enter__()
        self._counting = True

    def count_new(self) -> int:
        return self._simple.count_new()

    def count_del(self) -> int:
        return self._simple.count_del()

    def close(self) -> None:
        """Stop counting (also done when the object is freed); the counts stay."""
        if getattr(self, "_counting", False):
            self._counting = False
            self._simple.__exit__(None, None, None)

    def __del__(self) -> None:
        self.close()

