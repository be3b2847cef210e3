/* stacks.c: _malloccap.stacks() and _malloccap.pprof(), the bindings of
 * src/core/capture_stacks and src/core/pprof.
 *
 * The aggregation by whole stack (and the pprof encoding) runs in C with the
 * GIL released; this file only turns the finished report (stacks, frames,
 * functions, threads, heap samples, slices) into lists of tuples, or hands
 * the encoded profile over as bytes.  Python works per stack, never per event.
 */
#define PY_SSIZE_T_CLEAN
#include <Python.h>

#include "capture_format.h"
#include "capture_stacks.h"
#include "pprof.h"
#include "malloccap.h"

#define U(x) ((unsigned long long)(x))

static PyObject *
str_of(const char *s)
{
    return PyUnicode_DecodeUTF8(s, (Py_ssize_t)strlen(s), "replace");
}

typedef PyObject *(*row_fn)(const pmt_st_report *r, size_t i);

static PyObject *
func_row(const pmt_st_report *r, size_t i)
{
    const pmt_st_func *f = &r->funcs[i];
    return Py_BuildValue("(NNKKKKKKKKK)", str_of(f->file), str_of(f->name), U(f->alloc_bytes),
                         U(f->alloc_count), U(f->peak_bytes), U(f->peak_count),
                         U(f->end_bytes), U(f->end_count), U(f->self_alloc_bytes),
                         U(f->self_peak_bytes), U(f->self_end_bytes));
}

static PyObject *
frame_row(const pmt_st_report *r, size_t i)
{
    const pmt_st_frame *f = &r->frames[i];
    return Py_BuildValue("(LIi)", f->parent == PMT_ST_NONE ? -1LL : (long long)f->parent,
                         (unsigned int)f->func, (int)f->line);
}

static PyObject *
stack_row(const pmt_st_report *r, size_t i)
{
    const pmt_st_stack *s = &r->stacks[i];
    return Py_BuildValue("(IIKKKKKK)", (unsigned int)s->frame, (unsigned int)s->thread,
                         U(s->alloc_bytes), U(s->alloc_count), U(s->peak_bytes),
                         U(s->peak_count), U(s->end_bytes), U(s->end_count));
}

static PyObject *
thread_row(const pmt_st_report *r, size_t i)
{
    const pmt_st_thread *t = &r->threads[i];
    return Py_BuildValue("(KNKK)", U(t->id), str_of(t->name), U(t->alloc_bytes),
                         U(t->alloc_count));
}

static PyObject *
point_row(const pmt_st_report *r, size_t i)
{
    const pmt_st_point *p = &r->points[i];
    return Py_BuildValue("(KKKK)", U(p->event), U(p->heap), U(p->ns), U(p->rss));
}

static PyObject *
cell_row(const pmt_st_report *r, size_t i)
{
    const pmt_st_cell *c = &r->cells[i];
    return Py_BuildValue("(IIKKK)", (unsigned int)c->stack, (unsigned int)c->slice,
                         U(c->alloc_bytes), U(c->alloc_count), U(c->end_bytes));
}

static PyObject *
size_row(const pmt_st_report *r, size_t i)
{
    return Py_BuildValue("(KK)", U(r->sizes[i].count), U(r->sizes[i].bytes));
}

static PyObject *
kind_row(const pmt_st_report *r, size_t i)
{
    return Py_BuildValue("(KK)", U(r->kinds[i].count), U(r->kinds[i].bytes));
}

static int
set_rows(PyObject *d, const char *key, const pmt_st_report *r, size_t n, row_fn row)
{
    PyObject *l = PyList_New((Py_ssize_t)n);
    if (!l) {
        return -1;
    }
    for (size_t i = 0; i < n; i++) {
        PyObject *t = row(r, i);
        if (!t) {
            Py_DECREF(l);
            return -1;
        }
        PyList_SET_ITEM(l, (Py_ssize_t)i, t);
    }
    int rc = PyDict_SetItemString(d, key, l);
    Py_DECREF(l);
    return rc;
}

