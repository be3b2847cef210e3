"""The seed's cPyMemTrace example, verbatim (section "pymemtrace cPyMemTrace").

Run: python examples/ex_cPyMemTrace.py
It writes a log YYYYMMDD_HHMMSS_PID_P_1_PY<version>.log in the current directory.
"""
from pymemtrace import cPyMemTrace

def create_string(l: int) -> str:
    return ' ' * l

with cPyMemTrace.Profile():
    l = []
    for i in range(8):
        l.append(create_string(1024**2))
    while len(l):
        l.pop()
