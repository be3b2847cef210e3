"""The package installs, its C extension loads, and the command line answers."""
import os
import subprocess
import sys

import psutil

from pymemtrace import cPyMemTrace


def test_rss_agrees_with_kernel():
    ours = cPyMemTrace.rss()
    theirs = psutil.Process().memory_info().rss
    assert abs(ours - theirs) <= 256 * 1024
    assert cPyMemTrace.rss_peak() >= ours - 256 * 1024


def test_rss_follows_a_large_allocation():
    before = cPyMemTrace.rss()
    block = bytearray(64 * 1024 * 1024)  # zero-filled: touched by calloc+memset? touch it
    block[:: 4096] = b"x" * len(block[:: 4096])
    after = cPyMemTrace.rss()
    assert after - before >= 60 * 1024 * 1024
    del block


def test_command_help_and_version():
    out = subprocess.run([sys.executable, "-m", "pymemtrace", "--version"],
                         capture_output=True, text=True, check=True)
    assert out.stdout.startswith("pymemtrace ")
    out = subprocess.run([os.path.join(os.path.dirname(sys.executable), "pymemtrace"), "--help"],
                         capture_output=True, text=True, check=True)
    assert "SUBCOMMAND" in out.stdout


def test_user_error_names_the_subcommand(tmp_path):
    # a tool's own positional named 'command' must not replace the subcommand's name
    bad = tmp_path / "not-a-capture"
    bad.write_text("hello\n")
    r = subprocess.run([sys.executable, "-m", "pymemtrace", "malloc", "report", str(bad)],
                       capture_output=True, text=True)
    assert r.returncode == 2
    assert r.stderr.startswith("pymemtrace malloc: error: "), r.stderr
    assert "Traceback" not in r.stderr
