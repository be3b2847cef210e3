/* snapshot.c: the Snapshot type: the allocator statistics at one moment,
 * the text the interpreter wrote (into memory, writer.c) and its parse
 * (src/core/mallocstats_parse, into a fixed struct owned by the snapshot);
 * taking one creates no Python object.
 */
#define PY_SSIZE_T_CLEAN
#include <Python.h>

#include <stdint.h>
#include <string.h>

#include "mallocstats_diff.h"
#include "mallocstats_ext.h"


static PyObject *
Snapshot_new(PyTypeObject *type, PyObject *Py_UNUSED(args), PyObject *Py_UNUSED(kw))
{
    SnapshotObject *self = (SnapshotObject *)type->tp_alloc(type, 0);
    if (self == NULL) {
        return NULL;
    }
    self->stats = PyMem_RawCalloc(1, sizeof(pmt_mallocstats_t));
    if (self->stats == NULL) {
        Py_DECREF(self);
        return PyErr_NoMemory();
    }
    return (PyObject *)self;
}

static void
Snapshot_dealloc(SnapshotObject *self)
{
    PyMem_RawFree(self->stats);
    PyMem_RawFree(self->text);
    Py_TYPE(self)->tp_free((PyObject *)self);
}

int
msx_snapshot_take(SnapshotObject *self)
{
    size_t len = 0;
    int pymalloc = 0;
    if (msx_run_writer(&self->text, &self->cap, &len, &pymalloc) < 0) {
        PyErr_SetFromErrno(PyExc_OSError);
        return -1;
    }
    self->len = len;
    self->writer_true = pymalloc;
    pmt_ms_parse(self->text, len, self->stats);
    self->taken = 1;
    return 0;
}

static int
snapshot_set_text(SnapshotObject *self, const char *text, Py_ssize_t n, int check)
{
    char *nb = PyMem_RawRealloc(self->text, (size_t)n + 1);
    if (nb == NULL) {
        PyErr_NoMemory();
        return -1;
    }
    memcpy(nb, text, (size_t)n);
    nb[n] = '\0';
    self->text = nb;
    self->cap = (size_t)n + 1;
    self->len = (size_t)n;
    pmt_ms_parse(self->text, self->len, self->stats);
    char err[256];
    if (check && pmt_ms_check(self->text, self->len, self->stats, err, sizeof(err)) < 0) {
        self->taken = 0;
        PyErr_Format(PyExc_ValueError, "text is %s", err);
        return -1;
    }
    self->writer_true = self->stats->pymalloc || self->stats->mimalloc;
    self->taken = 1;
    return 0;
}

static int
Snapshot_init(SnapshotObject *self, PyObject *args, PyObject *kw)
{
    static char *kwlist[] = {"text", "take", "check", NULL};
    PyObject *text = Py_None;
    int take = 1, check = 1;
    if (!PyArg_ParseTupleAndKeywords(args, kw, "|O$pp:SysDebugMallocStats", kwlist, &text, &take,
                                     &check)) {
        return -1;
    }
    if (text != Py_None) {
        Py_ssize_t n;
        const char *s;
        if (!PyUnicode_Check(text)) {
            PyErr_Format(PyExc_TypeError, "text must be a str (the output of "
                         "sys._debugmallocstats()) or None, not %.100s", Py_TYPE(text)->tp_name);
            return -1;
        }
        s = PyUnicode_AsUTF8AndSize(text, &n);
        if (s == NULL) {
            return -1;
        }
        return snapshot_set_text(self, s, n, check);
    }
    if (take) {
        return msx_snapshot_take(self);
    }
    return 0;
}

int
msx_snapshot_require(SnapshotObject *self)
{
    if (!self->taken) {
        PyErr_Format(PyExc_RuntimeError, "this %.100s has no statistics yet: take() it first",
                     Py_TYPE(self)->tp_name);
        return -1;
    }
    return 0;
}

static PyObject *
Snapshot_take_meth(SnapshotObject *self, PyObject *Py_UNUSED(ignored))
{
    if (msx_snapshot_take(self) < 0) {
        return NULL;
    }
    Py_RETURN_NONE;
}

