/* module.c: the cPyMemTrace module: its settings (exact mode, gate limits),
 * functions about the calling thread's active Profile/Trace, the profile and
 * trace decorators (pymemtrace/_cpmt_decorators.py, reached through
 * __getattr__), and init (clock, flush at exit and before fork). */
#include "cpmt.h"

#include <string.h>

#include "rss.h"

/* Raised by profile/trace_write_message_to_log() with nothing active: a
 * RuntimeError (as ever here) and a ValueError (as in the original pymemtrace). */
static PyObject *not_active_error;

pmt_tickclock cpmt_tclock;
int64_t cpmt_origin_ns;
uint64_t cpmt_anchor_every;
char cpmt_py_version[32];
int cpmt_exact_rss;
int cpmt_every_path = 1;
uint64_t cpmt_gate_limit_bytes = PMT_GATE_LIMIT_BYTES;
int64_t cpmt_gate_limit_blocks = PMT_GATE_LIMIT_BLOCKS;
uint32_t cpmt_gate_limit_events = PMT_GATE_LIMIT_EVENTS;
int64_t cpmt_gate_limit_ns = PMT_GATE_LIMIT_NS;
int cpmt_use_monitoring = PMT_CPMT_HAVE_MONITORING;
#if PMT_CPMT_FRAME311 || PMT_CPMT_FRAME312
int pmt_cpmt_frame_direct;      /* compat.h */
#endif


static PyObject *
cpmt_rss(PyObject *Py_UNUSED(module), PyObject *Py_UNUSED(args))
{
    int64_t v = pmt_rss_current();
    if (v < 0) {
        return PyErr_SetFromErrnoWithFilename(PyExc_OSError, "/proc/self/statm");
    }
    return PyLong_FromLongLong((long long)v);
}

static PyObject *
cpmt_rss_peak(PyObject *Py_UNUSED(module), PyObject *Py_UNUSED(args))
{
    int64_t v = pmt_rss_peak();
    if (v < 0) {
        return PyErr_SetFromErrno(PyExc_OSError);
    }
    return PyLong_FromLongLong((long long)v);
}

static PyObject *
depth_of(char kind)
{
    CpmtTracer *t = cpmt_current(kind);
    return PyLong_FromLong(t ? t->depth : 0);
}

static PyObject *
log_path_of(char kind)
{
    CpmtTracer *t = cpmt_current(kind);
    if (t == NULL || t->path == NULL) {
        Py_RETURN_NONE;
    }
    Py_INCREF(t->path);
    return t->path;
}

static PyObject *
write_message_of(char kind, PyObject *msg, const char *fname)
{
    if (!PyUnicode_Check(msg)) {
        PyErr_Format(PyExc_TypeError, "%s(): msg must be a str, not %.100s", fname,
                     Py_TYPE(msg)->tp_name);
        return NULL;
    }
    CpmtTracer *t = cpmt_current(kind);
    if (t == NULL) {
        /* The original pymemtrace's words (its users compare them), then ours. */
        PyErr_Format(not_active_error, "Trying to write to a %s log file when no reference "
                     "tracer is active.", kind == 'P' ? "profile" : "trace");
        return NULL;
    }
    Py_ssize_t n;
    const char *s = PyUnicode_AsUTF8AndSize(msg, &n);
    if (s == NULL) {
        return NULL;
    }
    pmt_cpmt_write_message(t->w, s, (size_t)n);
    Py_RETURN_NONE;
}

static PyObject *
cpmt_profile_wrapper_depth(PyObject *Py_UNUSED(m), PyObject *Py_UNUSED(a))
{
    return depth_of('P');
}

static PyObject *
cpmt_trace_wrapper_depth(PyObject *Py_UNUSED(m), PyObject *Py_UNUSED(a))
{
    return depth_of('T');
}

static PyObject *
cpmt_profile_log_path(PyObject *Py_UNUSED(m), PyObject *Py_UNUSED(a))
{
    return log_path_of('P');
}

static PyObject *
cpmt_trace_log_path(PyObject *Py_UNUSED(m), PyObject *Py_UNUSED(a))
{
    return log_path_of('T');
}

static PyObject *
cpmt_profile_write_message_to_log(PyObject *Py_UNUSED(m), PyObject *msg)
{
    return write_message_of('P', msg, "profile_write_message_to_log");
}

static PyObject *
cpmt_trace_write_message_to_log(PyObject *Py_UNUSED(m), PyObject *msg)
{
    return write_message_of('T', msg, "trace_write_message_to_log");
}

/* Set *setting to the truth of flag; the previous setting as a bool. */
static PyObject *
swap_setting(int *setting, PyObject *flag)
{
    int v = PyObject_IsTrue(flag);
    if (v < 0) {
        return NULL;
    }
    int old = *setting;
    *setting = v;
    return PyBool_FromLong(old);
}

