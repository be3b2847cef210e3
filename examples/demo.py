"""``make demo``: run each tool's demo on its bundled example, in turn.

Each tool contributes ``examples/demo_<tool>.py`` with a ``main() -> int``;
this driver runs them in a fixed order inside a fresh output directory
(``demo-output/``) and says where everything went.
"""
import importlib.util
import os
import pathlib
import sys
import time

HERE = pathlib.Path(__file__).resolve().parent
ORDER = ("cPyMemTrace", "process", "trace_malloc", "debug_malloc_stats", "malloc", "bpftrace")


def main() -> int:
    out = pathlib.Path(os.environ.get("PYMEMTRACE_DEMO_DIR", HERE.parent / "demo-output"))
    out.mkdir(parents=True, exist_ok=True)
    status = 0
    for name in ORDER:
        path = HERE / f"demo_{name}.py"
        if not path.exists():
            continue
        print(f"\n{'=' * 30} {name} {'=' * 30}", flush=True)
        spec = importlib.util.spec_from_file_location(f"demo_{name}", path)
        mod = importlib.util.module_from_spec(spec)
        spec.loader.exec_module(mod)
        t0 = time.perf_counter()
        cwd = os.getcwd()
        os.chdir(out)
        try:
            rc = mod.main()
        finally:
            os.chdir(cwd)
        print(f"[{name} demo finished in {time.perf_counter() - t0:.1f}s, exit {rc}]", flush=True)
        status = status or rc
    print(f"\nAll demo output is in {out}")
    return status


if __name__ == "__main__":
    sys.exit(main())