static PyObject *
Snapshot_get_text(SnapshotObject *self, void *Py_UNUSED(closure))
{
    if (msx_snapshot_require(self) < 0) {
        return NULL;
    }
    return PyUnicode_DecodeUTF8(self->text, (Py_ssize_t)self->len, "replace");
}

static PyObject *
Snapshot_get_taken(SnapshotObject *self, void *Py_UNUSED(closure))
{
    return PyBool_FromLong(self->taken);
}

/* The parsed scalars, one getter told by its closure which. */
enum { F_PYMALLOC, F_MIMALLOC, F_THRESHOLD, F_NUM_SIZE_CLASSES, F_UNPARSED };

static PyObject *
Snapshot_get_scalar(SnapshotObject *self, void *closure)
{
    if (msx_snapshot_require(self) < 0) {
        return NULL;
    }
    const pmt_mallocstats_t *s = self->stats;
    switch ((int)(intptr_t)closure) {
    case F_PYMALLOC:
        return PyBool_FromLong(s->pymalloc);
    case F_MIMALLOC:
        return PyBool_FromLong(s->mimalloc);
    case F_THRESHOLD:
        return PyLong_FromLongLong(s->small_block_threshold);
    case F_NUM_SIZE_CLASSES:
        return PyLong_FromLongLong(s->num_size_classes);
    default:
        return PyLong_FromLong(s->nunparsed + s->ntruncated);
    }
}

/* [(index, size, num_pools, blocks_in_use, avail_blocks), ...] */
static PyObject *
Snapshot_get_classes(SnapshotObject *self, void *Py_UNUSED(closure))
{
    if (msx_snapshot_require(self) < 0) {
        return NULL;
    }
    const pmt_mallocstats_t *s = self->stats;
    PyObject *list = PyList_New(s->nclasses);
    if (list == NULL) {
        return NULL;
    }
    for (int i = 0; i < s->nclasses; i++) {
        const pmt_ms_class_t *c = &s->classes[i];
        PyObject *t = Py_BuildValue("(IILLL)", c->index, c->size, (long long)c->num_pools,
                                    (long long)c->blocks_in_use, (long long)c->avail_blocks);
        if (t == NULL) {
            Py_DECREF(list);
            return NULL;
        }
        PyList_SET_ITEM(list, i, t);
    }
    return list;
}

/* [(section, label, count or None, value), ...] */
static PyObject *
Snapshot_get_values(SnapshotObject *self, void *Py_UNUSED(closure))
{
    if (msx_snapshot_require(self) < 0) {
        return NULL;
    }
    const pmt_mallocstats_t *s = self->stats;
    PyObject *list = PyList_New(s->nvalues);
    if (list == NULL) {
        return NULL;
    }
    for (int i = 0; i < s->nvalues; i++) {
        const pmt_ms_value_t *v = &s->values[i];
        PyObject *count = v->has_count ? PyLong_FromLongLong(v->count) : Py_NewRef(Py_None);
        PyObject *t = count ? Py_BuildValue("(ssNL)", pmt_ms_section_name(v->section), v->label,
                                            count, (long long)v->value) : NULL;
        if (t == NULL) {
            Py_DECREF(list);
            return NULL;
        }
        PyList_SET_ITEM(list, i, t);
    }
    return list;
}

/* [(name, count, size_each, total), ...] */
static PyObject *
Snapshot_get_freelists(SnapshotObject *self, void *Py_UNUSED(closure))
{
    if (msx_snapshot_require(self) < 0) {
        return NULL;
    }
    const pmt_mallocstats_t *s = self->stats;
    PyObject *list = PyList_New(s->nfreelists);
    if (list == NULL) {
        return NULL;
    }
    for (int i = 0; i < s->nfreelists; i++) {
        const pmt_ms_freelist_t *f = &s->freelists[i];
        PyObject *t = Py_BuildValue("(sLLL)", f->name, (long long)f->count,
                                    (long long)f->size_each, (long long)f->total);
        if (t == NULL) {
            Py_DECREF(list);
            return NULL;
        }
        PyList_SET_ITEM(list, i, t);
    }
    return list;
}

