"""Open a log file to read, refusing what is not one, with errors that name it.

Used by the readers of the original pymemtrace's names (process logs,
DTrace logs): a missing file is a FileNotFoundError "no such WHAT: PATH", a
directory, FIFO or device a ValueError (a FIFO is never waited on, a device
never read without end).
"""
from __future__ import annotations

import errno
import os
import stat
from typing import Any, TextIO


def open_log(path: Any, what: str = "log file", encoding: str = "utf-8", errors: str = "replace") -> TextIO:
    """The regular file at *path*, open for reading text."""
    if not isinstance(path, (str, os.PathLike)):
        raise TypeError(f"log_path must be a path, not {type(path).__name__}")
    path = os.fspath(path)
    try:
        # O_NONBLOCK: opening a FIFO must not wait for a writer; it is refused below
        fd = os.open(path, os.O_RDONLY | os.O_NONBLOCK | os.O_CLOEXEC)
    except FileNotFoundError:
        raise FileNotFoundError(errno.ENOENT, f"no such {what}: {path}") from None
    try:
        if not stat.S_ISREG(os.fstat(fd).st_mode):
            raise ValueError(f"{path} is not a regular file (not a {what})")
        os.set_blocking(fd, True)
        return open(fd, encoding=encoding, errors=errors, closefd=True)
    except BaseException:
        os.close(fd)
        raise
