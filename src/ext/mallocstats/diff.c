/* diff.c: the Diff context manager (DiffSysDebugMallocStats): a snapshot
 * before and after a block.  Its __enter__ and __exit__ are looked up without
 * allocating: they are descriptors that hand back callables the Diff object
 * made when it was created (a method would make a new bound method object at
 * each lookup, and the one for __enter__ would be freed right after the first
 * snapshot, showing up in the diff).  So between the two snapshots the
 * machinery allocates and frees nothing from pymalloc.
 */
#define PY_SSIZE_T_CLEAN
#include <Python.h>
#include <structmember.h>

#include "mallocstats_ext.h"

enum { SLOT_ENTER = 0, SLOT_EXIT = 1 };
enum { STATE_NEW = 0, STATE_ACTIVE, STATE_FINISHED };

typedef struct DiffObject DiffObject;

typedef struct {
    PyObject_HEAD
    vectorcallfunc vectorcall;
    DiffObject *owner;      /* strong: `with Diff():` keeps no other reference */
    int which;
} BoundSlotObject;

struct DiffObject {
    PyObject_HEAD
    SnapshotObject *before;
    SnapshotObject *after;
    BoundSlotObject *slots[2];
    int state;
};

typedef struct {
    PyObject_HEAD
    vectorcallfunc vectorcall;
    int which;
} SlotDescrObject;

static PyTypeObject BoundSlot_Type;
static PyTypeObject SlotDescr_Type;

#define Diff_Check(op) PyObject_TypeCheck(op, &msx_Diff_Type)

static PyObject *
diff_enter(DiffObject *self)
{
    if (self->state == STATE_ACTIVE) {
        PyErr_Format(PyExc_RuntimeError, "this %.100s is already active; use a new one to nest",
                     Py_TYPE(self)->tp_name);
        return NULL;
    }
    if (msx_snapshot_take(self->before) < 0) {
        return NULL;
    }
    self->state = STATE_ACTIVE;
    return Py_NewRef((PyObject *)self);
}

static PyObject *
diff_exit(DiffObject *self)
{
    if (self->state != STATE_ACTIVE) {
        PyErr_Format(PyExc_RuntimeError, "%.100s.__exit__() called without __enter__()",
                     Py_TYPE(self)->tp_name);
        return NULL;
    }
    /* The block has ended whatever happens next. */
    self->state = STATE_FINISHED;
    if (msx_snapshot_take(self->after) < 0) {
        self->after->taken = 0;
        return NULL;
    }
    Py_RETURN_FALSE;
}

static PyObject *
dispatch_slot(DiffObject *owner, int which, size_t nargs)
{
    if (owner->before == NULL || owner->after == NULL) {
        PyErr_Format(PyExc_RuntimeError, "%.100s.__init__() was not called",
                     Py_TYPE(owner)->tp_name);
        return NULL;
    }
    if (which == SLOT_ENTER) {
        if (nargs != 0) {
            PyErr_SetString(PyExc_TypeError, "__enter__() takes no arguments");
            return NULL;
        }
        return diff_enter(owner);
    }
    if (nargs != 3) {
        PyErr_SetString(PyExc_TypeError, "__exit__() takes exactly 3 arguments");
        return NULL;
    }
    return diff_exit(owner);
}

static PyObject *
BoundSlot_vectorcall(PyObject *callable, PyObject *const *Py_UNUSED(args), size_t nargsf,
                     PyObject *kwnames)
{
    BoundSlotObject *slot = (BoundSlotObject *)callable;
    if (kwnames != NULL && PyTuple_GET_SIZE(kwnames)) {
        PyErr_SetString(PyExc_TypeError, "no keyword arguments accepted");
        return NULL;
    }
    if (slot->owner == NULL) {
        PyErr_SetString(PyExc_ReferenceError, "the DiffSysDebugMallocStats has been cleared");
        return NULL;
    }
    return dispatch_slot(slot->owner, slot->which, PyVectorcall_NARGS(nargsf));
}