PyObject *
msx_format_diff_text(SnapshotObject *before, SnapshotObject *after)
{
    char stackbuf[8192];
    size_t n = pmt_ms_diff_format(before->stats, after->stats, stackbuf, sizeof(stackbuf));
    if (n < sizeof(stackbuf)) {
        return PyUnicode_DecodeUTF8(stackbuf, (Py_ssize_t)n, "replace");
    }
    char *buf = PyMem_RawMalloc(n + 1);
    if (buf == NULL) {
        return PyErr_NoMemory();
    }
    pmt_ms_diff_format(before->stats, after->stats, buf, n + 1);
    PyObject *res = PyUnicode_DecodeUTF8(buf, (Py_ssize_t)n, "replace");
    PyMem_RawFree(buf);
    return res;
}

static PyObject *
Snapshot_diff_from(SnapshotObject *self, PyObject *before)
{
    if (!Snapshot_Check(before)) {
        PyErr_Format(PyExc_TypeError, "before must be a SysDebugMallocStats, not %.100s",
                     Py_TYPE(before)->tp_name);
        return NULL;
    }
    if (msx_snapshot_require(self) < 0 || msx_snapshot_require((SnapshotObject *)before) < 0) {
        return NULL;
    }
    return msx_format_diff_text((SnapshotObject *)before, self);
}

static PyMethodDef Snapshot_methods[] = {
    {"take", (PyCFunction)Snapshot_take_meth, METH_NOARGS,
     "take()\n--\n\nTake a new snapshot into this object (no Python object is created)."},
    {"diff_from", (PyCFunction)Snapshot_diff_from, METH_O,
     "diff_from(before)\n--\n\nWhat changed from before to this snapshot, in "
     "sys._debugmallocstats()'s layout with signed deltas."},
    {NULL, NULL, 0, NULL}
};

static PyGetSetDef Snapshot_getset[] = {
    {"text", (getter)Snapshot_get_text, NULL, "The text the interpreter wrote.", NULL},
    {"taken", (getter)Snapshot_get_taken, NULL, "True once the snapshot holds statistics.", NULL},
    {"pymalloc", (getter)Snapshot_get_scalar, NULL, "pymalloc's statistics are present.",
     (void *)(intptr_t)F_PYMALLOC},
    {"mimalloc", (getter)Snapshot_get_scalar, NULL, "mimalloc's statistics are present.",
     (void *)(intptr_t)F_MIMALLOC},
    {"small_block_threshold", (getter)Snapshot_get_scalar, NULL,
     "Largest request served by the small-object allocator (bytes).",
     (void *)(intptr_t)F_THRESHOLD},
    {"num_size_classes", (getter)Snapshot_get_scalar, NULL,
     "Number of size classes the allocator has.", (void *)(intptr_t)F_NUM_SIZE_CLASSES},
    {"unparsed_lines", (getter)Snapshot_get_scalar, NULL,
     "Non-blank lines the parser did not understand (0 for a known layout).",
     (void *)(intptr_t)F_UNPARSED},
    {"_classes", (getter)Snapshot_get_classes, NULL,
     "[(index, size, num_pools, blocks_in_use, avail_blocks)]", NULL},
    {"_values", (getter)Snapshot_get_values, NULL, "[(section, label, count, value)]", NULL},
    {"_free_lists", (getter)Snapshot_get_freelists, NULL,
     "[(name, count, size_each, total)]", NULL},
    {NULL, NULL, NULL, NULL, NULL}
};

PyTypeObject msx_Snapshot_Type = {
    PyVarObject_HEAD_INIT(NULL, 0)
    .tp_name = "pymemtrace._mallocstats.Snapshot",
    .tp_basicsize = sizeof(SnapshotObject),
    .tp_dealloc = (destructor)Snapshot_dealloc,
    .tp_flags = Py_TPFLAGS_DEFAULT | Py_TPFLAGS_BASETYPE,
    .tp_doc = "Snapshot(text=None, *, take=True, check=True)\n--\n\n"
              "The small-object allocator's statistics, parsed in C.  With text, parse "
              "that text (ValueError if it is not allocator statistics, unless check is "
              "False: one block of them); otherwise take a snapshot now unless take is False.",
    .tp_methods = Snapshot_methods,
    .tp_getset = Snapshot_getset,
    .tp_init = (initproc)Snapshot_init,
    .tp_new = Snapshot_new,
};

