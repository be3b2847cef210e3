"""Write a table as gnuplot data, a plot script beside it, and run gnuplot.

The original pymemtrace's helpers for command line tools that plot:
:func:`add_gnuplot_to_argument_parser` (``--gnuplot DIR``), :func:`version`,
:func:`create_gnuplot_dat`, :func:`invoke_gnuplot`, :func:`write_test_file`
and the script fragments :data:`PLOT`, :data:`X_LOG`, :data:`Y_LOG`,
:data:`Y2_LOG` (``str.format`` templates with ``{title}`` / ``{label}``).
``pymemtrace process plot`` uses its own writer (``pymemtrace.reporters.process``).
"""
from __future__ import annotations

import argparse
import logging
import os
import shutil
import subprocess
import typing

__all__ = ["add_gnuplot_to_argument_parser", "version", "create_gnuplot_dat", "invoke_gnuplot",
           "write_test_file", "PLOT", "X_LOG", "Y_LOG", "Y2_LOG"]

logger = logging.getLogger(__name__)

#: Seconds gnuplot may take (fits can be slow) before it is stopped.
TIMEOUT = 10.0


def version() -> bytes:
    """gnuplot's version line, e.g. ``b'gnuplot 5.4 patchlevel 4'``; b'' if not installed."""
    exe = shutil.which("gnuplot")
    if exe is None:
        return b""
    try:
        out = subprocess.run([exe, "--version"], capture_output=True, timeout=TIMEOUT, check=False)
    except (OSError, subprocess.TimeoutExpired):
        return b""
    return out.stdout.strip()


def add_gnuplot_to_argument_parser(parser: argparse.ArgumentParser) -> None:
    """Add ``--gnuplot DIR`` (``args.gnuplot``); ValueError if gnuplot is not installed."""
    v = version()
    if not v:
        raise ValueError("--gnuplot needs gnuplot, which is not installed (not on PATH)")
    logger.info("gnuplot version: %s", v.decode("ascii", "replace"))
    parser.add_argument("--gnuplot", type=str, metavar="DIR",
                        help="write gnuplot data and plots into DIR")


def create_gnuplot_dat(table: typing.Sequence[typing.Sequence[typing.Any]]) -> str:
    """The rows of *table* as gnuplot data: columns left-aligned, space separated.

    ValueError if the rows do not all have the same number of columns."""
    widths = {len(row) for row in table}
    if len(widths) > 1:
        raise ValueError(f"table is not rectangular: rows have {sorted(widths)} columns")
    if not table:
        return ""
    cells = [[str(v) for v in row] for row in table]
    width = [max(len(row[i]) for row in cells) + 2 for i in range(len(cells[0]))]
    return "\n".join("".join(c.ljust(w) for c, w in zip(row, width)).rstrip() for row in cells)


def _run(args: typing.List[str], cwd: str, stdin: typing.Optional[bytes] = None) -> int:
    try:
        proc = subprocess.run(args, cwd=cwd, input=stdin, capture_output=True,
                              timeout=TIMEOUT, check=False)
    except subprocess.TimeoutExpired:
        logger.error("gnuplot did not finish in %.0f s in %s: stopped", TIMEOUT, cwd)
        return -1
    except OSError as err:
        logger.error("gnuplot could not run: %s", err)
        return -1
    if proc.returncode or proc.stderr:
        logger.error("gnuplot (exit %d): %s", proc.returncode,
                     proc.stderr.decode("utf-8", "replace").strip())
    return proc.returncode


def invoke_gnuplot(path: str, name: str, table: typing.Sequence[typing.Sequence[typing.Any]],
                   plt: str) -> int:
    """Write ``NAME.dat`` (*table*) and ``NAME.plt`` (*plt*) into directory *path*
    (created if needed), run gnuplot on the script there, return its exit code
    (-1 if it could not run or timed out)."""
    os.makedirs(path, exist_ok=True)
    with open(os.path.join(path, f"{name}.dat"), "w") as f:
        f.write(create_gnuplot_dat(table) + "\n")
    with open(os.path.join(path, f"{name}.plt"), "w") as f:
        f.write(plt)
    exe = shutil.which("gnuplot")
    if exe is None:
        logger.error("gnuplot is not installed: wrote %s.dat and %s.plt in %s", name, name, path)
        return -1
    return _run([exe, f"{name}.plt"], cwd=path)


def write_test_file(path: str, typ: str) -> int:
    """Have gnuplot draw its test page as ``test.TYP`` in *path* (e.g. typ='svg');
    return its exit code (-1 if it could not run)."""
    exe = shutil.which("gnuplot")
    if exe is None:
        return -1
    script = f'set terminal {typ}\nset output "test.{typ}"\ntest\n'
    return _run([exe], cwd=path, stdin=script.encode("ascii"))


#: Start of a plot script: grid, title, whitespace-separated data, NaN as missing.
PLOT = """set grid
set title "{title}"
set pointsize 1
set datafile separator whitespace
set datafile missing "NaN"
"""

#: A logarithmic x axis labelled {label}.
X_LOG = """set logscale x
set xlabel "{label}"
"""

#: A logarithmic y axis labelled {label}.
Y_LOG = """set logscale y
set ylabel "{label}"
"""

#: A logarithmic second y axis labelled {label}.
Y2_LOG = """set logscale y2
set y2label "{label}"
set y2tics
"""
