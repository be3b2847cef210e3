"""The original pymemtrace's small utilities: redirect_stdout and util.gnuplot."""
import argparse
import io
import os
import shutil
import subprocess
import sys
import textwrap

import pytest

from pymemtrace import redirect_stdout
from pymemtrace.util import gnuplot



def test_stdout_redirector_catches_python_and_c_writes():
    # In a fresh interpreter: under pytest sys.stdout is pytest's, not fd 1.
    code = textwrap.dedent("""
        import ctypes, io, sys
        from pymemtrace import redirect_stdout
        captured = io.BytesIO()
        with redirect_stdout.stdout_redirector(captured):
            print("from python")
            ctypes.CDLL(None).printf(b"from C %d\\n", 42)
        print("after", sys.stdout.closed)
        sys.stderr.write(repr(captured.getvalue()))
    """)
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)
    assert out.returncode == 0, out.stderr
    assert out.stderr == repr(b"from python\nfrom C 42\n")
    assert out.stdout == "after False\n"


def test_stderr_redirector_catches_debugmallocstats_into_text():
    captured = io.StringIO()
    with redirect_stdout.stderr_redirector(captured):
        sys._debugmallocstats()
    assert captured.getvalue().startswith("Small block threshold")


def test_redirector_restores_the_descriptor_after_an_exception(capfd):
    captured = io.BytesIO()
    with pytest.raises(KeyError):
        with redirect_stdout.stdout_redirector(captured):
            os.write(1, b"inside\n")
            raise KeyError("x")
    os.write(1, b"after\n")
    assert captured.getvalue() == b"inside\n"
    assert capfd.readouterr().out == "after\n"
    with pytest.raises(TypeError, match="write"):
        with redirect_stdout.stdout_redirector(42):
            pass


def test_create_gnuplot_dat_aligns_columns():
    text = gnuplot.create_gnuplot_dat([("t", "rss"), (0.5, 1024), (10.25, 7)])
    assert text.splitlines() == ["t      rss", "0.5    1024", "10.25  7"]
    with pytest.raises(ValueError, match="not rectangular"):
        gnuplot.create_gnuplot_dat([(1, 2), (3,)])


def test_fragments_are_templates():
    assert 'set title "T"' in gnuplot.PLOT.format(title="T")
    for frag, axis in ((gnuplot.X_LOG, "x"), (gnuplot.Y_LOG, "y"), (gnuplot.Y2_LOG, "y2")):
        assert f'set {axis}label "L"' in frag.format(label="L")


@pytest.mark.skipif(shutil.which("gnuplot") is None, reason="gnuplot is not installed")
def test_invoke_gnuplot_draws_a_png(tmp_path):
    assert gnuplot.version().startswith(b"gnuplot")
    plt = (gnuplot.PLOT.format(title="rss") + 'set terminal png\nset output "m.png"\n'
           'plot "m.dat" using 1:2 with lines\n')
    assert gnuplot.invoke_gnuplot(str(tmp_path / "out"), "m", [(0, 1), (1, 4), (2, 9)], plt) == 0
    assert (tmp_path / "out" / "m.dat").read_text().startswith("0  1")
    assert (tmp_path / "out" / "m.png").stat().st_size > 100
    assert gnuplot.write_test_file(str(tmp_path), "svg") == 0
    assert (tmp_path / "test.svg").exists()
    parser = argparse.ArgumentParser()
    gnuplot.add_gnuplot_to_argument_parser(parser)
    assert parser.parse_args(["--gnuplot", "d"]).gnuplot == "d"


def test_no_gnuplot_is_a_clear_error(monkeypatch, tmp_path):
    monkeypatch.setenv("PATH", str(tmp_path))
    assert gnuplot.version() == b""
    with pytest.raises(ValueError, match="not installed"):
        gnuplot.add_gnuplot_to_argument_parser(argparse.ArgumentParser())
    assert gnuplot.invoke_gnuplot(str(tmp_path), "n", [(1, 2)], "plot 1\n") == -1
    assert (tmp_path / "n.dat").exists()


def test_ref_trace_analyse_message_regex():
    from pymemtrace.util import ref_trace_analyse as rta
    m = rta.RE_COMPILE_LOG_FILE_MSG.match("MSG:     0.000500 # Detaching this wrapper. New file: /x y.log  ")
    assert m.groups() == ("0.000500", "Detaching this wrapper. New file: /x y.log")
    assert rta.RE_COMPILE_LOG_FILE_MSG.match("NEW:     0.000100     0x7f00 1 int") is None