static int
BoundSlot_traverse(BoundSlotObject *self, visitproc visit, void *arg)
{
    Py_VISIT(self->owner);
    return 0;
}

static int
BoundSlot_clear(BoundSlotObject *self)
{
    Py_CLEAR(self->owner);
    return 0;
}

static void
BoundSlot_dealloc(BoundSlotObject *self)
{
    PyObject_GC_UnTrack(self);
    Py_CLEAR(self->owner);
    PyObject_GC_Del(self);
}

static PyTypeObject BoundSlot_Type = {
    PyVarObject_HEAD_INIT(NULL, 0)
    .tp_name = "pymemtrace._mallocstats.BoundSlot",
    .tp_basicsize = sizeof(BoundSlotObject),
    .tp_dealloc = (destructor)BoundSlot_dealloc,
    .tp_vectorcall_offset = offsetof(BoundSlotObject, vectorcall),
    .tp_call = PyVectorcall_Call,
    .tp_flags = Py_TPFLAGS_DEFAULT | Py_TPFLAGS_HAVE_VECTORCALL | Py_TPFLAGS_HAVE_GC,
    .tp_traverse = (traverseproc)BoundSlot_traverse,
    .tp_clear = (inquiry)BoundSlot_clear,
    .tp_doc = "__enter__ or __exit__ of one DiffSysDebugMallocStats (made once, reused).",
};

/* Unbound use: type(d).__enter__(d), as contextlib.ExitStack does. */
static PyObject *
SlotDescr_vectorcall(PyObject *callable, PyObject *const *args, size_t nargsf, PyObject *kwnames)
{
    SlotDescrObject *descr = (SlotDescrObject *)callable;
    size_t nargs = PyVectorcall_NARGS(nargsf);
    if (kwnames != NULL && PyTuple_GET_SIZE(kwnames)) {
        PyErr_SetString(PyExc_TypeError, "no keyword arguments accepted");
        return NULL;
    }
    if (nargs < 1 || !Diff_Check(args[0])) {
        PyErr_Format(PyExc_TypeError, "%s needs a DiffSysDebugMallocStats as first argument",
                     descr->which == SLOT_ENTER ? "__enter__" : "__exit__");
        return NULL;
    }
    return dispatch_slot((DiffObject *)args[0], descr->which, nargs - 1);
}

static PyObject *
SlotDescr_get(PyObject *self, PyObject *obj, PyObject *Py_UNUSED(type))
{
    if (obj == NULL || obj == Py_None || !Diff_Check(obj)) {
        return Py_NewRef(self);
    }
    DiffObject *diff = (DiffObject *)obj;
    BoundSlotObject *slot = diff->slots[((SlotDescrObject *)self)->which];
    if (slot == NULL) {
        PyErr_SetString(PyExc_ReferenceError, "the DiffSysDebugMallocStats has been cleared");
        return NULL;
    }
    return Py_NewRef((PyObject *)slot);
}

static void
SlotDescr_dealloc(SlotDescrObject *self)
{
    PyObject_Free(self);
}

static PyTypeObject SlotDescr_Type = {
    PyVarObject_HEAD_INIT(NULL, 0)
    .tp_name = "pymemtrace._mallocstats.SlotDescr",
    .tp_basicsize = sizeof(SlotDescrObject),
    .tp_dealloc = (destructor)SlotDescr_dealloc,
    .tp_vectorcall_offset = offsetof(SlotDescrObject, vectorcall),
    .tp_call = PyVectorcall_Call,
    .tp_descr_get = SlotDescr_get,
    .tp_flags = Py_TPFLAGS_DEFAULT | Py_TPFLAGS_HAVE_VECTORCALL,
    .tp_doc = "Hands out a DiffSysDebugMallocStats's own __enter__/__exit__ without allocating.",
};

