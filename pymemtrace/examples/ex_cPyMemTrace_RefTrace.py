"""Example: every object of a class created and freed, and which leak (3.13+)."""
import os
import sys
import tempfile

from pymemtrace import reference_tracing


class Record:
    def __init__(self, n: int) -> None:
        self.payload = "r" * n


def main() -> int:
    if not reference_tracing.AVAILABLE:
        print("ReferenceTracing needs CPython 3.13 or later.")
        return 0
    cache = []
    path = os.path.join(tempfile.mkdtemp(), "reftrace.log")
    with reference_tracing.ReferenceTracing(message="Record leak hunt", filepath=path,
                                            include_tp_names=["Record"]) as rt:
        batch = [Record(100) for _ in range(5)]
        cache.append(batch[2])          # one is kept: a "leak"
        batch.clear()
        print("live while tracing:", rt.live_object_counts())
    print(open(path).read())
    return 0


if __name__ == "__main__":
    sys.exit(main())
