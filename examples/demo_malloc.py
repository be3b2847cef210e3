"""``make demo`` part: `pymemtrace malloc` on examples/ex_malloc.py.

Runs the example under the preload tracer (capture ``ex_malloc.cap`` in the
current directory, the demo output directory), then prints the report: the
totals, the Python sites, the deliberate leak in c_buffer_cache() and the
largest single allocations.
"""
import os
import pathlib
import subprocess
import sys

HERE = pathlib.Path(__file__).resolve().parent


def main() -> int:
    cap = os.path.abspath("ex_malloc.cap")
    run = [sys.executable, "-m", "pymemtrace", "malloc", "-o", cap, "--",
           sys.executable, str(HERE / "ex_malloc.py")]
    print("$ pymemtrace malloc -o ex_malloc.cap -- python examples/ex_malloc.py", flush=True)
    rc = subprocess.call(run)
    if rc != 0:
        return rc
    print("\n$ pymemtrace malloc report ex_malloc.cap --view all --top 8", flush=True)
    return subprocess.call([sys.executable, "-m", "pymemtrace", "malloc", "report", cap,
                            "--view", "all", "--top", "8"])


if __name__ == "__main__":
    sys.exit(main())
