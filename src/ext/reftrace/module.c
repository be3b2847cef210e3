/* module.c: the _reftrace module's types (ReferenceTracing,
 * ReferenceTracingSimple), their arguments and the module itself; the
 * reference tracer and its stack are in tracer.c.  Before CPython 3.13 the
 * module imports and the types exist, but creating one raises RuntimeError
 * naming the missing hook (PyRefTracer_SetTracer). */
#include "reftrace.h"

#include <string.h>

char pmt_rt_py_version[32];

static PyTypeObject RefTrace_Type;
static PyTypeObject RefTraceSimple_Type;

/* ---- construction (every version) ------------------------------------- */

static int
missing_hook(void)
{
    PyErr_Format(PyExc_RuntimeError, "ReferenceTracing needs the interpreter's reference "
                 "tracer hook (PyRefTracer_SetTracer), which CPython %s lacks: it is in "
                 "CPython 3.13 and later%s.", pmt_rt_py_version,
                 PMT_REFTRACER_FREE_THREADED ? " (and not in free-threaded builds)" : "");
    return -1;
}

static PyObject *
names_tuple(PyObject *seq, const char *argname)
{
    if (seq == NULL || seq == Py_None) {
        return PyTuple_New(0);
    }
    if (PyUnicode_Check(seq)) {
        return PyErr_Format(PyExc_TypeError, "%s must be a list of type names, not a str",
                            argname);
    }
    PyObject *t = PySequence_Tuple(seq);
    if (t == NULL) {
        PyErr_Format(PyExc_TypeError, "%s must be a list of type names (str), not %.100s",
                     argname, Py_TYPE(seq)->tp_name);
        return NULL;
    }
    for (Py_ssize_t i = 0; i < PyTuple_GET_SIZE(t); i++) {
        /* PyUnicode_AsUTF8 here also caches the UTF-8 the tracer compares. */
        if (!PyUnicode_Check(PyTuple_GET_ITEM(t, i)) ||
                PyUnicode_AsUTF8(PyTuple_GET_ITEM(t, i)) == NULL) {
            if (PyErr_Occurred()) {
                Py_DECREF(t);
                return NULL;
            }
            PyErr_Format(PyExc_TypeError, "%s[%zd] must be a str (a type name), not %.100s",
                         argname, i, Py_TYPE(PyTuple_GET_ITEM(t, i))->tp_name);
            Py_DECREF(t);
            return NULL;
        }
    }
    return t;
}

static int
RefTrace_init(RefTraceObject *self, PyObject *args, PyObject *kw)
{
    /* No ":name" in the format: the errors read as the original pymemtrace's
     * ("argument 1 must be str, not int", "function takes at most 6 arguments"). */
    static char *kwlist[] = {"message", "filepath", "include_builtins", "exclude_tp_names",
                             "include_tp_names", "gc_collect_on_exit", NULL};
    const char *message = NULL;
    PyObject *filepath = NULL, *exclude = NULL, *include = NULL;
    int include_builtins = 0, gc_gen = 2;
    if (!PyArg_ParseTupleAndKeywords(args, kw, "|sO&pOOi", kwlist, &message,
                                     PyUnicode_FSConverter, &filepath, &include_builtins,
                                     &exclude, &include, &gc_gen)) {
        return -1;
    }
    if (!PMT_HAVE_REFTRACER) {
        Py_XDECREF(filepath);
        return missing_hook();
    }
    if (self->active) {
        Py_XDECREF(filepath);
        PyErr_SetString(PyExc_RuntimeError, "ReferenceTracing.__init__() while it is active");
        return -1;
    }
    if (gc_gen > 2) {
        Py_XDECREF(filepath);
        PyErr_Format(PyExc_ValueError, "gc_collect_on_exit must be a generation 0..2, or "
                     "negative for no collection, not %d", gc_gen);
        return -1;
    }
    PyObject *ex = names_tuple(exclude, "exclude_tp_names");
    PyObject *in = ex ? names_tuple(include, "include_tp_names") : NULL;
    if (in == NULL) {
        Py_XDECREF(ex);
        Py_XDECREF(filepath);
        return -1;
    }
    char *msg = NULL;
    if (message) {
        msg = PyMem_RawMalloc(strlen(message) + 1);
        if (msg == NULL) {
            Py_DECREF(ex);
            Py_DECREF(in);
            Py_XDECREF(filepath);
            PyErr_NoMemory();
            return -1;
        }
        strcpy(msg, message);
    }
    PyMem_RawFree(self->message);
    self->message = msg;
    Py_XSETREF(self->filepath, filepath);
    Py_XSETREF(self->exclude_tp_names, ex);
    Py_XSETREF(self->include_tp_names, in);
    self->include_builtins = include_builtins;
    self->gc_collect_on_exit = gc_gen;
    return 0;
}

