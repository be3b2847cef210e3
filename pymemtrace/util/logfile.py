"""Open a log file to read, refusing what is not one, with errors that name it.

Used by the readers of the original pymemtrace's names (process logs,
DTrace logs): a missing file is a FileNotFoundError "no such WHAT: PATH", a
directory, FIFO or device a ValueError (a FIFO is never waited on, a device
never read without end).
"""
from __future__ import annotations

import errno
import io
import os
from typing import Any, TextIO

from pymemtrace.readers.textfile import NotALogFile, open_regular


def open_log(path: Any, what: str = "log file", encoding: str = "utf-8", errors: str = "replace") -> TextIO:
    """The regular file at *path*, open for reading text (the opening and the
    check are readers.textfile's, shared with every log reader)."""
    if not isinstance(path, (str, os.PathLike)):
        raise TypeError(f"log_path must be a path, not {type(path).__name__}")
    path = os.fspath(path)
    try:
        raw = open_regular(path)
    except FileNotFoundError:
        raise FileNotFoundError(errno.ENOENT, f"no such {what}: {path}") from None
    except NotALogFile:
        raise ValueError(f"{path} is not a regular file (not a {what})") from None
    return io.TextIOWrapper(raw, encoding=encoding, errors=errors)
