"""Import a benchmark-only extension (bench/ext/*.c) from the meson build directory.

meson builds them with the package but never installs them; ``make install``
builds into build/meson (PYMEMTRACE_BUILD_DIR overrides).
"""

import importlib
import os
import sys


def load_build_module(name: str):
    """The module *name* from the build directory, or exit with what to do."""
    build = os.environ.get("PYMEMTRACE_BUILD_DIR") or os.path.join(
        os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "build", "meson")
    sys.path.insert(0, build)
    try:
        return importlib.import_module(name)
    except ImportError:
        sys.exit(f"bench: no {name} module in {build}: run `make install` first "
                 "(or set PYMEMTRACE_BUILD_DIR to the meson build directory)")
    finally:
        sys.path.remove(build)
