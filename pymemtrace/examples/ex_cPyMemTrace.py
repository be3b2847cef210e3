"""Example: RSS at every Python call and return, written to a log by C."""
import sys

from pymemtrace import cPyMemTrace


def grow(n: int) -> list:
    return [b"x" * (256 * 1024) for _ in range(n)]


def main() -> int:
    with cPyMemTrace.Profile() as profiler:
        data = grow(16)
        del data
    print("cPyMemTrace.Profile wrote its log in the current directory:")
    print(f"  {profiler}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
