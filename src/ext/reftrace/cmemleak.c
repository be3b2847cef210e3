/* cmemleak.c: the cMemLeak module, objects that hold a buffer from one of the
 * three allocators (C malloc, PyMem_RawMalloc, PyMem_Malloc) and let a test
 * change their own reference count: the helpers the original pymemtrace's
 * tests use to leak memory on purpose and watch ReferenceTracing see it.
 *
 * cMemLeak.CMalloc(size), cMemLeak.PyRawMalloc(size), cMemLeak.PyMalloc(size):
 * .size, .buffer_address (also .buffer), .refcnt(), .inc_refcnt(n) (n may be negative).
 * Module functions: py_incref(o), py_decref(o), py_refcnt_of_object(o),
 * py_refcnt_of_address(id(o)), py_bytes_of_size(size).
 */
#define PY_SSIZE_T_CLEAN
#include <Python.h>
#include <stdlib.h>
#include <string.h>

#include "../compat.h"

enum { ALLOC_C, ALLOC_RAW, ALLOC_PYMEM };

typedef struct {
    PyObject_HEAD
    Py_ssize_t size;
    char *buffer;
} LeakObject;

static int
alloc_kind(PyTypeObject *type);

static void *
do_alloc(int kind, size_t n)
{
    switch (kind) {
    case ALLOC_C: return malloc(n ? n : 1);
    case ALLOC_RAW: return PyMem_RawMalloc(n ? n : 1);
    default: return PyMem_Malloc(n ? n : 1);
    }
}

static void
do_free(int kind, void *p)
{
    switch (kind) {
    case ALLOC_C: free(p); break;
    case ALLOC_RAW: PyMem_RawFree(p); break;
    default: PyMem_Free(p); break;
    }
}

static int
Leak_init(LeakObject *self, PyObject *args, PyObject *kw)
{
    static char *kwlist[] = {"size", NULL};
    Py_ssize_t size;
    if (!PyArg_ParseTupleAndKeywords(args, kw, "n", kwlist, &size)) {
        return -1;
    }
    if (size < 0) {
        PyErr_Format(PyExc_ValueError, "size must be >= 0, not %zd", size);
        return -1;
    }
    int kind = alloc_kind(Py_TYPE(self));
    char *buf = do_alloc(kind, (size_t)size);
    if (buf == NULL) {
        PyErr_NoMemory();
        return -1;
    }
    /* Touch every byte so the memory is really used (resident). */
    memset(buf, 0x5a, (size_t)size);
    if (self->buffer) {
        do_free(kind, self->buffer);
    }
    self->buffer = buf;
    self->size = size;
    return 0;
}

static void
Leak_dealloc(LeakObject *self)
{
    if (self->buffer) {
        do_free(alloc_kind(Py_TYPE(self)), self->buffer);
    }
    Py_TYPE(self)->tp_free((PyObject *)self);
}

static PyObject *
Leak_get_size(LeakObject *self, void *Py_UNUSED(c))
{
    return PyLong_FromSsize_t(self->size);
}

static PyObject *
Leak_get_address(LeakObject *self, void *Py_UNUSED(c))
{
    return PyLong_FromVoidPtr(self->buffer);
}

static PyObject *
Leak_refcnt(LeakObject *self, PyObject *Py_UNUSED(ignored))
{
    return PyLong_FromSsize_t(Py_REFCNT(self));
}

static PyObject *
Leak_inc_refcnt(LeakObject *self, PyObject *arg)
{
    Py_ssize_t d = PyLong_AsSsize_t(arg);
    if (d == -1 && PyErr_Occurred()) {
        return NULL;
    }
    /* Never drop the count to zero here: that would free self under our feet. */
    if (d < 0 && Py_REFCNT(self) + d < 1) {
        PyErr_Format(PyExc_ValueError, "inc_refcnt(%zd) would free the object "
                     "(its reference count is %zd)", d, Py_REFCNT(self));
        return NULL;
    }
    for (Py_ssize_t i = 0; i < d; i++) {
        Py_INCREF(self);
    }
    for (Py_ssize_t i = 0; i < -d; i++) {
        Py_DECREF(self);
    }
    return PyLong_FromSsize_t(Py_REFCNT(self));
}

static PyMethodDef Leak_methods[] = {
    {"refcnt", (PyCFunction)Leak_refcnt, METH_NOARGS, "This object's reference count."},
    {"inc_refcnt", (PyCFunction)Leak_inc_refcnt, METH_O,
     "Add n (may be negative) to this object's reference count: a positive n leaks it."},
    {NULL, NULL, 0, NULL}
};

static PyGetSetDef Leak_getset[] = {
    {"size", (getter)Leak_get_size, NULL, "Bytes in the buffer.", NULL},
    {"buffer_address", (getter)Leak_get_address, NULL, "Address of the buffer.", NULL},
    {"buffer", (getter)Leak_get_address, NULL, "Address of the buffer (the original's name).",
     NULL},
    {NULL, NULL, NULL, NULL, NULL}
};

