/* cPyMemTrace.c: CPython bindings for the RSS profiler / tracer (issue 2).
 * Foundation stage: exposes the core RSS readers; Profile/Trace land next. */
#define PY_SSIZE_T_CLEAN
#include <Python.h>

#include "rss.h"

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

static PyMethodDef cpmt_methods[] = {
    {"rss", cpmt_rss, METH_NOARGS, "rss() -> int\n\nCurrent resident set size in bytes."},
    {"rss_peak", cpmt_rss_peak, METH_NOARGS, "rss_peak() -> int\n\nPeak resident set size in bytes."},
    {NULL, NULL, 0, NULL},
};

static struct PyModuleDef cpmt_module = {
    PyModuleDef_HEAD_INIT, "cPyMemTrace",
    "Log the RSS of this process at Python and C calls and returns.", -1, cpmt_methods,
    NULL, NULL, NULL, NULL,
};

PyMODINIT_FUNC
PyInit_cPyMemTrace(void)
{
    return PyModule_Create(&cpmt_module);
}
