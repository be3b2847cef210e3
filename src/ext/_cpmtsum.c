/* _cpmtsum.c: thin binding over src/core/cpmtsum (the summary of a
 * cPyMemTrace log that `pymemtrace trace report` prints).
 *
 * summarise(path, top) -> dict: the log is read and summarised in C with the
 * GIL released; this module only turns the finished summary into Python
 * objects.  pymemtrace/readers/cpmt_log.py (summarise) is its one user and
 * words the errors.
 */
#define PY_SSIZE_T_CLEAN
#include <Python.h>

#include <errno.h>

#include "cpmtsum.h"

static PyObject *
name_of(const pmt_cpmtsum *s, uint32_t id)
{
    size_t len;
    const char *p = pmt_cpmtsum_name(s, id, &len);
    return PyUnicode_DecodeUTF8(p, (Py_ssize_t)len, "replace");
}

static PyObject *
change_item(const pmt_cpmtsum *s, size_t i)
{
    const pmt_cpmtsum_change *c = &s->largest[i];
    const pmt_cpmtsum_func *f = &s->funcs[c->func];
    return Py_BuildValue("(LLNNNL)", (long long)c->d_rss, (long long)c->event,
                         name_of(s, c->what), name_of(s, f->function), name_of(s, f->file),
                         (long long)c->line);
}

static PyObject *
function_item(const pmt_cpmtsum *s, size_t i)
{
    const pmt_cpmtsum_func *f = &s->funcs[s->by_function[i]];
    return Py_BuildValue("(NNLK)", name_of(s, f->function), name_of(s, f->file),
                         (long long)f->d_rss, (unsigned long long)f->rows);
}

static PyObject *
list_of(const pmt_cpmtsum *s, size_t n, PyObject *(*item)(const pmt_cpmtsum *, size_t))
{
    PyObject *list = PyList_New((Py_ssize_t)n);
    for (size_t i = 0; list && i < n; i++) {
        PyObject *t = item(s, i);
        if (!t) {
            Py_CLEAR(list);
            break;
        }
        PyList_SET_ITEM(list, (Py_ssize_t)i, t);
    }
    return list;
}

static PyObject *
to_dict(const pmt_cpmtsum *s)
{
    PyObject *first = Py_None, *last = Py_None;
    Py_INCREF(first);
    Py_INCREF(last);
    if (s->next_records) {
        Py_DECREF(first);
        first = PyLong_FromLongLong((long long)s->first_rss);
    }
    if (s->records) {
        Py_DECREF(last);
        last = Py_BuildValue("(LLs)", (long long)s->last_rss, (long long)s->last_event,
                             s->last_clock);
    }
    PyObject *largest = list_of(s, s->n_largest, change_item);
    PyObject *funcs = list_of(s, s->n_by_function, function_item);
    if (!first || !last || !largest || !funcs) {
        Py_XDECREF(first);
        Py_XDECREF(last);
        Py_XDECREF(largest);
        Py_XDECREF(funcs);
        return NULL;
    }
    return Py_BuildValue(
        "{sOsOsOsOsOsKsKsKsNsNsNsN}", "regular", Py_True, "header",
        s->seen_header ? Py_True : Py_False, "truncated", s->truncated ? Py_True : Py_False,
        "complete", s->complete ? Py_True : Py_False, "overflow",
        s->overflow ? Py_True : Py_False, "bytes", (unsigned long long)s->bytes, "records",
        (unsigned long long)s->records, "next_records", (unsigned long long)s->next_records,
        "first_rss", first, "last", last, "largest", largest, "by_function", funcs);
}

static PyObject *
cs_summarise(PyObject *self, PyObject *args)
{
    (void)self;
    PyObject *path;
    Py_ssize_t top;
    if (!PyArg_ParseTuple(args, "O&n:summarise", PyUnicode_FSConverter, &path, &top)) {
        return NULL;
    }
    pmt_cpmtsum s;
    pmt_cpmtsum_init(&s, top > 0 ? (size_t)top : 0);
    int rc, err;
    Py_BEGIN_ALLOW_THREADS
    rc = pmt_cpmtsum_read_path(&s, PyBytes_AS_STRING(path));
    err = errno;
    Py_END_ALLOW_THREADS
    PyObject *out = NULL;
    if (rc == PMT_CPMTSUM_ERRNO && err == ENOMEM) {
        PyErr_NoMemory();
    }
    else if (rc == PMT_CPMTSUM_ERRNO) {
        errno = err;
        PyErr_SetFromErrnoWithFilenameObject(PyExc_OSError, path);
    }
    else if (rc == PMT_CPMTSUM_NOT_REGULAR) {
        out = Py_BuildValue("{sO}", "regular", Py_False);
    }
    else {
        out = to_dict(&s);
    }
    pmt_cpmtsum_free(&s);
    Py_DECREF(path);
    return out;
}

static PyMethodDef methods[] = {
    {"summarise", cs_summarise, METH_VARARGS,
     "summarise(path, top) -> dict\n\nRead a cPyMemTrace log once, in C, and return what "
     "`pymemtrace trace report`\nprints: row counts, first and last RSS, the `top` largest "
     "changes and the\nnet change by function.  OSError if it cannot be read; "
     "{'regular': False}\nif it is not a regular file."},
    {NULL, NULL, 0, NULL},
};

static struct PyModuleDef module = {
    PyModuleDef_HEAD_INIT, "_cpmtsum",
    "The summary of a cPyMemTrace log, in one pass (C, src/core/cpmtsum.c).",
    -1, methods, NULL, NULL, NULL, NULL,
};

PyMODINIT_FUNC
PyInit__cpmtsum(void)
{
    return PyModule_Create(&module);
}