static int
RefTraceSimple_init(RefTraceObject *self, PyObject *args, PyObject *kw)
{
    static char *kwlist[] = {NULL};
    (void)self;
    if (!PyArg_ParseTupleAndKeywords(args, kw, "", kwlist)) {
        return -1;
    }
    return PMT_HAVE_REFTRACER ? 0 : missing_hook();
}

static PyObject *
RefTrace_new(PyTypeObject *type, PyObject *Py_UNUSED(a), PyObject *Py_UNUSED(k))
{
    RefTraceObject *self = (RefTraceObject *)type->tp_alloc(type, 0);
    if (self) {
        self->kind = PyType_IsSubtype(type, &RefTraceSimple_Type) ? KIND_SIMPLE : KIND_FULL;
        self->gc_collect_on_exit = 2;
    }
    return (PyObject *)self;
}

static void
RefTrace_dealloc(RefTraceObject *self)
{
    /* An active tracer is referenced by the stack, so it is never freed here. */
    PyMem_RawFree(self->message);
    Py_XDECREF(self->filepath);
    Py_XDECREF(self->exclude_tp_names);
    Py_XDECREF(self->include_tp_names);
    Py_XDECREF(self->final_counts);
    Py_TYPE(self)->tp_free((PyObject *)self);
}

static PyObject *
RefTrace_count_new(RefTraceObject *self, PyObject *Py_UNUSED(ignored))
{
    return PyLong_FromLongLong(self->count_new);
}

static PyObject *
RefTrace_count_del(RefTraceObject *self, PyObject *Py_UNUSED(ignored))
{
    return PyLong_FromLongLong(self->count_del);
}

static PyObject *
RefTrace_get_unseen(RefTraceObject *self, void *Py_UNUSED(c))
{
    return PyLong_FromLongLong(self->unseen_del);
}

static PyGetSetDef RefTrace_getset[] = {
    {"unseen_destructions", (getter)RefTrace_get_unseen, NULL,
     "Objects created in the trace that the interpreter freed without telling the tracer "
     "(found when their address was reused); already taken off the live counts.", NULL},
    {NULL, NULL, NULL, NULL, NULL}
};

static PyObject *
RefTrace_repr(RefTraceObject *self)
{
    return PyUnicode_FromFormat("<%s %s new=%lld del=%lld>", Py_TYPE(self)->tp_name,
                                self->active ? "active" : self->finished ? "finished" : "new",
                                (long long)self->count_new, (long long)self->count_del);
}

#if PMT_HAVE_REFTRACER
#define FULL_METHODS \
    {"__enter__", (PyCFunction)RefTrace_enter, METH_NOARGS, "Start tracing."}, \
    {"__exit__", (PyCFunction)RefTrace_exit, METH_VARARGS, "Stop tracing."},
#define LOG_METHODS \
    {"live_object_counts", (PyCFunction)RefTrace_live_object_counts, METH_NOARGS, \
     "{type name: objects created in the trace and still alive}."}, \
    {"log_file_path", (PyCFunction)RefTrace_log_file_path, METH_NOARGS, \
     "The log's path while active, else None."}, \
    {"write_message_to_log", (PyCFunction)RefTrace_write_message_to_log, METH_O, \
     "Write a MSG line to the log."}, \
    {"suspend", (PyCFunction)RefTrace_suspend, METH_NOARGS, "Ignore events until resume()."}, \
    {"resume", (PyCFunction)RefTrace_resume, METH_NOARGS, "Report events again."},
#else
#define FULL_METHODS
#define LOG_METHODS
#endif

static PyMethodDef RefTrace_methods[] = {
    FULL_METHODS
    {"count_new", (PyCFunction)RefTrace_count_new, METH_NOARGS, "Objects created so far."},
    {"count_del", (PyCFunction)RefTrace_count_del, METH_NOARGS, "Objects destroyed so far."},
    LOG_METHODS
    {NULL, NULL, 0, NULL}
};

static PyMethodDef RefTraceSimple_methods[] = {
    FULL_METHODS
    {"count_new", (PyCFunction)RefTrace_count_new, METH_NOARGS, "Objects created so far."},
    {"count_del", (PyCFunction)RefTrace_count_del, METH_NOARGS, "Objects destroyed so far."},
    {NULL, NULL, 0, NULL}
};