static PyObject *
to_dict(const pmt_st_report *r)
{
    PyObject *d = PyDict_New();
    if (!d) {
        return NULL;
    }
    struct {
        const char *k;
        unsigned long long v;
    } nums[] = {
        {"events", r->events}, {"lo", r->lo}, {"hi", r->hi},
        {"stacks_recorded", (unsigned long long)r->stacks_recorded},
        {"impossible", r->impossible}, {"peak_bytes", r->peak_bytes},
        {"peak_event", r->peak_event}, {"end_heap", r->end_heap},
        {"has_clock", (unsigned long long)r->has_clock}, {"peak_ns", r->peak_ns},
        {"end_ns", r->end_ns}, {"lo_ns", r->lo_ns}, {"hi_ns", r->hi_ns},
        {"rss_peak", r->rss_peak}, {"rss_peak_ns", r->rss_peak_ns},
        {"alloc_bytes", r->alloc_bytes}, {"alloc_count", r->alloc_count},
        {"live_peak_of_thread", (unsigned long long)r->live_peak_of_thread},
        {"live_peak_event", r->live_peak_event}, {"live_peak_ns", r->live_peak_ns},
        {"peak_live_bytes", r->peak_live_bytes}, {"peak_live_count", r->peak_live_count},
        {"end_bytes", r->end_bytes}, {"end_count", r->end_count}, {"slices", r->slices},
    };
    for (size_t i = 0; i < sizeof(nums) / sizeof(nums[0]); i++) {
        PyObject *o = PyLong_FromUnsignedLongLong(nums[i].v);
        if (!o || PyDict_SetItemString(d, nums[i].k, o) < 0) {
            Py_XDECREF(o);
            Py_DECREF(d);
            return NULL;
        }
        Py_DECREF(o);
    }
    if (set_rows(d, "funcs", r, r->n_funcs, func_row) < 0 ||
        set_rows(d, "frames", r, r->n_frames, frame_row) < 0 ||
        set_rows(d, "stacks", r, r->n_stacks, stack_row) < 0 ||
        set_rows(d, "threads", r, r->n_threads, thread_row) < 0 ||
        set_rows(d, "points", r, r->n_points, point_row) < 0 ||
        set_rows(d, "cells", r, r->n_cells, cell_row) < 0 ||
        set_rows(d, "sizes", r, PMT_ST_SIZE_CLASSES, size_row) < 0 ||
        set_rows(d, "kinds", r, PMT_ST_KINDS, kind_row) < 0) {
        Py_DECREF(d);
        return NULL;
    }
    return d;
}

/* The options shared by stacks() and pprof(); 0, or -1 with an exception. */
static int
options(PyObject *thread, unsigned long long lo, unsigned long long hi, unsigned int points,
        unsigned int slices, pmt_st_options *o)
{
    *o = (pmt_st_options){lo, hi, PMT_ST_ALL_THREADS, points, slices, 0, 0, 0};
    if (thread != Py_None) {
        o->thread = PyLong_AsUnsignedLongLong(thread);
        if (o->thread == (uint64_t)-1 && PyErr_Occurred()) {
            return -1;
        }
    }
    if (points > PMT_ST_MAX_POINTS || slices > PMT_ST_MAX_SLICES) {
        PyErr_Format(PyExc_ValueError, "points must be at most %d and slices at most %d",
                     PMT_ST_MAX_POINTS, PMT_ST_MAX_SLICES);
        return -1;
    }
    return 0;
}

/* lo_ns, hi_ns (None or ns since the capture opened): the range by the
 * capture's clock when either is given.  0, or -1 with an exception. */
