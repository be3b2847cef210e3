/* tree.c: pymemtrace._process.Tree, one sample of each process of a tree.
 *
 * The engine of pymemtrace.process_tree (the original pymemtrace's
 * process_tree tool): src/core/proctree keeps the /proc descriptors of a
 * process and of its living descendants open between samples (a PID reused
 * by an unrelated process is never followed) and samples each on its own.
 *
 *   Tree(pid, uss=False, fds=False, ctx=False)
 *   sample(rescan=True) -> [(pid, ppid, state, elapsed, rss, vms, uss,
 *                           faults, utime, stime, num_threads, fds, ctx), ...]
 *
 * The root comes first.  Sizes are bytes, times seconds, faults minor plus
 * major; uss is -1 unless uss=True (it reads smaps_rollup, which needs
 * permission to read the process's memory map); fds (open descriptors) and
 * ctx (context switches) are -1 unless asked for, or where they may not be
 * read (another user's process: src/core/procextra).  Sampling runs without the
 * GIL; one thread at a time may sample a Tree.
 */
#define PY_SSIZE_T_CLEAN
#include <Python.h>

#include <errno.h>

#include "compat.h"
#include "procextra.h"
#include "proctree.h"
#include "tree.h"

#define TREE_OUT_MAX (PMT_TREE_MAX + 1)

typedef struct {
    PyObject_HEAD
    pmt_proctree *tree;         /* NULL until __init__ succeeds */
    pmt_procsample *out;        /* TREE_OUT_MAX samples */
    int64_t *fds, *ctx;         /* TREE_OUT_MAX each, when asked for */
    int want_fds, want_ctx;
    int busy;                   /* a thread is sampling (without the GIL) */
} TreeObject;

static PyObject *
tree_error(int e, int pid)
{
    if (e == ESRCH) {
        return PyErr_Format(PyExc_ProcessLookupError, "no process with pid %d "
                            "(or it has exited)", pid);
    }
    if (e == EACCES || e == EPERM) {
        return PyErr_Format(PyExc_PermissionError, "may not read /proc/%d "
                            "(process of another user?)", pid);
    }
    errno = e;
    return PyErr_SetFromErrno(PyExc_OSError);
}

static void
tree_release(TreeObject *self)
{
    if (self->tree != NULL) {
        pmt_tree_close(self->tree);
        PyMem_RawFree(self->tree);
        self->tree = NULL;
    }
    PyMem_RawFree(self->out);
    self->out = NULL;
    PyMem_RawFree(self->fds);     /* ctx is the second half of that block */
    self->fds = NULL;
    self->ctx = NULL;
}

static int
Tree_init(TreeObject *self, PyObject *args, PyObject *kwds)
{
    static char *kwlist[] = {"pid", "uss", "fds", "ctx", NULL};
    int pid, uss = 0, fds = 0, ctx = 0;
    if (!PyArg_ParseTupleAndKeywords(args, kwds, "i|ppp", kwlist, &pid, &uss, &fds, &ctx)) {
        return -1;
    }
    if (self->busy) {
        PyErr_SetString(PyExc_RuntimeError, "Tree is being sampled");
        return -1;
    }
    if (pid <= 0) {
        PyErr_Format(PyExc_ValueError, "pid must be a positive process id, not %d", pid);
        return -1;
    }
    tree_release(self);
    pmt_proctree *t = PyMem_RawMalloc(sizeof(*t));
    pmt_procsample *out = PyMem_RawMalloc(sizeof(*out) * TREE_OUT_MAX);
    int64_t *extra = PyMem_RawMalloc(sizeof(*extra) * 2 * TREE_OUT_MAX);
    if (t == NULL || out == NULL || extra == NULL) {
        PyMem_RawFree(t);
        PyMem_RawFree(out);
        PyMem_RawFree(extra);
        PyErr_NoMemory();
        return -1;
    }
    int rc, e;
    Py_BEGIN_ALLOW_THREADS
    rc = pmt_tree_open(t, pid, uss ? PMT_PS_SMAPS : 0);
    e = errno;
    Py_END_ALLOW_THREADS
    if (rc != 0) {
        PyMem_RawFree(t);
        PyMem_RawFree(out);
        PyMem_RawFree(extra);
        tree_error(e, pid);
        return -1;
    }
    self->tree = t;
    self->out = out;
    self->fds = extra;
    self->ctx = extra + TREE_OUT_MAX;
    self->want_fds = fds;
    self->want_ctx = ctx;
    return 0;
}