static PyObject *
Diff_new(PyTypeObject *type, PyObject *Py_UNUSED(args), PyObject *Py_UNUSED(kw))
{
    DiffObject *self = (DiffObject *)type->tp_alloc(type, 0);
    if (self == NULL) {
        return NULL;
    }
    for (int i = 0; i < 2; i++) {
        BoundSlotObject *slot = PyObject_GC_New(BoundSlotObject, &BoundSlot_Type);
        if (slot == NULL) {
            Py_DECREF(self);
            return NULL;
        }
        slot->vectorcall = BoundSlot_vectorcall;
        Py_INCREF(self);
        slot->owner = self;
        slot->which = i;
        self->slots[i] = slot;
        PyObject_GC_Track(slot);
    }
    return (PyObject *)self;
}

static int
Diff_init(DiffObject *self, PyObject *args, PyObject *kw)
{
    static char *kwlist[] = {"before", "after", NULL};
    PyObject *before = NULL, *after = NULL;
    if (!PyArg_ParseTupleAndKeywords(args, kw, "|OO:DiffSysDebugMallocStats", kwlist,
                                     &before, &after)) {
        return -1;
    }
    if (self->state == STATE_ACTIVE) {
        PyErr_SetString(PyExc_RuntimeError, "cannot re-initialise an active DiffSysDebugMallocStats");
        return -1;
    }
    if (before == NULL) {
        before = PyObject_CallObject((PyObject *)&msx_Snapshot_Type, NULL);
    }
    else {
        Py_INCREF(before);
    }
    if (before == NULL) {
        return -1;
    }
    if (after == NULL) {
        after = PyObject_CallObject((PyObject *)&msx_Snapshot_Type, NULL);
    }
    else {
        Py_INCREF(after);
    }
    if (after == NULL) {
        Py_DECREF(before);
        return -1;
    }
    if (!Snapshot_Check(before) || !Snapshot_Check(after) || before == after) {
        PyErr_SetString(PyExc_TypeError, "before and after must be two distinct "
                        "SysDebugMallocStats snapshots");
        Py_DECREF(before);
        Py_DECREF(after);
        return -1;
    }
    /* Size both text buffers now so that taking the snapshots later
     * normally needs no allocation at all. */
    SnapshotObject *b = (SnapshotObject *)before, *a = (SnapshotObject *)after;
    if (msx_snapshot_take(b) < 0) {
        Py_DECREF(before);
        Py_DECREF(after);
        return -1;
    }
    size_t want = b->cap > 2 * b->len ? b->cap : 4 * b->len;
    for (int i = 0; i < 2; i++) {
        SnapshotObject *s = i ? a : b;
        if (s->cap < want) {
            char *nb = PyMem_RawRealloc(s->text, want);
            if (nb == NULL) {
                Py_DECREF(before);
                Py_DECREF(after);
                PyErr_NoMemory();
                return -1;
            }
            s->text = nb;
            s->cap = want;
        }
    }
    Py_XSETREF(self->before, b);
    Py_XSETREF(self->after, a);
    self->state = STATE_NEW;
    return 0;
}

/* Diff <-> its two slots is a reference cycle (the slots must keep the
 * Diff alive: `with Diff():` holds nothing else); the cyclic GC frees it. */
static int
Diff_traverse(DiffObject *self, visitproc visit, void *arg)
{
    Py_VISIT(self->before);
    Py_VISIT(self->after);
    Py_VISIT(self->slots[0]);
    Py_VISIT(self->slots[1]);
    return 0;
}

static int
Diff_clear(DiffObject *self)
{
    Py_CLEAR(self->before);
    Py_CLEAR(self->after);
    Py_CLEAR(self->slots[0]);
    Py_CLEAR(self->slots[1]);
    return 0;
}

static void
Diff_dealloc(DiffObject *self)
{
    PyObject_GC_UnTrack(self);
    Diff_clear(self);
    Py_TYPE(self)->tp_free((PyObject *)self);
}