#define LEAK_TYPE(cname, pyname, doc)                                         \
    static PyTypeObject cname = {                                             \
        PyVarObject_HEAD_INIT(NULL, 0)                                        \
        .tp_name = "cMemLeak." pyname,                                        \
        .tp_basicsize = sizeof(LeakObject),                                   \
        .tp_dealloc = (destructor)Leak_dealloc,                               \
        .tp_flags = Py_TPFLAGS_DEFAULT | Py_TPFLAGS_BASETYPE,                 \
        .tp_doc = doc,                                                        \
        .tp_methods = Leak_methods,                                           \
        .tp_getset = Leak_getset,                                             \
        .tp_init = (initproc)Leak_init,                                       \
        .tp_new = PyType_GenericNew,                                          \
    }

LEAK_TYPE(CMalloc_Type, "CMalloc", "CMalloc(size): holds size bytes from C malloc().");
LEAK_TYPE(PyRawMalloc_Type, "PyRawMalloc",
          "PyRawMalloc(size): holds size bytes from PyMem_RawMalloc().");
LEAK_TYPE(PyMalloc_Type, "PyMalloc", "PyMalloc(size): holds size bytes from PyMem_Malloc().");

static int
alloc_kind(PyTypeObject *type)
{
    if (PyType_IsSubtype(type, &CMalloc_Type)) {
        return ALLOC_C;
    }
    if (PyType_IsSubtype(type, &PyRawMalloc_Type)) {
        return ALLOC_RAW;
    }
    return ALLOC_PYMEM;
}

static PyObject *
py_incref(PyObject *Py_UNUSED(m), PyObject *o)
{
    Py_INCREF(o);
    Py_RETURN_NONE;
}

static PyObject *
py_decref(PyObject *Py_UNUSED(m), PyObject *o)
{
    if (Py_REFCNT(o) <= 1) {
        return PyErr_Format(PyExc_ValueError, "py_decref() would free the %.100s "
                            "while it is in use (its reference count is %zd)",
                            Py_TYPE(o)->tp_name, Py_REFCNT(o));
    }
    Py_DECREF(o);
    Py_RETURN_NONE;
}

static PyObject *
py_refcnt_of_object(PyObject *Py_UNUSED(m), PyObject *o)
{
    return PyLong_FromSsize_t(Py_REFCNT(o));
}

/* The reference count of the object at an address (from id()), as
 * sys.getrefcount() would give it: counting the reference a call's argument
 * holds, which an address does not.  The address must be a live object. */
static PyObject *
py_refcnt_of_address(PyObject *Py_UNUSED(m), PyObject *arg)
{
    void *p = PyLong_AsVoidPtr(arg);
    if (p == NULL) {
        if (!PyErr_Occurred()) {
            PyErr_SetString(PyExc_ValueError, "py_refcnt_of_address(): the address is 0");
        }
        return NULL;
    }
    PyObject *o = (PyObject *)p;
    /* An immortal object's count is what sys.getrefcount() gives as is. */
    return PyLong_FromSsize_t(Py_REFCNT(o) + (PMT_IS_IMMORTAL(o) ? 0 : 1));
}

static PyObject *
py_bytes_of_size(PyObject *Py_UNUSED(m), PyObject *args, PyObject *kw)
{
    static char *kwlist[] = {"size", NULL};
    Py_ssize_t size;
    if (!PyArg_ParseTupleAndKeywords(args, kw, "n", kwlist, &size)) {
        return NULL;
    }
    if (size < 0) {
        return PyErr_Format(PyExc_ValueError, "size must be >= 0, not %zd", size);
    }
    return PyBytes_FromStringAndSize(NULL, size);
}

static PyMethodDef module_methods[] = {
    {"py_incref", py_incref, METH_O, "Add one reference to the object (leaks it)."},
    {"py_decref", py_decref, METH_O, "Remove one reference (refused if it would free it)."},
    {"py_refcnt_of_object", py_refcnt_of_object, METH_O, "The object's reference count."},
    {"py_refcnt_of_address", py_refcnt_of_address, METH_O,
     "The reference count of the live object at this id(), as sys.getrefcount() gives it."},
    {"py_bytes_of_size", (PyCFunction)(void (*)(void))py_bytes_of_size,
     METH_VARARGS | METH_KEYWORDS, "A bytes object of size bytes (contents undefined)."},
    {NULL, NULL, 0, NULL}
};

static struct PyModuleDef module_def = {
    PyModuleDef_HEAD_INIT, "cMemLeak",
    "Objects that hold memory from each allocator and can be leaked on purpose.",
    -1, module_methods, NULL, NULL, NULL, NULL
};

PyMODINIT_FUNC
PyInit_cMemLeak(void)
{
    PyTypeObject *types[] = {&CMalloc_Type, &PyRawMalloc_Type, &PyMalloc_Type};
    const char *names[] = {"CMalloc", "PyRawMalloc", "PyMalloc"};
    PyObject *m = PyModule_Create(&module_def);
    if (m == NULL) {
        return NULL;
    }
    for (int i = 0; i < 3; i++) {
        if (PyType_Ready(types[i]) < 0 ||
                PyModule_AddObject(m, names[i], Py_NewRef(types[i])) < 0) {
            Py_DECREF(m);
            return NULL;
        }
    }
    return m;
}
