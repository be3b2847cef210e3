/* _mallocstats.c: snapshots of CPython's small-object allocator statistics.
 *
 * The interpreter's own writer (what sys._debugmallocstats() calls:
 * _PyObject_DebugMallocStats() then, after a blank line if that returned
 * true, _PyObject_DebugTypeStats()) writes into an fmemopen(3) stream over a
 * buffer owned by the snapshot (raw malloc, never pymalloc), and
 * src/core/mallocstats.c parses the text into a fixed struct owned by the
 * snapshot.  File descriptor 2 is never touched and no Python object is
 * created while a snapshot is taken.
 *
 * Diff is a context manager whose __enter__ and __exit__ are looked up
 * without allocating: they are descriptors that hand back callables the Diff
 * object made when it was created (a method would make a new bound method
 * object at each lookup, and the one for __enter__ would be freed right after
 * the first snapshot, showing up in the diff).  So between the two snapshots
 * the machinery allocates and frees nothing from pymalloc.
 */
#define PY_SSIZE_T_CLEAN
#include <Python.h>
#include <structmember.h>

#include <errno.h>
#include <stdio.h>
#include <string.h>
#include <time.h>

#include "compat.h"
#include "mallocstats.h"

/* The interpreter's writers.  Both are exported by libpython (3.8 to 3.13);
 * _PyObject_DebugMallocStats is declared only in internal headers. */
extern int _PyObject_DebugMallocStats(FILE *out);
extern void _PyObject_DebugTypeStats(FILE *out);


#define INITIAL_TEXT_CAP (32 * 1024)

/* pymalloc's object-domain allocator, recorded at import if the writer then
 * reported pymalloc.  The writer decides whether pymalloc is in use by
 * comparing the object allocator with pymalloc's functions, so while a hook
 * is installed (tracemalloc tracing) sys._debugmallocstats() prints no
 * pymalloc section at all.  The writer allocates nothing, so for the length
 * of its call we present pymalloc's own allocator and put the hook back. */
static PyMemAllocatorEx pymalloc_allocator;
static int have_pymalloc_allocator;

static int
write_pymalloc_stats(FILE *f)
{
    int r = _PyObject_DebugMallocStats(f);
    if (r && !have_pymalloc_allocator) {
        /* pymalloc is the object allocator right now (nothing hooked):
         * remember it (the import may have happened under tracemalloc). */
        PyMem_GetAllocator(PYMEM_DOMAIN_OBJ, &pymalloc_allocator);
        have_pymalloc_allocator = 1;
    }
    if (!r && have_pymalloc_allocator) {
        PyMemAllocatorEx current;
        PyMem_GetAllocator(PYMEM_DOMAIN_OBJ, &current);
        if (memcmp(&current, &pymalloc_allocator, sizeof(current)) != 0) {
            PyMem_SetAllocator(PYMEM_DOMAIN_OBJ, &pymalloc_allocator);
            r = _PyObject_DebugMallocStats(f);
            PyMem_SetAllocator(PYMEM_DOMAIN_OBJ, &current);
        }
    }
    return r;
}

static int
record_pymalloc_allocator(void)
{
    FILE *f = fopen("/dev/null", "w");
    if (f == NULL) {
        PyErr_SetFromErrnoWithFilename(PyExc_OSError, "/dev/null");
        return -1;
    }
    if (_PyObject_DebugMallocStats(f)) {
        PyMem_GetAllocator(PYMEM_DOMAIN_OBJ, &pymalloc_allocator);
        have_pymalloc_allocator = 1;
    }
    fclose(f);
    return 0;
}

/* ---- the writer ---------------------------------------------------------------- */

/* Run the interpreter's writer into *buf (capacity *cap, grown with the raw
 * allocator if the text does not fit).  On success sets *len and *pymalloc
 * (what _PyObject_DebugMallocStats returned) and returns 0; on failure sets
 * errno and returns -1.  Needs the GIL.  Creates no Python object. */
static int
run_writer(char **buf, size_t *cap, size_t *len, int *pymalloc)
{
    for (;;) {
        if (*buf == NULL || *cap < INITIAL_TEXT_CAP) {
            size_t want = *cap < INITIAL_TEXT_CAP ? INITIAL_TEXT_CAP : *cap;
            char *nb = PyMem_RawRealloc(*buf, want);
            if (nb == NULL) {
                errno = ENOMEM;
                return -1;
            }
            *buf = nb;
            *cap = want;
        }
        FILE *f = fmemopen(*buf, *cap, "w");
        if (f == NULL) {
            return -1;
        }
        int r = write_pymalloc_stats(f);
        if (r) {
            fputc('\n', f);
        }
        _PyObject_DebugTypeStats(f);
        int flush_err = fflush(f);
        long pos = ftell(f);
        int stream_err = ferror(f);
        if (fclose(f) != 0 && !flush_err) {
            flush_err = -1;
        }
        if (pos >= 0 && (size_t)pos + 1 < *cap && !flush_err && !stream_err) {
            *len = (size_t)pos;
            *pymalloc = r;
            return 0;
        }
        if (*cap > ((size_t)1 << 28)) {
            errno = EFBIG;
            return -1;
        }
        /* Possibly truncated: grow and write again. */
        char *nb = PyMem_RawRealloc(*buf, *cap * 2);
        if (nb == NULL) {
            errno = ENOMEM;
            return -1;
        }
        *buf = nb;
        *cap *= 2;
    }
}

