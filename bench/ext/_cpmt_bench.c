/* _cpmt_bench.c: reference profile functions for bench/bench_cpymemtrace.py,
 * built by meson next to the package but never installed (benchmark-only).
 *
 * floor("noop") attaches a C profile function that does nothing (the cost of
 * the hook itself); floor("pread") one that reads RSS once per event (the cost
 * of a tracer that reads at every event); floor(None) detaches.
 * trace_floor("noop") / trace_floor(None): the no-op as a trace function.
 * mon_noop (3.12+): a sys.monitoring callback that does nothing. */
#define PY_SSIZE_T_CLEAN
#include <Python.h>
#include <frameobject.h>

#include <string.h>

#include "compat.h"
#include "rss.h"

static int
floor_noop(PyObject *obj, PyFrameObject *frame, int what, PyObject *arg)
{
    (void)obj;
    (void)frame;
    (void)what;
    (void)arg;
    return 0;
}

static volatile int64_t floor_sink;

static int
floor_pread(PyObject *obj, PyFrameObject *frame, int what, PyObject *arg)
{
    (void)obj;
    (void)frame;
    (void)what;
    (void)arg;
    floor_sink = pmt_rss_current();
    return 0;
}

static PyObject *
bench_floor(PyObject *Py_UNUSED(m), PyObject *arg)
{
    const char *mode = PyUnicode_Check(arg) ? PyUnicode_AsUTF8(arg) : NULL;
    Py_tracefunc f = NULL;
    if (mode != NULL && strcmp(mode, "noop") == 0) {
        f = floor_noop;
    }
    else if (mode != NULL && strcmp(mode, "pread") == 0) {
        f = floor_pread;
    }
    else if (arg != Py_None) {
        PyErr_SetString(PyExc_ValueError, "floor(mode): mode is 'noop', 'pread' or None");
        return NULL;
    }
    if (pmt_cpmt_set_hook(1, f, NULL) < 0) {
        return NULL;
    }
    Py_RETURN_NONE;
}

/* The same no-op as the thread's trace function (the floor of Trace()). */
static PyObject *
bench_trace_floor(PyObject *Py_UNUSED(m), PyObject *arg)
{
    if (arg != Py_None
            && !(PyUnicode_Check(arg) && PyUnicode_CompareWithASCIIString(arg, "noop") == 0)) {
        PyErr_SetString(PyExc_ValueError, "trace_floor(mode): mode is 'noop' or None");
        return NULL;
    }
    if (pmt_cpmt_set_hook(0, arg == Py_None ? NULL : floor_noop, arg == Py_None ? NULL : Py_None) < 0) {
        return NULL;
    }
    Py_RETURN_NONE;
}

#if PMT_CPMT_HAVE_MONITORING
/* A sys.monitoring (PEP 669) callback that does nothing: registered from
 * Python (bench/callgrind_cpymemtrace.py, mode noop_monitor) for the events a
 * profile function sees, it is the floor of a PEP 669 cPyMemTrace. */
static PyObject *
bench_mon_noop(PyObject *Py_UNUSED(m), PyObject *const *args, Py_ssize_t nargs)
{
    (void)args;
    (void)nargs;
    Py_RETURN_NONE;
}
#endif

#if defined(__has_include)
#if __has_include(<valgrind/callgrind.h>)
#include <valgrind/callgrind.h>
#define BENCH_HAVE_CALLGRIND 1
#endif
#endif

#ifdef BENCH_HAVE_CALLGRIND
/* cg(True) / cg(False): start and stop callgrind's counting (run with
 * --instr-atstart=no), so a run counts the workload alone. */
static PyObject *
bench_cg(PyObject *Py_UNUSED(m), PyObject *flag)
{
    if (PyObject_IsTrue(flag)) {
        CALLGRIND_START_INSTRUMENTATION;
    }
    else {
        CALLGRIND_STOP_INSTRUMENTATION;
    }
    Py_RETURN_NONE;
}
#endif

static PyMethodDef bench_methods[] = {
#ifdef BENCH_HAVE_CALLGRIND
    {"cg", bench_cg, METH_O, "cg(flag): start (True) or stop (False) callgrind's counting."},
#endif
#if PMT_CPMT_HAVE_MONITORING
    {"mon_noop", (PyCFunction)(void (*)(void))bench_mon_noop, METH_FASTCALL,
     "mon_noop(*args): a sys.monitoring callback that does nothing (3.12+)."},
#endif
    {"floor", bench_floor, METH_O,
     "floor(mode): attach a reference profile function to this thread: 'noop' does\n"
     "nothing, 'pread' reads RSS once per event; None detaches."},
    {"trace_floor", bench_trace_floor, METH_O,
     "trace_floor(mode): 'noop' attaches a trace function that does nothing; None detaches."},
    {NULL, NULL, 0, NULL},
};

static struct PyModuleDef bench_module = {
    PyModuleDef_HEAD_INIT, "_cpmt_bench",
    "Reference profile functions for bench/bench_cpymemtrace.py (not installed).",
    -1, bench_methods, NULL, NULL, NULL, NULL,
};

PyMODINIT_FUNC
PyInit__cpmt_bench(void)
{
    return PyModule_Create(&bench_module);
}
