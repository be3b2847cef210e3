/* module.c: the _mallocstats extension: snapshots of CPython's small-object
 * allocator statistics (snapshot.c), their diff (diff.c), the text the
 * interpreter writes (writer.c), and timing helpers for bench/.
 */
#define PY_SSIZE_T_CLEAN
#include <Python.h>

#include <string.h>
#include <time.h>

#include "mallocstats_diff.h"
#include "mallocstats_ext.h"

/* ---- module functions ----------------------------------------------------------------- */

static PyObject *
get_debugmallocstats(PyObject *Py_UNUSED(module), PyObject *Py_UNUSED(ignored))
{
    char *buf = NULL;
    size_t cap = 0, len = 0;
    int pymalloc;
    if (msx_run_writer(&buf, &cap, &len, &pymalloc) < 0) {
        PyMem_RawFree(buf);
        return PyErr_SetFromErrno(PyExc_OSError);
    }
    PyObject *res = PyUnicode_DecodeUTF8(buf, (Py_ssize_t)len, "replace");
    PyMem_RawFree(buf);
    return res;
}

/* 'pymalloc', 'mimalloc' or 'none' (PYTHONMALLOC=malloc, --without-pymalloc). */
static PyObject *
allocator(PyObject *Py_UNUSED(module), PyObject *Py_UNUSED(ignored))
{
    char *buf = NULL;
    size_t cap = 0, len = 0;
    int pymalloc;
    if (msx_run_writer(&buf, &cap, &len, &pymalloc) < 0) {
        PyMem_RawFree(buf);
        return PyErr_SetFromErrno(PyExc_OSError);
    }
    pmt_mallocstats_t *s = PyMem_RawMalloc(sizeof(*s));
    if (s == NULL) {
        PyMem_RawFree(buf);
        return PyErr_NoMemory();
    }
    pmt_ms_parse(buf, len, s);
    const char *name = !pymalloc ? "none" : s->mimalloc ? "mimalloc" : s->pymalloc ? "pymalloc"
                                                                                   : "unknown";
    PyMem_RawFree(s);
    PyMem_RawFree(buf);
    return PyUnicode_FromString(name);
}

static PyObject *
format_diff(PyObject *Py_UNUSED(module), PyObject *args)
{
    PyObject *before, *after;
    if (!PyArg_ParseTuple(args, "O!O!:format_diff", &msx_Snapshot_Type, &before, &msx_Snapshot_Type,
                          &after)) {
        return NULL;
    }
    if (msx_snapshot_require((SnapshotObject *)before) < 0 ||
        msx_snapshot_require((SnapshotObject *)after) < 0) {
        return NULL;
    }
    return msx_format_diff_text((SnapshotObject *)before, (SnapshotObject *)after);
}

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

static PyObject *
time_snapshot(PyObject *Py_UNUSED(module), PyObject *args)
{
    SnapshotObject *snap;
    Py_ssize_t n;
    if (!PyArg_ParseTuple(args, "O!n:_time_snapshot", &msx_Snapshot_Type, &snap, &n)) {
        return NULL;
    }
    int64_t t0 = now_ns();
    for (Py_ssize_t i = 0; i < n; i++) {
        if (msx_snapshot_take(snap) < 0) {
            return NULL;
        }
    }
    return PyLong_FromLongLong(now_ns() - t0);
}

static PyObject *
time_diff(PyObject *Py_UNUSED(module), PyObject *args)
{
    SnapshotObject *before, *after;
    Py_ssize_t n;
    char buf[16384];
    if (!PyArg_ParseTuple(args, "O!O!n:_time_diff", &msx_Snapshot_Type, &before, &msx_Snapshot_Type,
                          &after, &n)) {
        return NULL;
    }
    if (msx_snapshot_require(before) < 0 || msx_snapshot_require(after) < 0) {
        return NULL;
    }
    size_t total = 0;
    int64_t t0 = now_ns();
    for (Py_ssize_t i = 0; i < n; i++) {
        total += pmt_ms_diff_format(before->stats, after->stats, buf, sizeof(buf));
    }
    int64_t t1 = now_ns();
    (void)total;
    return PyLong_FromLongLong(t1 - t0);
}

static PyMethodDef module_methods[] = {
    {"get_debugmallocstats", get_debugmallocstats, METH_NOARGS,
     "get_debugmallocstats()\n--\n\nThe text sys._debugmallocstats() would write to stderr, "
     "as a str (written into memory, file descriptor 2 untouched)."},
    {"allocator", allocator, METH_NOARGS,
     "allocator()\n--\n\n'pymalloc', 'mimalloc' or 'none': which object allocator "
     "statistics the interpreter writes."},
    {"format_diff", format_diff, METH_VARARGS,
     "format_diff(before, after)\n--\n\nWhat changed between two snapshots."},
    {"_time_writer", time_writer, METH_VARARGS,
     "_time_writer(n, sink)\n--\n\nNanoseconds for n runs of the interpreter's writer alone "
     "into 'devnull' or 'memstream' (for bench/)."},
    {"_time_snapshot", time_snapshot, METH_VARARGS,
     "_time_snapshot(snapshot, n)\n--\n\nNanoseconds for n snapshots with their parse."},
    {"_time_diff", time_diff, METH_VARARGS,
     "_time_diff(before, after, n)\n--\n\nNanoseconds for n formatted diffs."},
    {NULL, NULL, 0, NULL}
};

static struct PyModuleDef module_def = {
    PyModuleDef_HEAD_INIT,
    .m_name = "pymemtrace._mallocstats",
    .m_doc = "Snapshots of the small-object allocator's statistics, parsed in C.",
    .m_size = -1,
    .m_methods = module_methods,
};

PyMODINIT_FUNC
PyInit__mallocstats(void)
{
    if (PyType_Ready(&msx_Snapshot_Type) < 0 || msx_diff_types_ready() < 0) {
        return NULL;
    }
    if (msx_record_pymalloc_allocator() < 0) {
        return NULL;
    }
    PyObject *m = PyModule_Create(&module_def);
    if (m == NULL) {
        return NULL;
    }
    if (PyModule_AddObject(m, "Snapshot", Py_NewRef((PyObject *)&msx_Snapshot_Type)) < 0 ||
        PyModule_AddObject(m, "Diff", Py_NewRef((PyObject *)&msx_Diff_Type)) < 0) {
        Py_DECREF(m);
        return NULL;
    }
    return m;
}