static int
by_time(PyObject *lo_ns, PyObject *hi_ns, pmt_st_options *o)
{
    if (lo_ns == Py_None && hi_ns == Py_None) {
        return 0;
    }
    o->by_time = 1;
    o->lo_ns = 0;
    o->hi_ns = UINT64_MAX;
    if (lo_ns != Py_None && (o->lo_ns = PyLong_AsUnsignedLongLong(lo_ns)) == (uint64_t)-1 &&
        PyErr_Occurred()) {
        return -1;
    }
    if (hi_ns != Py_None && (o->hi_ns = PyLong_AsUnsignedLongLong(hi_ns)) == (uint64_t)-1 &&
        PyErr_Occurred()) {
        return -1;
    }
    return 0;
}

/* Aggregate path (the GIL released); 0, or -1 with a ValueError. */
static int
aggregate(PyObject *path, const pmt_st_options *o, pmt_st_report *r)
{
    int rc;
    Py_BEGIN_ALLOW_THREADS
    rc = pmt_st_read(PyBytes_AS_STRING(path), o, r);
    Py_END_ALLOW_THREADS
    if (rc < 0) {
        PyErr_SetString(PyExc_ValueError, r->error);
        pmt_st_report_free(r);
    }
    return rc;
}

PyObject *
pmt_malloccap_stacks(PyObject *self, PyObject *args, PyObject *kwargs)
{
    (void)self;
    static char *kwlist[] = {"path", "lo", "hi", "thread", "points", "slices", "lo_ns", "hi_ns",
                             NULL};
    PyObject *path;
    unsigned long long lo = 0, hi = UINT64_MAX;
    PyObject *thread = Py_None, *lo_ns = Py_None, *hi_ns = Py_None;
    unsigned int points = 0, slices = 0;
    if (!PyArg_ParseTupleAndKeywords(args, kwargs, "O&|$KKOIIOO:stacks", kwlist,
                                     PyUnicode_FSConverter, &path, &lo, &hi, &thread, &points,
                                     &slices, &lo_ns, &hi_ns)) {
        return NULL;
    }
    pmt_st_options o;
    pmt_st_report r;
    int rc = options(thread, lo, hi, points, slices, &o) < 0 || by_time(lo_ns, hi_ns, &o) < 0
                 ? -1 : aggregate(path, &o, &r);
    Py_DECREF(path);
    if (rc < 0) {
        return NULL;
    }
    PyObject *d = to_dict(&r);
    pmt_st_report_free(&r);
    return d;
}

PyObject *
pmt_malloccap_pprof(PyObject *self, PyObject *args, PyObject *kwargs)
{
    (void)self;
    static char *kwlist[] = {"path", "lo", "hi", "thread", "inuse_at_end", "time_ns", NULL};
    PyObject *path;
    unsigned long long lo = 0, hi = UINT64_MAX, time_ns = 0;
    PyObject *thread = Py_None;
    int at_end = 0;
    if (!PyArg_ParseTupleAndKeywords(args, kwargs, "O&|$KKOpK:pprof", kwlist,
                                     PyUnicode_FSConverter, &path, &lo, &hi, &thread, &at_end,
                                     &time_ns)) {
        return NULL;
    }
    pmt_st_options o;
    pmt_st_report r;
    int rc = options(thread, lo, hi, 0, 0, &o) < 0 ? -1 : aggregate(path, &o, &r);
    Py_DECREF(path);
    if (rc < 0) {
        return NULL;
    }
    uint8_t *out;
    size_t len;
    Py_BEGIN_ALLOW_THREADS
    rc = pmt_pprof_encode(&r, at_end ? PMT_PPROF_INUSE_END : PMT_PPROF_INUSE_PEAK, time_ns, &out,
                          &len);
    Py_END_ALLOW_THREADS
    pmt_st_report_free(&r);
    if (rc < 0) {
        return PyErr_NoMemory();
    }
    PyObject *b = PyBytes_FromStringAndSize((const char *)out, (Py_ssize_t)len);
    free(out);
    return b;
}
