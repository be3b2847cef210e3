"""The layers of the README's "Layout" hold: who may include or import whom.

A file that breaks a rule fails here with its name and the offending line, so
the structure cannot rot one convenient import at a time.
"""
import ast
import pathlib
import re

ROOT = pathlib.Path(__file__).resolve().parent.parent
PKG = ROOT / "pymemtrace"


def _imports(path):
    """The pymemtrace modules a Python file imports (dotted names), with line numbers."""
    tree = ast.parse(path.read_text(), str(path))
    out = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            out += [(a.name, node.lineno) for a in node.names if a.name.startswith("pymemtrace")]
        elif isinstance(node, ast.ImportFrom) and node.module and node.module.startswith("pymemtrace"):
            if node.module == "pymemtrace":
                out += [(f"pymemtrace.{a.name}", node.lineno) for a in node.names]
            else:
                out.append((node.module, node.lineno))
    return out


def _layer(path):
    rel = path.relative_to(PKG).parts
    return rel[0] if len(rel) > 1 else "public"


def _is_extension(mod):
    return mod.split(".")[1].startswith("_") and mod.count(".") == 1 and mod != "pymemtrace.__main__"


def test_the_package_layers():
    bad = []
    for path in sorted(PKG.rglob("*.py")):
        layer = _layer(path)
        for mod, line in _imports(path):
            where = f"{path.relative_to(ROOT)}:{line} imports {mod}"
            if mod == "pymemtrace" or mod.startswith("pymemtrace.__"):
                continue
            if layer == "readers" and not (_is_extension(mod) or mod.startswith("pymemtrace.readers")):
                bad.append(where + " (a reader imports only C extensions and other readers)")
            if layer == "reporters" and not (mod.startswith(("pymemtrace.readers", "pymemtrace.reporters"))
                                             or _is_extension(mod)):
                bad.append(where + " (a reporter imports only readers)")
            if layer not in ("commands",) and mod.startswith("pymemtrace.commands") \
                    and path.name != "__main__.py":
                bad.append(where + " (only the command line imports pymemtrace.commands)")
    assert not bad, "\n".join(bad)


def test_tests_examples_and_benchmarks_use_public_modules():
    bad = []
    for d in ("tests", "examples", "bench"):
        for path in sorted((ROOT / d).rglob("*.py")):
            text = path.read_text()
            for m in re.finditer(r"pymemtrace\._cli_\w+|pymemtrace\.commands\.(?!process\b)\w+", text):
                bad.append(f"{path.relative_to(ROOT)}: {m.group(0)}")
    assert not bad, "\n".join(bad)


def test_core_has_no_python_and_preload_links_none():
    bad = []
    for path in sorted((ROOT / "src" / "core").glob("*.[ch]")):
        for n, line in enumerate(path.read_text().splitlines(), 1):
            if re.match(r'\s*#\s*include\s*[<"](Python|pyconfig|cpython/|internal/)', line):
                bad.append(f"{path.relative_to(ROOT)}:{n}: {line.strip()}")
    for path in sorted((ROOT / "src" / "preload").glob("*.[ch]")):
        for n, line in enumerate(path.read_text().splitlines(), 1):
            if re.match(r'\s*#\s*include\s*[<"](Python|pyconfig|cpython/|internal/)', line):
                bad.append(f"{path.relative_to(ROOT)}:{n}: {line.strip()}")
    assert not bad, "\n".join(bad)


def test_version_checks_live_in_compat_h():
    bad = []
    for path in sorted((ROOT / "src").rglob("*.[ch]")):
        if path.name == "compat.h":
            continue
        for n, line in enumerate(path.read_text().splitlines(), 1):
            if "PY_VERSION_HEX" in line and not line.lstrip().startswith(("*", "/*", "//")):
                bad.append(f"{path.relative_to(ROOT)}:{n}: {line.strip()}")
    assert not bad, "\n".join(bad)