static PyTypeObject RefTrace_Type = {
    PyVarObject_HEAD_INIT(NULL, 0)
    .tp_name = "cPyMemTrace.ReferenceTracing",
    .tp_basicsize = sizeof(RefTraceObject),
    .tp_dealloc = (destructor)RefTrace_dealloc,
    .tp_repr = (reprfunc)RefTrace_repr,
    .tp_flags = Py_TPFLAGS_DEFAULT,
    .tp_doc = "ReferenceTracing(message=None, filepath=None, include_builtins=False, "
              "exclude_tp_names=(), include_tp_names=(), gc_collect_on_exit=2)\n\n"
              "Context manager (CPython 3.13+): log every object creation (NEW) and "
              "destruction (DEL) with its type, the live count of that type, the Python "
              "file, line and function, and RSS.",
    .tp_methods = RefTrace_methods,
    .tp_getset = RefTrace_getset,
    .tp_init = (initproc)RefTrace_init,
    .tp_new = RefTrace_new,
};

static PyTypeObject RefTraceSimple_Type = {
    PyVarObject_HEAD_INIT(NULL, 0)
    .tp_name = "cPyMemTrace.ReferenceTracingSimple",
    .tp_basicsize = sizeof(RefTraceObject),
    .tp_dealloc = (destructor)RefTrace_dealloc,
    .tp_repr = (reprfunc)RefTrace_repr,
    .tp_flags = Py_TPFLAGS_DEFAULT,
    .tp_doc = "ReferenceTracingSimple()\n\nContext manager (CPython 3.13+): count object "
              "creations (count_new()) and destructions (count_del()).",
    .tp_methods = RefTraceSimple_methods,
    .tp_init = (initproc)RefTraceSimple_init,
    .tp_new = RefTrace_new,
};

static PyMethodDef module_methods[] = {
#if PMT_HAVE_REFTRACER
    {"reference_tracing_wrapper_depth", mod_wrapper_depth, METH_NOARGS,
     "Active ReferenceTracing objects."},
    {"reference_tracing_simple_wrapper_depth", mod_simple_wrapper_depth, METH_NOARGS,
     "Active ReferenceTracingSimple objects."},
    {"reference_tracing_log_path", mod_log_path, METH_NOARGS,
     "The innermost active ReferenceTracing's log path, or None."},
    {"reference_tracing_write_message_to_log", mod_write_message_to_log, METH_O,
     "Write a MSG line to the innermost active ReferenceTracing's log."},
    {"reference_tracing_live_object_counts", mod_live_object_counts, METH_NOARGS,
     "live_object_counts() of the innermost active ReferenceTracing."},
    {"_flush_all", mod_flush_all, METH_NOARGS,
     "Write out the active logs' buffers (registered with atexit)."},
#endif
    {NULL, NULL, 0, NULL}
};

static struct PyModuleDef module_def = {
    PyModuleDef_HEAD_INIT, "_reftrace",
    "ReferenceTracing and ReferenceTracingSimple over CPython 3.13+'s reference tracer.",
    -1, module_methods, NULL, NULL, NULL, NULL
};

PyMODINIT_FUNC
PyInit__reftrace(void)
{
    const char *v = Py_GetVersion();
    size_t n = strcspn(v, " ");
    if (n >= sizeof pmt_rt_py_version) {
        n = sizeof pmt_rt_py_version - 1;
    }
    memcpy(pmt_rt_py_version, v, n);
    pmt_rt_py_version[n] = '\0';
    if (PyType_Ready(&RefTrace_Type) < 0 || PyType_Ready(&RefTraceSimple_Type) < 0) {
        return NULL;
    }
    PyObject *m = PyModule_Create(&module_def);
    if (m == NULL) {
        return NULL;
    }
    if (PyModule_AddObject(m, "ReferenceTracing", Py_NewRef(&RefTrace_Type)) < 0 ||
            PyModule_AddObject(m, "ReferenceTracingSimple", Py_NewRef(&RefTraceSimple_Type)) < 0 ||
            PyModule_AddIntConstant(m, "available", PMT_HAVE_REFTRACER) < 0) {
        Py_DECREF(m);
        return NULL;
    }
#if PMT_HAVE_REFTRACER
    PyObject *atexit = PyImport_ImportModule("atexit");
    PyObject *flush = PyObject_GetAttrString(m, "_flush_all");
    PyObject *r = (atexit && flush) ? PyObject_CallMethod(atexit, "register", "O", flush) : NULL;
    Py_XDECREF(atexit);
    Py_XDECREF(flush);
    if (r == NULL) {
        Py_DECREF(m);
        return NULL;
    }
    Py_DECREF(r);
#endif
    return m;
}
