"""Capture what a block writes to file descriptor 1 or 2, C code included.

``sys.stdout`` redirection (:func:`contextlib.redirect_stdout`) only sees
Python's writes; C code (``printf``, ``sys._debugmallocstats()``) writes to
the file descriptor.  These context managers point the descriptor at a
temporary file for the block and then copy what was written into *stream*::

    import io
    from pymemtrace import redirect_stdout

    captured = io.BytesIO()
    with redirect_stdout.stdout_redirector(captured):
        os.system("echo hello")            # or a C extension's printf
    captured.getvalue()                     # b'hello\\n'

*stream* may be binary (``io.BytesIO``, a file opened ``'wb'``) or text
(``io.StringIO``: the bytes are decoded as UTF-8, undecodable ones replaced).
The names are the original pymemtrace's.  Unlike the original, ``sys.stdout``
is flushed but never closed or replaced, so references to it stay valid.
"""
from __future__ import annotations

import contextlib
import ctypes
import io
import os
import sys
import tempfile
import typing

__all__ = ["stdout_redirector", "stderr_redirector"]

_libc = ctypes.CDLL(None)


def _flush_all(pystream) -> None:
    try:
        pystream.flush()
    except (AttributeError, ValueError, OSError):
        pass
    _libc.fflush(None)      # every C stdio stream


@contextlib.contextmanager
def _redirect_fd(fd: int, pystream_name: str, stream: typing.IO) -> typing.Iterator[None]:
    if not hasattr(stream, "write"):
        raise TypeError(f"stream must have a write() method (io.BytesIO, io.StringIO, a file), "
                        f"not {type(stream).__name__}")
    saved = os.dup(fd)
    try:
        with tempfile.TemporaryFile(mode="w+b") as tmp:
            _flush_all(getattr(sys, pystream_name))
            os.dup2(tmp.fileno(), fd)
            try:
                yield
            finally:
                _flush_all(getattr(sys, pystream_name))
                os.dup2(saved, fd)
                tmp.seek(0)
                data = tmp.read()
                if isinstance(stream, io.TextIOBase):
                    stream.write(data.decode("utf-8", "replace"))
                else:
                    stream.write(data)
    finally:
        os.close(saved)


def stdout_redirector(stream: typing.IO):
    """Context manager: what the block writes to fd 1 (Python and C) goes to *stream*."""
    return _redirect_fd(1, "stdout", stream)


def stderr_redirector(stream: typing.IO):
    """Context manager: what the block writes to fd 2 (Python and C) goes to *stream*."""
    return _redirect_fd(2, "stderr", stream)