/* ---- Snapshot ------------------------------------------------------------------ */

typedef struct {
    PyObject_HEAD
    pmt_mallocstats_t *stats;
    char *text;
    size_t len;
    size_t cap;
    int taken;          /* stats hold a parsed text */
    int writer_true;    /* _PyObject_DebugMallocStats returned true */
} SnapshotObject;

static PyTypeObject Snapshot_Type;

#define Snapshot_Check(op) PyObject_TypeCheck(op, &Snapshot_Type)

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

/* Take a snapshot into self: no Python object is created. */
static int
snapshot_take(SnapshotObject *self)
{
    size_t len = 0;
    int pymalloc = 0;
    if (run_writer(&self->text, &self->cap, &len, &pymalloc) < 0) {
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
snapshot_set_text(SnapshotObject *self, const char *text, Py_ssize_t n)
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
    self->writer_true = self->stats->pymalloc || self->stats->mimalloc;
    self->taken = 1;
    return 0;
}

static int
Snapshot_init(SnapshotObject *self, PyObject *args, PyObject *kw)
{
    static char *kwlist[] = {"text", "take", NULL};
    PyObject *text = Py_None;
    int take = 1;
    if (!PyArg_ParseTupleAndKeywords(args, kw, "|O$p:SysDebugMallocStats", kwlist, &text, &take)) {
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
        return snapshot_set_text(self, s, n);
    }
    if (take) {
        return snapshot_take(self);
    }
    return 0;
}

static int
snapshot_require(SnapshotObject *self)
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
    if (snapshot_take(self) < 0) {
        return NULL;
    }
    Py_RETURN_NONE;
}

static PyObject *
Snapshot_get_text(SnapshotObject *self, void *Py_UNUSED(closure))
{
    if (snapshot_require(self) < 0) {
        return NULL;
    }
    return PyUnicode_DecodeUTF8(self->text, (Py_ssize_t)self->len, "replace");
}

static PyObject *
Snapshot_get_taken(SnapshotObject *self, void *Py_UNUSED(closure))
{
    return PyBool_FromLong(self->taken);
}

static PyObject *
Snapshot_get_pymalloc(SnapshotObject *self, void *Py_UNUSED(closure))
{
    if (snapshot_require(self) < 0) {
        return NULL;
    }
    return PyBool_FromLong(self->stats->pymalloc);
}

static PyObject *
Snapshot_get_mimalloc(SnapshotObject *self, void *Py_UNUSED(closure))
{
    if (snapshot_require(self) < 0) {
        return NULL;
    }
    return PyBool_FromLong(self->stats->mimalloc);
}

static PyObject *
Snapshot_get_threshold(SnapshotObject *self, void *Py_UNUSED(closure))
{
    if (snapshot_require(self) < 0) {
        return NULL;
    }
    return PyLong_FromLongLong(self->stats->small_block_threshold);
}

static PyObject *
Snapshot_get_num_size_classes(SnapshotObject *self, void *Py_UNUSED(closure))
{
    if (snapshot_require(self) < 0) {
        return NULL;
    }
    return PyLong_FromLongLong(self->stats->num_size_classes);
}

static PyObject *
Snapshot_get_unparsed(SnapshotObject *self, void *Py_UNUSED(closure))
{
    if (snapshot_require(self) < 0) {
        return NULL;
    }
    return PyLong_FromLong(self->stats->nunparsed + self->stats->ntruncated);
}