static PyObject *
cpmt_set_exact_rss(PyObject *Py_UNUSED(m), PyObject *flag)
{
    return swap_setting(&cpmt_exact_rss, flag);
}

/* For the tests: 0 makes Profile(0) / Trace(0) entered from now on take
 * the general path (cpmt_general_event), whose rows cpmt_every_event must equal. */
static PyObject *
cpmt_set_every_path(PyObject *Py_UNUSED(m), PyObject *flag)
{
    return swap_setting(&cpmt_every_path, flag);
}

static PyObject *
backend_name(int monitoring)
{
    return PyUnicode_FromString(monitoring ? "monitoring" : "legacy");
}

static PyObject *
cpmt_get_backend(PyObject *Py_UNUSED(m), PyObject *Py_UNUSED(a))
{
    return backend_name(cpmt_use_monitoring);
}

static PyObject *
cpmt_set_backend(PyObject *Py_UNUSED(m), PyObject *name)
{
    int monitoring;
    if (PyUnicode_Check(name) && PyUnicode_CompareWithASCIIString(name, "monitoring") == 0) {
        monitoring = 1;
    }
    else if (PyUnicode_Check(name) && PyUnicode_CompareWithASCIIString(name, "legacy") == 0) {
        monitoring = 0;
    }
    else {
        PyErr_Format(PyExc_ValueError, "set_backend(): name must be 'monitoring' or 'legacy', "
                     "not %.200R", name);
        return NULL;
    }
    if (monitoring && !PMT_CPMT_HAVE_MONITORING) {
        PyErr_Format(PyExc_ValueError, "set_backend('monitoring'): sys.monitoring needs "
                     "CPython 3.12 or later, this is %s", cpmt_py_version);
        return NULL;
    }
    PyObject *old = backend_name(cpmt_use_monitoring);
    cpmt_use_monitoring = monitoring;
    return old;
}

static PyObject *
cpmt_get_gate_limits(PyObject *Py_UNUSED(m), PyObject *Py_UNUSED(a))
{
    return Py_BuildValue("{s:K,s:L,s:k,s:d}", "bytes", (unsigned long long)cpmt_gate_limit_bytes,
                         "blocks", (long long)cpmt_gate_limit_blocks, "events",
                         (unsigned long)cpmt_gate_limit_events, "seconds",
                         (double)cpmt_gate_limit_ns / 1e9);
}

static PyObject *
cpmt_set_gate_limits(PyObject *m, PyObject *args, PyObject *kwds)
{
    static char *kwlist[] = {"bytes", "blocks", "events", "seconds", NULL};
    long long bytes = (long long)cpmt_gate_limit_bytes, blocks = cpmt_gate_limit_blocks;
    long long events = cpmt_gate_limit_events;
    double seconds = (double)cpmt_gate_limit_ns / 1e9;
    if (!PyArg_ParseTupleAndKeywords(args, kwds, "|$LLLd:set_gate_limits", kwlist, &bytes,
                                     &blocks, &events, &seconds)) {
        return NULL;
    }
    if (bytes < 1 || blocks < 1 || events < 0 || events > UINT32_MAX || seconds < 0
            || seconds > 3600) {
        PyErr_SetString(PyExc_ValueError, "set_gate_limits(): bytes and blocks must be >= 1, "
                        "events in 0..2**32-1 (0: no bound), seconds in 0..3600 (0: no bound)");
        return NULL;
    }
    PyObject *old = cpmt_get_gate_limits(m, NULL);
    if (old == NULL) {
        return NULL;
    }
    cpmt_gate_limit_bytes = (uint64_t)bytes;
    cpmt_gate_limit_blocks = blocks;
    cpmt_gate_limit_events = (uint32_t)events;
    cpmt_gate_limit_ns = (int64_t)(seconds * 1e9);
    return old;
}

static PyObject *
cpmt_flush_all(PyObject *Py_UNUSED(m), PyObject *Py_UNUSED(a))
{
    cpmt_registry_flush();
    Py_RETURN_NONE;
}

static PyObject *
cpmt_getattr(PyObject *Py_UNUSED(m), PyObject *name)
{
    if (PyUnicode_Check(name) && (PyUnicode_CompareWithASCIIString(name, "profile") == 0
                                  || PyUnicode_CompareWithASCIIString(name, "trace") == 0)) {
        PyObject *mod = PyImport_ImportModule("pymemtrace._cpmt_decorators");
        if (mod == NULL) {
            return NULL;
        }
        PyObject *r = PyObject_GetAttr(mod, name);
        Py_DECREF(mod);
        return r;
    }
    PyErr_Format(PyExc_AttributeError, "module 'pymemtrace.cPyMemTrace' has no attribute %R",
                 name);
    return NULL;
}

