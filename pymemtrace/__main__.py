"""``python -m pymemtrace``: the same as the ``pymemtrace`` command."""
import sys

from pymemtrace.commands import main

if __name__ == "__main__":
    sys.exit(main())