/* [(index, size, num_pools, blocks_in_use, avail_blocks), ...] */
static PyObject *
Snapshot_get_classes(SnapshotObject *self, void *Py_UNUSED(closure))
{
    if (snapshot_require(self) < 0) {
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
    if (snapshot_require(self) < 0) {
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
    if (snapshot_require(self) < 0) {
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

static PyObject *
format_diff_text(SnapshotObject *before, SnapshotObject *after)
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
    if (snapshot_require(self) < 0 || snapshot_require((SnapshotObject *)before) < 0) {
        return NULL;
    }
    return format_diff_text((SnapshotObject *)before, self);
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
    {"pymalloc", (getter)Snapshot_get_pymalloc, NULL, "pymalloc's statistics are present.", NULL},
    {"mimalloc", (getter)Snapshot_get_mimalloc, NULL, "mimalloc's statistics are present.", NULL},
    {"small_block_threshold", (getter)Snapshot_get_threshold, NULL,
     "Largest request served by the small-object allocator (bytes).", NULL},
    {"num_size_classes", (getter)Snapshot_get_num_size_classes, NULL,
     "Number of size classes the allocator has.", NULL},
    {"unparsed_lines", (getter)Snapshot_get_unparsed, NULL,
     "Non-blank lines the parser did not understand (0 for a known layout).", NULL},
    {"_classes", (getter)Snapshot_get_classes, NULL,
     "[(index, size, num_pools, blocks_in_use, avail_blocks)]", NULL},
    {"_values", (getter)Snapshot_get_values, NULL, "[(section, label, count, value)]", NULL},
    {"_free_lists", (getter)Snapshot_get_freelists, NULL,
     "[(name, count, size_each, total)]", NULL},
    {NULL, NULL, NULL, NULL, NULL}
};

static PyTypeObject Snapshot_Type = {
    PyVarObject_HEAD_INIT(NULL, 0)
    .tp_name = "pymemtrace._mallocstats.Snapshot",
    .tp_basicsize = sizeof(SnapshotObject),
    .tp_dealloc = (destructor)Snapshot_dealloc,
    .tp_flags = Py_TPFLAGS_DEFAULT | Py_TPFLAGS_BASETYPE,
    .tp_doc = "Snapshot(text=None, *, take=True)\n--\n\n"
              "The small-object allocator's statistics, parsed in C.  With text, parse "
              "that text; otherwise take a snapshot now unless take is False.",
    .tp_methods = Snapshot_methods,
    .tp_getset = Snapshot_getset,
    .tp_init = (initproc)Snapshot_init,
    .tp_new = Snapshot_new,
};

/* ---- Diff and its allocation-free __enter__ / __exit__ ---------------------------- */

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

static PyTypeObject Diff_Type;
static PyTypeObject BoundSlot_Type;
static PyTypeObject SlotDescr_Type;

#define Diff_Check(op) PyObject_TypeCheck(op, &Diff_Type)

static PyObject *
diff_enter(DiffObject *self)
{
    if (self->state == STATE_ACTIVE) {
        PyErr_Format(PyExc_RuntimeError, "this %.100s is already active; use a new one to nest",
                     Py_TYPE(self)->tp_name);
        return NULL;
    }
    if (snapshot_take(self->before) < 0) {
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
    if (snapshot_take(self->after) < 0) {
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
        before = PyObject_CallObject((PyObject *)&Snapshot_Type, NULL);
    }
    else {
        Py_INCREF(before);
    }
    if (before == NULL) {
        return -1;
    }
    if (after == NULL) {
        after = PyObject_CallObject((PyObject *)&Snapshot_Type, NULL);
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
    if (snapshot_take(b) < 0) {
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
    return format_diff_text(self->before, self->after);
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

static PyTypeObject Diff_Type = {
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

/* ---- module functions ----------------------------------------------------------------- */

static PyObject *
get_debugmallocstats(PyObject *Py_UNUSED(module), PyObject *Py_UNUSED(ignored))
{
    char *buf = NULL;
    size_t cap = 0, len = 0;
    int pymalloc;
    if (run_writer(&buf, &cap, &len, &pymalloc) < 0) {
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
    if (run_writer(&buf, &cap, &len, &pymalloc) < 0) {
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
    if (!PyArg_ParseTuple(args, "O!O!:format_diff", &Snapshot_Type, &before, &Snapshot_Type,
                          &after)) {
        return NULL;
    }
    if (snapshot_require((SnapshotObject *)before) < 0 ||
        snapshot_require((SnapshotObject *)after) < 0) {
        return NULL;
    }
    return format_diff_text((SnapshotObject *)before, (SnapshotObject *)after);
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
            if (write_pymalloc_stats(f)) {
                fputc('\n', f);
            }
            _PyObject_DebugTypeStats(f);
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
            if (run_writer(&buf, &cap, &len, &pymalloc) < 0) {
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
    if (!PyArg_ParseTuple(args, "O!n:_time_snapshot", &Snapshot_Type, &snap, &n)) {
        return NULL;
    }
    int64_t t0 = now_ns();
    for (Py_ssize_t i = 0; i < n; i++) {
        if (snapshot_take(snap) < 0) {
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
    if (!PyArg_ParseTuple(args, "O!O!n:_time_diff", &Snapshot_Type, &before, &Snapshot_Type,
                          &after, &n)) {
        return NULL;
    }
    if (snapshot_require(before) < 0 || snapshot_require(after) < 0) {
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

PyMODINIT_FUNC
PyInit__mallocstats(void)
{
    if (PyType_Ready(&Snapshot_Type) < 0 || PyType_Ready(&BoundSlot_Type) < 0 ||
        PyType_Ready(&SlotDescr_Type) < 0 || PyType_Ready(&Diff_Type) < 0) {
        return NULL;
    }
    if (add_slot_descr(&Diff_Type, "__enter__", SLOT_ENTER) < 0 ||
        add_slot_descr(&Diff_Type, "__exit__", SLOT_EXIT) < 0) {
        return NULL;
    }
    PyType_Modified(&Diff_Type);
    if (record_pymalloc_allocator() < 0) {
        return NULL;
    }
    PyObject *m = PyModule_Create(&module_def);
    if (m == NULL) {
        return NULL;
    }
    if (PyModule_AddObject(m, "Snapshot", Py_NewRef((PyObject *)&Snapshot_Type)) < 0 ||
        PyModule_AddObject(m, "Diff", Py_NewRef((PyObject *)&Diff_Type)) < 0) {
        Py_DECREF(m);
        return NULL;
    }
    return m;
}
