"""pytest plugin: memory limits per test and the tests that use most memory.

Installed with the package (entry point ``pytest11``: ``pymemtrace``) and off
unless asked:

* ``pytest --pymemtrace`` records every test's allocations (the test function's
  call, not its fixtures) with :class:`pymemtrace.malloc.Tracker` and prints
  the tests with the highest peaks at the end, each with the stack holding most
  (``--pymemtrace-top N``);
* ``@pytest.mark.limit_memory("24 MB")`` fails a test whose memory live at its
  peak is over the limit, ``@pytest.mark.limit_leaks("1 MB")`` one that leaves
  more than that allocated at its end from one call stack.  A marked test is
  tracked even without ``--pymemtrace``; the markers have pytest-memray's names,
  arguments and units (see :mod:`pymemtrace.reporters.memory_limits`);
* ``--pymemtrace-dir DIR`` keeps the captures of tracked tests that failed
  (``pymemtrace malloc report DIR/<test>.cap``); without it captures go to a
  temporary directory removed at the end.

A session that asks for none of this registers no per-test hook: the module
hooks run once per session (options, marker names, one look at the collected
items).  When something is tracked, the tracked tests' functions are wrapped
once, at collection, and the only per-test hook is one plain
``pytest_runtest_logreport`` (run first, so a test over its limit is failed
before anything else sees its report): an untracked test costs that call and
a dictionary look-up, no hook wrapper.  With pytest-xdist each worker tracks
its own tests; what the summary needs travels to the controller on the test
reports.
"""
from __future__ import annotations

import functools
import hashlib
import inspect
import os
import re
import shutil
import tempfile
import threading
from typing import Any, Dict, List, Optional, Set, Tuple

import pytest

_MARKERS = ("limit_memory", "limit_leaks")
_PLUGIN = "pymemtrace-manager"
# the keyword arguments each marker takes beyond its limit (pytest-memray's)
_KWARGS = {"limit_memory": ("current_thread_only",),
           "limit_leaks": ("filter_fn", "current_thread_only")}


def pytest_addoption(parser: pytest.Parser) -> None:
    group = parser.getgroup("pymemtrace", "memory of each test (pymemtrace)")
    group.addoption(
        "--pymemtrace", action="store_true", default=False,
        help="record every test's allocations (pymemtrace.malloc.Tracker around the test "
             "function) and list the tests with the highest peak memory at the end.  Tests "
             "marked limit_memory or limit_leaks are tracked even without this option; "
             "without it and without those markers nothing is tracked.")
    group.addoption(
        "--pymemtrace-top", type=int, default=5, metavar="N",
        help="how many tests the end-of-session list shows (default 5, 0 for all)")
    group.addoption(
        "--pymemtrace-dir", metavar="DIR", default=None,
        help="keep the capture of every tracked test that fails in DIR (created if missing), "
             "for 'pymemtrace malloc report'; by default captures go to a temporary "
             "directory removed at the end")
    group.addoption(
        "--pymemtrace-depth", type=int, default=10, metavar="N",
        help="frames shown per stack in a failure (default 10)")
    parser.addini("pymemtrace", "track every test's memory, as --pymemtrace", type="bool",
                  default=False)


def pytest_configure(config: pytest.Config) -> None:
    config.addinivalue_line(
        "markers", "limit_memory(limit, *, current_thread_only=False): fail the test if the "
        "memory it holds at its peak is over limit ('24 MB'; KB/MB/GB are powers of 1024). "
        "Tracked by pymemtrace even without --pymemtrace.")
    config.addinivalue_line(
        "markers", "limit_leaks(location_limit, *, filter_fn=None, current_thread_only=False): "
        "fail the test if one call stack leaves more than location_limit allocated at its end. "
        "Tracked by pymemtrace even without --pymemtrace.")
    if config.getoption("pymemtrace") or config.getini("pymemtrace"):
        config.pluginmanager.register(_Manager(config, track_all=True), _PLUGIN)


def pytest_collection_modifyitems(session: pytest.Session, config: pytest.Config,
                                  items: List[pytest.Item]) -> None:
    """Once per session: wrap the tests to track; start tracking only if some
    collected test is marked or --pymemtrace asked for every test."""
    manager = config.pluginmanager.get_plugin(_PLUGIN)
    if manager is not None:
        manager.wrap(items)
        return
    if config.getoption("memray", False):      # pytest-memray checks these markers itself
        return
    marked = {item.nodeid for item in items
              if item.get_closest_marker("limit_memory") or item.get_closest_marker("limit_leaks")}
    if marked:
        manager = _Manager(config, track_all=False, marked=marked)
        config.pluginmanager.register(manager, _PLUGIN)
        manager.wrap(items)