/* dir(cPyMemTrace) lists the decorators that __getattr__ provides. */
static PyObject *
cpmt_dir(PyObject *m, PyObject *Py_UNUSED(a))
{
    PyObject *d = PyModule_GetDict(m);     /* borrowed */
    PyObject *names = d ? PyDict_Keys(d) : NULL;
    if (names == NULL) {
        return NULL;
    }
    static const char *const extra[] = {"profile", "trace"};
    for (size_t i = 0; i < 2; i++) {
        PyObject *n = PyUnicode_FromString(extra[i]);
        if (n == NULL || PyList_Append(names, n) < 0) {
            Py_XDECREF(n);
            Py_DECREF(names);
            return NULL;
        }
        Py_DECREF(n);
    }
    if (PyList_Sort(names) < 0) {
        Py_DECREF(names);
        return NULL;
    }
    return names;
}

static PyMethodDef cpmt_methods[] = {
    {"rss", cpmt_rss, METH_NOARGS, "rss() -> int\n\nCurrent resident set size in bytes."},
    {"rss_peak", cpmt_rss_peak, METH_NOARGS,
     "rss_peak() -> int\n\nPeak resident set size in bytes."},
    {"profile_wrapper_depth", cpmt_profile_wrapper_depth, METH_NOARGS,
     "profile_wrapper_depth() -> int\n\nHow many Profile contexts are stacked on this thread "
     "(0: none)."},
    {"trace_wrapper_depth", cpmt_trace_wrapper_depth, METH_NOARGS,
     "trace_wrapper_depth() -> int\n\nHow many Trace contexts are stacked on this thread "
     "(0: none)."},
    {"profile_log_path", cpmt_profile_log_path, METH_NOARGS,
     "profile_log_path() -> str | None\n\nPath of the log of this thread's active Profile."},
    {"trace_log_path", cpmt_trace_log_path, METH_NOARGS,
     "trace_log_path() -> str | None\n\nPath of the log of this thread's active Trace."},
    {"profile_write_message_to_log", cpmt_profile_write_message_to_log, METH_O,
     "profile_write_message_to_log(msg)\n\nWrite msg (verbatim, newline added if missing) into "
     "the log of this thread's active Profile.  RuntimeError if there is none."},
    {"trace_write_message_to_log", cpmt_trace_write_message_to_log, METH_O,
     "trace_write_message_to_log(msg)\n\nWrite msg into the log of this thread's active Trace."},
    {"set_exact_rss", cpmt_set_exact_rss, METH_O,
     "set_exact_rss(flag) -> bool\n\nTrue: Profile/Trace entered from now on read RSS at every "
     "event (one pread each).\nFalse (default): read it only when the allocators moved, or\n"
     "after GATE_EVENTS events or GATE_SECONDS seconds.  Returns the previous setting."},
    {"get_backend", cpmt_get_backend, METH_NOARGS,
     "get_backend() -> str\n\nHow Profile/Trace entered from now on attach: 'monitoring' "
     "(sys.monitoring,\nthe default on CPython 3.12+) or 'legacy' (the thread's profile / "
     "trace function,\nthe only one before 3.12)."},
    {"set_backend", cpmt_set_backend, METH_O,
     "set_backend(name) -> str\n\n'monitoring' or 'legacy' for Profile/Trace entered from now "
     "on (a nested one\nattaches as its outer one did).  Returns the previous setting.\n"
     "ValueError for 'monitoring' before CPython 3.12."},
    {"get_gate_limits", cpmt_get_gate_limits, METH_NOARGS,
     "get_gate_limits() -> dict\n\nWhen RSS is read again in the default mode: "
     "bytes, blocks, events, seconds."},
    {"set_gate_limits", (PyCFunction)(void (*)(void))cpmt_set_gate_limits,
     METH_VARARGS | METH_KEYWORDS,
     "set_gate_limits(*, bytes, blocks, events, seconds) -> dict\n\nChange the limits for "
     "Profile/Trace entered from now on; returns the previous ones.\nevents=0 or seconds=0 "
     "switches that bound off."},
    {"_set_every_path", cpmt_set_every_path, METH_O,
     "_set_every_path(flag) -> bool\n\nFor tests: False makes Profile(0)/Trace(0) entered from "
     "now on\nwrite their rows through the general path.  Returns the previous setting."},
    {"_flush_all", cpmt_flush_all, METH_NOARGS, "Flush every open log (run at exit)."},
    {"__getattr__", cpmt_getattr, METH_O, NULL},
    {"__dir__", cpmt_dir, METH_NOARGS, NULL},
    {NULL, NULL, 0, NULL},
};

