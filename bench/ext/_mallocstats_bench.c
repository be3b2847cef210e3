/* _mallocstats_bench.c: timing helpers for bench/bench_snapshots.py, never
 * installed.  Built by meson with src/ext/mallocstats/{writer,snapshot,diff}.c
 * (its own copy of the Snapshot type), so the shipped _mallocstats extension
 * carries no benchmark code.  Each helper runs n repetitions in C and returns
 * the total nanoseconds.
 */
#define PY_SSIZE_T_CLEAN
#include <Python.h>

#include <string.h>
#include <time.h>

#include "mallocstats/mallocstats_ext.h"
#include "mallocstats_diff.h"

/* ---- benchmark helpers: n repetitions timed in C, total nanoseconds --------------------- */

static int64_t
now_ns(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (int64_t)ts.tv_sec * 1000000000 + ts.tv_nsec;
}

static PyObject *
time_writer(PyObject *Py_UNUSED(module), PyObject *args)
{
    Py_ssize_t n;
    const char *sink;
    if (!PyArg_ParseTuple(args, "ns:_time_writer", &n, &sink)) {
        return NULL;
    }
    int64_t t0, t1;
    if (strcmp(sink, "devnull") == 0) {
        FILE *f = fopen("/dev/null", "w");
        if (f == NULL) {
            return PyErr_SetFromErrnoWithFilename(PyExc_OSError, "/dev/null");
        }
        t0 = now_ns();
        for (Py_ssize_t i = 0; i < n; i++) {
            if (msx_write_stats(f)) {
                fputc('\n', f);
            }
            pmt_debug_type_stats(f);
            fflush(f);
        }
        t1 = now_ns();
        fclose(f);
    }
    else if (strcmp(sink, "memstream") == 0) {
        char *buf = NULL;
        size_t cap = 0, len;
        int pymalloc;
        t0 = now_ns();
        for (Py_ssize_t i = 0; i < n; i++) {
            if (msx_run_writer(&buf, &cap, &len, &pymalloc) < 0) {
                PyMem_RawFree(buf);
                return PyErr_SetFromErrno(PyExc_OSError);
            }
        }
        t1 = now_ns();
        PyMem_RawFree(buf);
    }
    else {
        PyErr_Format(PyExc_ValueError, "sink must be 'devnull' or 'memstream', not '%s'", sink);
        return NULL;
    }
    return PyLong_FromLongLong(t1 - t0);
}

/* A snapshot of this module's own copy of the Snapshot type, taken now. */
static SnapshotObject *
new_snapshot(void)
{
    return (SnapshotObject *)PyObject_CallNoArgs((PyObject *)&msx_Snapshot_Type);
}

static PyObject *
time_snapshot(PyObject *Py_UNUSED(module), PyObject *args)
{
    Py_ssize_t n;
    if (!PyArg_ParseTuple(args, "n:_time_snapshot", &n)) {
        return NULL;
    }
    SnapshotObject *snap = new_snapshot();
    if (snap == NULL) {
        return NULL;
    }
    int64_t t0 = now_ns();
    for (Py_ssize_t i = 0; i < n; i++) {
        if (msx_snapshot_take(snap) < 0) {
            Py_DECREF(snap);
            return NULL;
        }
    }
    int64_t t1 = now_ns();
    Py_DECREF(snap);
    return PyLong_FromLongLong(t1 - t0);
}

/* n formatted diffs of two snapshots taken either side of a small block of
 * allocations (100 complex numbers), as the bench's Python diff does. */
static PyObject *
time_diff(PyObject *Py_UNUSED(module), PyObject *args)
{
    Py_ssize_t n;
    char buf[16384];
    if (!PyArg_ParseTuple(args, "n:_time_diff", &n)) {
        return NULL;
    }
    SnapshotObject *before = new_snapshot();
    PyObject *keep = before ? PyList_New(0) : NULL;
    for (int i = 0; keep != NULL && i < 100; i++) {
        PyObject *c = PyComplex_FromDoubles(0.0, (double)i);
        if (c == NULL || PyList_Append(keep, c) < 0) {
            Py_XDECREF(c);
            Py_CLEAR(keep);
            break;
        }
        Py_DECREF(c);
    }
    SnapshotObject *after = keep ? new_snapshot() : NULL;
    Py_XDECREF(keep);
    if (after == NULL) {
        Py_XDECREF(before);
        return NULL;
    }
    size_t total = 0;
    int64_t t0 = now_ns();
    for (Py_ssize_t i = 0; i < n; i++) {
        total += pmt_ms_diff_format(before->stats, after->stats, buf, sizeof(buf));
    }
    int64_t t1 = now_ns();
    (void)total;
    Py_DECREF(before);
    Py_DECREF(after);
    return PyLong_FromLongLong(t1 - t0);
}

static PyMethodDef bench_methods[] = {
    {"_time_writer", time_writer, METH_VARARGS,
     "_time_writer(n, sink)\n--\n\nNanoseconds for n runs of the interpreter's writer alone "
     "into /dev/null ('devnull') or memory ('memstream')."},
    {"_time_snapshot", time_snapshot, METH_VARARGS,
     "_time_snapshot(n)\n--\n\nNanoseconds for n snapshots with their parse."},
    {"_time_diff", time_diff, METH_VARARGS,
     "_time_diff(n)\n--\n\nNanoseconds for n formatted diffs of two snapshots."},
    {NULL, NULL, 0, NULL}
};

static struct PyModuleDef bench_def = {
    PyModuleDef_HEAD_INIT,
    .m_name = "_mallocstats_bench",
    .m_doc = "Timing helpers for bench/bench_snapshots.py (not installed).",
    .m_size = -1,
    .m_methods = bench_methods,
};

PyMODINIT_FUNC
PyInit__mallocstats_bench(void)
{
    if (PyType_Ready(&msx_Snapshot_Type) < 0 || msx_record_pymalloc_allocator() < 0) {
        return NULL;
    }
    return PyModule_Create(&bench_def);
}