class _Plan:
    """What to check for one test: its limits, or the error in them."""

    def __init__(self, item: pytest.Item) -> None:
        self.peak: Optional[Tuple[int, str]] = None
        self.leaks: Optional[Tuple[int, str]] = None
        self.filter_fn = None
        self.current_thread_only = False
        self.error: Optional[str] = None
        try:
            for name in _MARKERS:
                marker = item.get_closest_marker(name)
                if marker is not None:
                    self._read(name, marker)
        except ValueError as e:
            self.error = f"{item.nodeid}: {e}"

    def _read(self, name: str, marker: Any) -> None:
        from pymemtrace.reporters.memory_limits import parse_size

        if len(marker.args) != 1:
            raise ValueError(f"{name} takes one limit, such as {name}('24 MB'), "
                             f"not {len(marker.args)} arguments")
        bad = sorted(set(marker.kwargs) - set(_KWARGS[name]))
        if bad:
            raise ValueError(f"{name}: unknown keyword argument {bad[0]!r} (it takes "
                             f"{', '.join(_KWARGS[name])})")
        text = marker.args[0]
        try:
            limit = (parse_size(text), str(text))
        except ValueError as e:
            raise ValueError(f"{name}({text!r}): {e}") from None
        if name == "limit_memory":
            self.peak = limit
        else:
            self.leaks = limit
            fn = marker.kwargs.get("filter_fn")
            if fn is not None and not callable(fn):
                raise ValueError(f"limit_leaks: filter_fn={fn!r} is not callable")
            self.filter_fn = fn
        self.current_thread_only |= bool(marker.kwargs.get("current_thread_only", False))