static PyObject *
Diff_diff(DiffObject *self, PyObject *Py_UNUSED(ignored))
{
    if (self->state != STATE_FINISHED || self->before == NULL || self->after == NULL) {
        PyErr_Format(PyExc_RuntimeError, "%.100s.diff() called before the with block %s",
                     Py_TYPE(self)->tp_name, self->state == STATE_NEW ? "started" : "ended");
        return NULL;
    }
    if (!self->after->taken) {
        PyErr_Format(PyExc_RuntimeError, "%.100s: the finishing snapshot failed",
                     Py_TYPE(self)->tp_name);
        return NULL;
    }
    return msx_format_diff_text(self->before, self->after);
}

static PyObject *
Diff_get_snapshot(DiffObject *self, void *closure)
{
    SnapshotObject *s = closure ? self->after : self->before;
    if (s == NULL) {
        PyErr_Format(PyExc_RuntimeError, "%.100s.__init__() was not called", Py_TYPE(self)->tp_name);
        return NULL;
    }
    return Py_NewRef((PyObject *)s);
}

static PyObject *
Diff_get_finished(DiffObject *self, void *Py_UNUSED(closure))
{
    return PyBool_FromLong(self->state == STATE_FINISHED);
}

static PyObject *
Diff_get_active(DiffObject *self, void *Py_UNUSED(closure))
{
    return PyBool_FromLong(self->state == STATE_ACTIVE);
}

static PyMethodDef Diff_methods[] = {
    {"diff", (PyCFunction)Diff_diff, METH_NOARGS,
     "diff()\n--\n\nWhat the block changed, in sys._debugmallocstats()'s layout: only "
     "what changed, signed deltas."},
    {NULL, NULL, 0, NULL}
};

static PyGetSetDef Diff_getset[] = {
    {"before", (getter)Diff_get_snapshot, NULL, "The snapshot taken as the block started.", NULL},
    {"after", (getter)Diff_get_snapshot, NULL, "The snapshot taken as the block ended.",
     (void *)1},
    {"finished", (getter)Diff_get_finished, NULL, "The block has ended.", NULL},
    {"active", (getter)Diff_get_active, NULL, "The block is running.", NULL},
    {NULL, NULL, NULL, NULL, NULL}
};

PyTypeObject msx_Diff_Type = {
    PyVarObject_HEAD_INIT(NULL, 0)
    .tp_name = "pymemtrace._mallocstats.Diff",
    .tp_basicsize = sizeof(DiffObject),
    .tp_dealloc = (destructor)Diff_dealloc,
    .tp_flags = Py_TPFLAGS_DEFAULT | Py_TPFLAGS_BASETYPE | Py_TPFLAGS_HAVE_GC,
    .tp_traverse = (traverseproc)Diff_traverse,
    .tp_clear = (inquiry)Diff_clear,
    .tp_doc = "Diff(before=None, after=None)\n--\n\n"
              "Context manager: snapshot the small-object allocator on entry and exit.",
    .tp_methods = Diff_methods,
    .tp_getset = Diff_getset,
    .tp_init = (initproc)Diff_init,
    .tp_new = Diff_new,
};


static int
add_slot_descr(PyTypeObject *type, const char *name, int which)
{
    SlotDescrObject *d = PyObject_New(SlotDescrObject, &SlotDescr_Type);
    if (d == NULL) {
        return -1;
    }
    d->vectorcall = SlotDescr_vectorcall;
    d->which = which;
    int r = PyDict_SetItemString(type->tp_dict, name, (PyObject *)d);
    Py_DECREF(d);
    return r;
}

int
msx_diff_types_ready(void)
{
    if (PyType_Ready(&BoundSlot_Type) < 0 || PyType_Ready(&SlotDescr_Type) < 0 ||
        PyType_Ready(&msx_Diff_Type) < 0) {
        return -1;
    }
    if (add_slot_descr(&msx_Diff_Type, "__enter__", SLOT_ENTER) < 0 ||
        add_slot_descr(&msx_Diff_Type, "__exit__", SLOT_EXIT) < 0) {
        return -1;
    }
    PyType_Modified(&msx_Diff_Type);
    return 0;
}