static struct PyModuleDef cpmt_module = {
    PyModuleDef_HEAD_INIT, "cPyMemTrace",
    "Log the RSS of this process at Python and C calls and returns (Profile), or at\n"
    "every line (Trace), written by C.  Decorators: profile(...) and trace(...).",
    -1, cpmt_methods, NULL, NULL, NULL, NULL,
};

PyMODINIT_FUNC
PyInit_cPyMemTrace(void)
{
    if (PyType_Ready(&CpmtProfileType) < 0 || PyType_Ready(&CpmtTraceType) < 0) {
        return NULL;
    }
    pmt_tickclock_init(&cpmt_tclock, 200000, getenv("PYMEMTRACE_NO_TSC") != NULL);
#if PMT_CPMT_FRAME311 || PMT_CPMT_FRAME312
    pmt_cpmt_frame_direct = pmt_cpmt_frame_check();
#endif
    cpmt_origin_ns = cpmt_tclock.ns0;
    cpmt_anchor_every = pmt_tickclock_ticks_in(&cpmt_tclock, 1000000);
    const char *v = Py_GetVersion();
    size_t n = strcspn(v, " ");
    if (n >= sizeof cpmt_py_version) {
        n = sizeof cpmt_py_version - 1;
    }
    memcpy(cpmt_py_version, v, n);
    cpmt_py_version[n] = '\0';
    PyObject *m = PyModule_Create(&cpmt_module);
    if (m == NULL) {
        return NULL;
    }
    PyObject *bases = PyTuple_Pack(2, PyExc_RuntimeError, PyExc_ValueError);
    not_active_error = bases == NULL ? NULL : PyErr_NewExceptionWithDoc(
        "pymemtrace.cPyMemTrace.NotActiveError",
        "profile_write_message_to_log() / trace_write_message_to_log() with no Profile / "
        "Trace active on this thread.\nBoth a RuntimeError and a ValueError.",
        bases, NULL);
    Py_XDECREF(bases);
    if (not_active_error == NULL) {
        Py_DECREF(m);
        return NULL;
    }
    Py_INCREF(not_active_error);
    if (PyModule_AddObject(m, "NotActiveError", not_active_error) < 0) {
        Py_DECREF(not_active_error);
        Py_DECREF(m);
        return NULL;
    }
    Py_INCREF(&CpmtProfileType);
    Py_INCREF(&CpmtTraceType);
    if (PyModule_AddObject(m, "Profile", (PyObject *)&CpmtProfileType) < 0
            || PyModule_AddObject(m, "Trace", (PyObject *)&CpmtTraceType) < 0
            || PyModule_AddIntConstant(m, "GATE_BYTES", PMT_GATE_LIMIT_BYTES) < 0
            || PyModule_AddIntConstant(m, "GATE_BLOCKS", PMT_GATE_LIMIT_BLOCKS) < 0
            || PyModule_AddIntConstant(m, "GATE_EVENTS", PMT_GATE_LIMIT_EVENTS) < 0
            || PyModule_AddObject(m, "GATE_SECONDS",
                                  PyFloat_FromDouble(PMT_GATE_LIMIT_NS / 1e9)) < 0) {
        Py_DECREF(m);
        return NULL;
    }
    /* Flush whatever is still open when the interpreter exits, and before a
     * fork (so the parent's rows are on disk and the child starts with an
     * empty copy of the buffer, which it never writes anyway). */
    PyObject *atexit = PyImport_ImportModule("atexit");
    PyObject *os = PyImport_ImportModule("os");
    PyObject *flush = PyObject_GetAttrString(m, "_flush_all");
    PyObject *r = (atexit && flush) ? PyObject_CallMethod(atexit, "register", "O", flush) : NULL;
    PyObject *r2 = NULL;
    if (r != NULL && os != NULL) {
        PyObject *reg = PyObject_GetAttrString(os, "register_at_fork");
        if (reg == NULL) {
            PyErr_Clear();      /* no fork on this platform */
            r2 = Py_None;
            Py_INCREF(r2);
        }
        else {
            PyObject *kw = Py_BuildValue("{s:O}", "before", flush);
            PyObject *noargs = PyTuple_New(0);
            r2 = (kw && noargs) ? PyObject_Call(reg, noargs, kw) : NULL;
            Py_XDECREF(kw);
            Py_XDECREF(noargs);
            Py_DECREF(reg);
        }
    }
    Py_XDECREF(atexit);
    Py_XDECREF(os);
    Py_XDECREF(flush);
    if (r == NULL || r2 == NULL) {
        Py_XDECREF(r);
        Py_XDECREF(r2);
        Py_DECREF(m);
        return NULL;
    }
    Py_DECREF(r);
    Py_DECREF(r2);
    return m;
}

