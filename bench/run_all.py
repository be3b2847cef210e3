"""``make bench``: run every bench/bench_*.py and print one JSON object.

Each benchmark module provides ``run() -> dict`` and measures ratios against
an untraced run of the same workload inside the same run (median of several
repetitions).  Results are also written to bench/results/latest.json.
"""
import importlib.util
import json
import pathlib
import sys

HERE = pathlib.Path(__file__).resolve().parent


def main(argv) -> int:
    wanted = set(argv[1:])
    results = {}
    for path in sorted(HERE.glob("bench_*.py")):
        name = path.stem[len("bench_"):]
        if wanted and name not in wanted:
            continue
        print(f"bench: {name} ...", file=sys.stderr, flush=True)
        spec = importlib.util.spec_from_file_location(path.stem, path)
        mod = importlib.util.module_from_spec(spec)
        spec.loader.exec_module(mod)
        results[name] = mod.run()
    text = json.dumps(results, indent=2, sort_keys=True)
    print(text)
    (HERE / "results").mkdir(exist_ok=True)
    (HERE / "results" / "latest.json").write_text(text + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
