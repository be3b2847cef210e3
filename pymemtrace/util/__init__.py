"""Helpers the original pymemtrace keeps under ``pymemtrace.util`` (gnuplot)."""
