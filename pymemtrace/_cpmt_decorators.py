"""Decorators that run a function under :class:`cPyMemTrace.Profile` / ``Trace``.

Reached as ``cPyMemTrace.profile`` and ``cPyMemTrace.trace``::

    from pymemtrace import cPyMemTrace

    @cPyMemTrace.profile(0)            # or @cPyMemTrace.profile
    def build():
        return [b' ' * 1024 ** 2 for _ in range(8)]

Each call of the decorated function gets its own context (and so its own log).
"""
from __future__ import annotations

import functools
import os
import typing

from pymemtrace import cPyMemTrace

__all__ = ["profile", "trace"]

_F = typing.TypeVar("_F", bound=typing.Callable[..., typing.Any])


def _decorator(cls, name: str, d_rss_trigger, message, filepath):
    if callable(d_rss_trigger) and message is None and filepath is None:
        # Used bare: @cPyMemTrace.profile
        return _decorator(cls, name, -1, None, None)(d_rss_trigger)
    # Check the arguments now, at decoration time, with the constructor's own messages.
    cls(d_rss_trigger, message, filepath)

    def decorate(fn: _F) -> _F:
        @functools.wraps(fn)
        def wrapper(*args, **kwargs):
            with cls(d_rss_trigger, message, filepath):
                return fn(*args, **kwargs)
        return typing.cast(_F, wrapper)
    return decorate


def profile(d_rss_trigger: typing.Union[int, typing.Callable] = -1,
            message: typing.Optional[str] = None,
            filepath: typing.Union[str, bytes, os.PathLike, None] = None):
    """Run the decorated function under ``cPyMemTrace.Profile(d_rss_trigger, message, filepath)``."""
    return _decorator(cPyMemTrace.Profile, "profile", d_rss_trigger, message, filepath)


def trace(d_rss_trigger: typing.Union[int, typing.Callable] = -1,
          message: typing.Optional[str] = None,
          filepath: typing.Union[str, bytes, os.PathLike, None] = None):
    """Run the decorated function under ``cPyMemTrace.Trace(d_rss_trigger, message, filepath)``."""
    return _decorator(cPyMemTrace.Trace, "trace", d_rss_trigger, message, filepath)
