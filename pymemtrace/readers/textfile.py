"""Open a log for reading the way every text reader must: regular files only,
lines of bounded length.

A device (``/dev/zero``), a FIFO or a directory given as a log would make a
reader wait forever or grow without bound; :func:`open_regular` refuses it with
:class:`NotALogFile` (a ValueError) without reading, and opening a FIFO does
not wait for a writer.  :func:`bounded_lines` yields a file's lines, each cut
to ``MAX_LINE + 1`` characters at most (the rest of a longer line is read and
dropped, never kept), so a reader's memory is bounded by what it keeps.
"""
from __future__ import annotations

import os
import stat
import typing

__all__ = ["MAX_LINE", "NotALogFile", "open_regular", "bounded_lines"]

#: The longest line a reader looks at; longer ones are malformed records.
MAX_LINE = 1 << 20


class NotALogFile(ValueError):
    """The path is not a regular file (a device, a FIFO, a directory)."""


def open_regular(path: typing.Union[str, os.PathLike]) -> typing.BinaryIO:
    """*path* opened for binary reading.  Raises OSError if it cannot be
    opened and NotALogFile if it is not a regular file."""
    # O_NONBLOCK: opening a FIFO must not wait for a writer
    fd = os.open(path, os.O_RDONLY | os.O_NONBLOCK | getattr(os, "O_CLOEXEC", 0))
    try:
        if not stat.S_ISREG(os.fstat(fd).st_mode):
            raise NotALogFile(f"{os.fspath(path)} is not a regular file")
        os.set_blocking(fd, True)
        return os.fdopen(fd, "rb")
    except BaseException:
        os.close(fd)
        raise


def bounded_lines(f: typing.BinaryIO) -> typing.Iterator[str]:
    """The lines of binary file *f* as text (undecodable bytes replaced), each
    with its newline if it had one.  A line longer than MAX_LINE bytes is
    yielded cut to MAX_LINE + 1 characters (then its newline, if it had one):
    longer than MAX_LINE, so a reader can tell "too long" from "cut short at
    the end of the file" (no newline)."""
    while True:
        line = f.readline(MAX_LINE + 1)
        if not line:
            return
        if len(line) > MAX_LINE and not line.endswith(b"\n"):
            ended = False
            while True:                     # drop the rest of the line
                rest = f.readline(MAX_LINE)
                if not rest:
                    break
                if rest.endswith(b"\n"):
                    ended = True
                    break
            # one character per byte, so the text stays longer than MAX_LINE
            yield line.decode("latin-1") + ("\n" if ended else "")
            continue
        yield line.decode("utf-8", errors="replace")