static PyObject *
Tree_sample(TreeObject *self, PyObject *args, PyObject *kwds)
{
    static char *kwlist[] = {"rescan", NULL};
    int rescan = 1;
    if (!PyArg_ParseTupleAndKeywords(args, kwds, "|p", kwlist, &rescan)) {
        return NULL;
    }
    if (self->tree == NULL) {
        PyErr_SetString(PyExc_ValueError, "Tree is closed (or was never opened)");
        return NULL;
    }
    if (self->busy) {
        PyErr_SetString(PyExc_RuntimeError, "Tree is being sampled by another thread");
        return NULL;
    }
    self->busy = 1;
    int n, e;
    Py_BEGIN_ALLOW_THREADS
    n = pmt_tree_sample_each(self->tree, self->out, TREE_OUT_MAX, rescan);
    e = errno;
    for (int k = 0; k < n; k++) {
        pid_t p = (pid_t)self->out[k].pid;
        self->fds[k] = self->want_fds ? pmt_proc_count_fds(p) : -1;
        self->ctx[k] = self->want_ctx ? pmt_proc_ctx_switches(p) : -1;
    }
    Py_END_ALLOW_THREADS
    self->busy = 0;
    if (n < 0) {
        return tree_error(e, (int)self->tree->root.pid);
    }
    PyObject *list = PyList_New(n);
    if (list == NULL) {
        return NULL;
    }
    for (int k = 0; k < n; k++) {
        const pmt_procsample *s = &self->out[k];
        PyObject *row = Py_BuildValue(
            "(iiCdLLLLddLLL)", (int)s->pid, (int)s->ppid, (int)(unsigned char)s->state,
            s->elapsed, (long long)s->rss, (long long)s->vms, (long long)s->uss,
            (long long)(s->minflt + s->majflt), s->utime, s->stime,
            (long long)s->num_threads, (long long)self->fds[k], (long long)self->ctx[k]);
        if (row == NULL) {
            Py_DECREF(list);
            return NULL;
        }
        PyList_SET_ITEM(list, k, row);
    }
    return list;
}

static PyObject *
Tree_close(TreeObject *self, PyObject *Py_UNUSED(ignored))
{
    if (self->busy) {
        PyErr_SetString(PyExc_RuntimeError, "Tree is being sampled by another thread");
        return NULL;
    }
    tree_release(self);
    Py_RETURN_NONE;
}

static PyObject *
Tree_get_truncated(TreeObject *self, void *Py_UNUSED(closure))
{
    return PyBool_FromLong(self->tree != NULL && self->tree->truncated);
}

static void
Tree_dealloc(TreeObject *self)
{
    tree_release(self);
    Py_TYPE(self)->tp_free((PyObject *)self);
}

static PyMethodDef Tree_methods[] = {
    {"sample", (PyCFunction)(void (*)(void))Tree_sample, METH_VARARGS | METH_KEYWORDS,
     "sample(rescan=True)\n--\n\nOne sample of each process, the root first: a list of "
     "(pid, ppid, state, elapsed, rss, vms, uss, faults, utime, stime, num_threads, fds, ctx)."},
    {"close", (PyCFunction)Tree_close, METH_NOARGS,
     "close()\n--\n\nClose the /proc descriptors (idempotent)."},
    {NULL, NULL, 0, NULL},
};

static PyGetSetDef Tree_getset[] = {
    {"truncated", (getter)Tree_get_truncated, NULL,
     "More descendants than can be followed were seen at the last rescan.", NULL},
    {NULL, NULL, NULL, NULL, NULL},
};

static PyTypeObject TreeType = {
    PyVarObject_HEAD_INIT(NULL, 0)
    .tp_name = "pymemtrace._process.Tree",
    .tp_basicsize = sizeof(TreeObject),
    .tp_flags = Py_TPFLAGS_DEFAULT,
    .tp_doc = "Tree(pid, uss=False, fds=False, ctx=False)\n\nA process and its living descendants, each "
              "sampled on its own (the root first).",
    .tp_new = PyType_GenericNew,
    .tp_init = (initproc)Tree_init,
    .tp_dealloc = (destructor)Tree_dealloc,
    .tp_methods = Tree_methods,
    .tp_getset = Tree_getset,
};

int
pmt_tree_type_add(PyObject *m)
{
    if (PyType_Ready(&TreeType) < 0) {
        return -1;
    }
    Py_INCREF(&TreeType);
    if (PyModule_AddObject(m, "Tree", (PyObject *)&TreeType) < 0) {
        Py_DECREF(&TreeType);
        return -1;
    }
    return 0;
}
