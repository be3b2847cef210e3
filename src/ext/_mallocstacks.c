/* _mallocstacks.c: thin binding over src/core/native_stacks (allocations by stack).
 *
 * stacks(path, top) -> dict: the capture is read, replayed and its top
 * stacks symbolised in C with the GIL released; this module only turns the
 * finished report into Python objects.  Frames are tuples, innermost first:
 * ("python", file, function, line) or ("native", module, symbol, offset,
 * address).
 */
#define PY_SSIZE_T_CLEAN
#include <Python.h>

#include "capture_read.h"
#include "compat.h"
#include "native_stacks.h"

static PyObject *
str_of(const char *s)
{
    return PyUnicode_DecodeUTF8(s, (Py_ssize_t)strlen(s), "replace");
}

static PyObject *
frame_tuple(const pmt_ns_frame *f)
{
    if (f->kind == PMT_CAP_NODE_NATIVE) {
        return Py_BuildValue("(sNNKK)", "native", str_of(f->file), str_of(f->function),
                             (unsigned long long)f->offset, (unsigned long long)f->addr);
    }
    return Py_BuildValue("(sNNi)", "python", str_of(f->file), str_of(f->function),
                         (int)f->line);
}

static PyObject *
stack_dict(const pmt_ns_report *r, const pmt_ns_stack *s)
{
    PyObject *frames = PyList_New((Py_ssize_t)s->n);
    if (!frames) {
        return NULL;
    }
    for (size_t i = 0; i < s->n; i++) {
        PyObject *t = frame_tuple(&r->frames[s->first + i]);
        if (!t) {
            Py_DECREF(frames);
            return NULL;
        }
        PyList_SET_ITEM(frames, (Py_ssize_t)i, t);
    }
    return Py_BuildValue("{sKsKsKsKsIsNsN}", "bytes", (unsigned long long)s->bytes, "count",
                         (unsigned long long)s->count, "live_bytes",
                         (unsigned long long)s->live_bytes, "live_count",
                         (unsigned long long)s->live_count, "thread_id",
                         (unsigned int)s->thread_id, "thread_name",
                         str_of(s->thread_name ? s->thread_name : ""), "frames", frames);
}

static PyObject *
to_dict(const pmt_ns_report *r)
{
    PyObject *stacks = PyList_New((Py_ssize_t)r->n_stacks);
    if (!stacks) {
        return NULL;
    }
    for (size_t i = 0; i < r->n_stacks; i++) {
        PyObject *d = stack_dict(r, &r->stacks[i]);
        if (!d) {
            Py_DECREF(stacks);
            return NULL;
        }
        PyList_SET_ITEM(stacks, (Py_ssize_t)i, d);
    }
    PyObject *changed = r->first_changed ? str_of(r->first_changed) : Py_NewRef(Py_None);
    if (!changed) {
        Py_DECREF(stacks);
        return NULL;
    }
    return Py_BuildValue("{sOsOsnsKsKsnsNsN}", "has_stacks", r->has_stacks ? Py_True : Py_False,
                         "native", r->native ? Py_True : Py_False, "distinct_stacks",
                         (Py_ssize_t)r->distinct, "total_bytes",
                         (unsigned long long)r->total_bytes, "total_count",
                         (unsigned long long)r->total_count, "changed_modules",
                         (Py_ssize_t)r->changed_modules, "first_changed_module", changed,
                         "stacks", stacks);
}

static PyObject *
ms_stacks(PyObject *self, PyObject *args)
{
    (void)self;
    PyObject *bytes;
    Py_ssize_t top;
    if (!PyArg_ParseTuple(args, "O&n:stacks", PyUnicode_FSConverter, &bytes, &top)) {
        return NULL;
    }
    if (top < 1) {
        Py_DECREF(bytes);
        PyErr_Format(PyExc_ValueError, "top must be at least 1, not %zd", top);
        return NULL;
    }
    pmt_ns_report r;
    memset(&r, 0, sizeof(r));
    pmt_capture_file f;
    int rc;
    Py_BEGIN_ALLOW_THREADS
    rc = pmt_capture_file_load(PyBytes_AS_STRING(bytes), &f, r.error, sizeof(r.error));
    if (rc == 0) {
        rc = pmt_ns_read(f.data, f.len, (size_t)top, &r);
        pmt_capture_file_unload(&f);
    }
    Py_END_ALLOW_THREADS
    Py_DECREF(bytes);
    PyObject *d = rc < 0 ? NULL : to_dict(&r);
    if (rc < 0) {
        PyErr_SetString(PyExc_ValueError, r.error);
    }
    pmt_ns_free(&r);
    return d;
}

static PyMethodDef methods[] = {
    {"stacks", ms_stacks, METH_VARARGS,
     "stacks(path, top) -> dict\n\nThe top allocating stacks of a `pymemtrace malloc` "
     "capture by bytes allocated,\nsymbolised (in C).  Raises ValueError naming what is "
     "wrong with a capture that\ncannot be read."},
    {NULL, NULL, 0, NULL},
};

static struct PyModuleDef module = {
    PyModuleDef_HEAD_INIT, "_mallocstacks",
    "Allocations by whole stack from `pymemtrace malloc` captures (C, src/core/native_stacks.c).",
    -1, methods, NULL, NULL, NULL, NULL,
};

PyMODINIT_FUNC
PyInit__mallocstacks(void)
{
    return PyModule_Create(&module);
}