class _Manager:
    """The per-test hooks, registered only when something is tracked."""

    def __init__(self, config: pytest.Config, track_all: bool,
                 marked: Optional[Set[str]] = None) -> None:
        self.config = config
        self.track_all = track_all
        self.marked = marked or set()       # the tests to track without --pymemtrace
        self.top = config.getoption("pymemtrace_top")
        self.depth = max(1, config.getoption("pymemtrace_depth"))
        keep = config.getoption("pymemtrace_dir")
        self.keep_dir: Optional[str] = None
        if keep:
            self.keep_dir = os.path.abspath(keep)
            try:
                os.makedirs(self.keep_dir, exist_ok=True)
                if not os.access(self.keep_dir, os.W_OK | os.X_OK):
                    raise PermissionError(13, "Permission denied")
            except OSError as e:
                raise pytest.UsageError(
                    f"--pymemtrace-dir {keep}: cannot write captures there "
                    f"({e.strerror or e})") from None
        try:
            from pymemtrace.malloc import Tracker
        except ImportError:
            raise pytest.UsageError(
                "pymemtrace: tracking tests needs pymemtrace.malloc.Tracker, which this "
                "build of pymemtrace does not have") from None
        self.tracker = Tracker
        self._tmp: Optional[str] = None
        self._n = 0
        self._pending: Dict[str, Tuple[str, _Plan, Optional[Tuple[str, str]], int]] = {}
        self.results: List[Dict[str, Any]] = []

    # -- per test, in the process that runs it -----------------------------

    def _capture_path(self) -> str:
        if self.keep_dir is not None:
            where = self.keep_dir
        else:
            if self._tmp is None:
                self._tmp = tempfile.mkdtemp(prefix="pymemtrace-pytest-")
            where = self._tmp
        self._n += 1
        return os.path.join(where, f".pymemtrace-{os.getpid()}-{self._n}.cap")

    def wrap(self, items: List[pytest.Item]) -> None:
        """Once, at collection: every test to track gets its function wrapped
        (the others are left exactly as they are)."""
        for item in items:
            if isinstance(item, pytest.Function) and (self.track_all or item.nodeid in self.marked):
                self._wrap(item)

    def _wrap(self, item: pytest.Function) -> None:
        plan = _Plan(item)
        func = item.obj
        if plan.error is not None:
            item.obj = _failing(func, plan.error)
            return
        nodeid, test, pending = item.nodeid, _code_of(func), self._pending

        def start() -> Any:
            path = self._capture_path()
            pending[nodeid] = (path, plan, test, threading.get_native_id())
            return self.tracker(path)

        if inspect.iscoroutinefunction(func):
            @functools.wraps(func)
            async def traced_async(*args: Any, **kwargs: Any) -> Any:
                with start():
                    return await func(*args, **kwargs)
            item.obj = traced_async
        else:
            @functools.wraps(func)
            def traced(*args: Any, **kwargs: Any) -> Any:
                with start():
                    return func(*args, **kwargs)
            item.obj = traced

    def _judge(self, report: pytest.TestReport, path: str, plan: _Plan,
               test: Optional[Tuple[str, str]], tid: int) -> None:
        from pymemtrace.readers.malloc_stacks import load_stacks
        from pymemtrace.reporters import memory_limits as ml

        if not os.path.exists(path):
            return              # the Tracker did not start: the test failed saying why
        entry: Dict[str, Any] = {"nodeid": report.nodeid}
        try:
            r = load_stacks(path, points=0)
            rt = load_stacks(path, points=0, thread=tid) if plan.current_thread_only else r
        except ValueError as e:
            entry["error"] = str(e)
            report.pymemtrace = entry
            if report.passed and (plan.peak or plan.leaks):
                report.outcome = "failed"
                report.longrepr = f"{report.nodeid}: the memory limits could not be checked: {e}"
            return
        root = str(self.config.rootpath)
        entry.update(peak=r["peak"]["bytes"], leaked=r["leaked_bytes"],
                     top=ml.top_stack(r, test, root=root))
        problems = []
        if report.passed:
            kw = {"test": test, "top": 5, "depth": self.depth, "root": root}
            if plan.peak:
                problems.append(ml.check_peak(rt, *plan.peak, **kw))
            if plan.leaks:
                problems.append(ml.check_leaks(rt, *plan.leaks, filter_fn=plan.filter_fn, **kw))
            problems = [p for p in problems if p is not None]
        kept = None
        if self.keep_dir is not None and (report.failed or problems):
            kept = os.path.join(self.keep_dir, _file_name(report.nodeid))
            os.replace(path, kept)
            entry["capture"] = kept
        if problems:
            text = "\n".join(p.text() for p in problems)
            if plan.current_thread_only:
                text += f"\n  (only thread {tid}, the test's own: current_thread_only=True)"
            if kept:
                text += f"\n  capture kept: pymemtrace malloc report {kept}"
            report.outcome = "failed"
            report.longrepr = text
            entry["problem"] = "; ".join(p.summary for p in problems)
        elif kept:
            report.sections.append(("pymemtrace", f"capture kept: pymemtrace malloc report {kept}"))
        report.pymemtrace = entry

    # -- per report, where the session ends (the controller under xdist) -----

    @pytest.hookimpl(tryfirst=True)
    def pytest_runtest_logreport(self, report: pytest.TestReport) -> None:
        if report.when != "call":
            return
        pending = self._pending.pop(report.nodeid, None)
        if pending is not None:             # tracked here: judged before anyone sees the report
            try:
                self._judge(report, *pending)
            finally:
                path = pending[0]
                if os.path.lexists(path):
                    os.unlink(path)
        entry = getattr(report, "pymemtrace", None)
        if report.when == "call" and isinstance(entry, dict):
            self.results.append(entry)

    def pytest_terminal_summary(self, terminalreporter: Any) -> None:
        from pymemtrace.reporters.memory_limits import fmt_size

        if hasattr(self.config, "workerinput"):
            return
        tr = terminalreporter
        if self.track_all:
            done = sorted((e for e in self.results if "peak" in e),
                          key=lambda e: (-e["peak"], e["nodeid"]))
            shown = done if self.top <= 0 else done[:self.top]
            tr.write_sep("=", "pymemtrace: peak memory by test")
            tr.write_line(f"{len(shown)} of {len(done)} tracked tests, highest peak first "
                          "(memory live at the test's high-water mark; leaked: still "
                          "allocated at its end):")
            for e in shown:
                tr.write_line(f"  {fmt_size(e['peak']):>10} peak  {fmt_size(e['leaked']):>10} "
                              f"leaked  {e['nodeid']}")
                top = e.get("top")
                if top:
                    tr.write_line(f"  {'':>10} {fmt_size(top['bytes']):>10} in {top['where']}")
            for e in self.results:
                if "error" in e:
                    tr.write_line(f"  {e['nodeid']}: capture not read: {e['error']}")
        kept = [e["capture"] for e in self.results if "capture" in e]
        if kept:
            tr.write_line(f"pymemtrace: the captures of {len(kept)} failed test"
                          f"{'s' if len(kept) != 1 else ''} are in {self.keep_dir} "
                          "(pymemtrace malloc report FILE)")

    def pytest_unconfigure(self, config: pytest.Config) -> None:
        if self._tmp is not None:
            shutil.rmtree(self._tmp, ignore_errors=True)
            self._tmp = None


def _failing(func: Any, message: str) -> Any:
    """`func` replaced by one that fails the test with `message` (no traceback)."""
    @functools.wraps(func)
    def bad_limit(*args: Any, **kwargs: Any) -> None:
        pytest.fail(message, pytrace=False)
    return bad_limit


def _code_of(func: Any) -> Optional[Tuple[str, str]]:
    """(file, function) of the test function, as the capture names its frame."""
    func = inspect.unwrap(getattr(func, "__func__", func))
    code = getattr(func, "__code__", None)
    return (code.co_filename, code.co_name) if code is not None else None


def _file_name(nodeid: str) -> str:
    """A file name for a test's capture: its id with the awkward characters
    replaced, cut (and told apart by a hash) when long."""
    name = re.sub(r"[^A-Za-z0-9._=-]+", "_", nodeid.replace("::", "--")).strip("._") or "test"
    if len(name) > 180:
        name = name[:160] + "-" + hashlib.sha1(nodeid.encode()).hexdigest()[:12]
    return name + ".cap"
