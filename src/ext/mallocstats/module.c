/* module.c: the _mallocstats extension: snapshots of CPython's small-object
 * allocator statistics (snapshot.c), their diff (diff.c), the text the
 * interpreter writes (writer.c).  Timing helpers for bench/ are in
 * bench/ext/_mallocstats_bench.c (built, never installed).
 */
#define PY_SSIZE_T_CLEAN
#include <Python.h>

#include <string.h>

#include "mallocstats_diff.h"
#include "mallocstats_ext.h"

/* ---- module functions ----------------------------------------------------------------- */

/* The text the interpreter's statistics writers produce, in a new raw
 * buffer (*pymalloc: whether pymalloc is in use); NULL with OSError set. */
static char *
writer_text(size_t *len, int *pymalloc)
{
    char *buf = NULL;
    size_t cap = 0;
    *len = 0;
    if (msx_run_writer(&buf, &cap, len, pymalloc) < 0) {
        PyMem_RawFree(buf);
        PyErr_SetFromErrno(PyExc_OSError);
        return NULL;
    }
    return buf;
}

static PyObject *
get_debugmallocstats(PyObject *Py_UNUSED(module), PyObject *Py_UNUSED(ignored))
{
    size_t len;
    int pymalloc;
    char *buf = writer_text(&len, &pymalloc);
    if (buf == NULL) {
        return NULL;
    }
    PyObject *res = PyUnicode_DecodeUTF8(buf, (Py_ssize_t)len, "replace");
    PyMem_RawFree(buf);
    return res;
}

/* 'pymalloc', 'mimalloc' or 'none' (PYTHONMALLOC=malloc, --without-pymalloc). */
static PyObject *
allocator(PyObject *Py_UNUSED(module), PyObject *Py_UNUSED(ignored))
{
    size_t len;
    int pymalloc;
    char *buf = writer_text(&len, &pymalloc);
    if (buf == NULL) {
        return NULL;
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

static PyMethodDef module_methods[] = {
    {"get_debugmallocstats", get_debugmallocstats, METH_NOARGS,
     "get_debugmallocstats()\n--\n\nThe text sys._debugmallocstats() would write to stderr, "
     "as a str (written into memory, file descriptor 2 untouched)."},
    {"allocator", allocator, METH_NOARGS,
     "allocator()\n--\n\n'pymalloc', 'mimalloc' or 'none': which object allocator "
     "statistics the interpreter writes."},
    {"format_diff", format_diff, METH_VARARGS,
     "format_diff(before, after)\n--\n\nWhat changed between two snapshots."},
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

