/* event.h: the per-event fast path of Profile / Trace, inline in both hooks
 * (callback.c: the profile / trace function; monitor.c: sys.monitoring).
 *
 * An event at which the gate does not ask for an RSS read cannot get a row
 * (RSS is the previous event's, compared with the last row already): it is
 * only remembered for a possible PREV row, and its code and C function are
 * held (a reference changes hands only when they differ from both the
 * previous event's and the spare ones held before those).  A C function
 * whose PyMethodDef is a static type's (list.append, which the legacy hook
 * binds afresh at every call) is not held at all: its slot keeps the
 * PyMethodDef's address, tagged (CPMT_DEF_KEY), which names it for a PREV
 * row, matches the next call of the same method, and keeps no bound method,
 * nor its self, alive.  Every other event goes to cpmt_full_event
 * (callback.c). */
#ifndef PMT_CPMT_EVENT_H
#define PMT_CPMT_EVENT_H

#include "cpmt.h"

/* A C function slot (prev_cfunc, spare_cfunc) holds a strong reference, or
 * the address of a static type's PyMethodDef with its low bit set (never
 * the address of an object; callback.c proves the method static before it
 * stores one).  CPMT_DEF_KEY is that key for any PyCFunction. */
#define CPMT_IS_DEF_KEY(o) (((uintptr_t)(o) & 1) != 0)
#define CPMT_DEF_KEY(f) ((PyObject *)((uintptr_t)((PyCFunctionObject *)(f))->m_ml | 1))
#define CPMT_DEF_OF_KEY(o) ((const PyMethodDef *)((uintptr_t)(o) & ~(uintptr_t)1))

/* The slow part of holding names (callback.c). */
void cpmt_hold_names(CpmtTracer *self, PyCodeObject *code, PyObject *cfunc);
/* Any other event (callback.c); code is borrowed: of Profile(0) / Trace(0)
 * (every event gets a NEXT row, none a PREV row), or of any other tracer. */
void cpmt_every_event(CpmtTracer *self, PyCodeObject *code, int lasti, int line,
                      PyFrameObject *frame, int what, PyObject *cfunc, uint64_t now);
void cpmt_general_event(CpmtTracer *self, PyCodeObject *code, int lasti, int line,
                        PyFrameObject *frame, int what, PyObject *cfunc, uint64_t now);

static inline void
cpmt_full_event(CpmtTracer *self, PyCodeObject *code, int lasti, int line, PyFrameObject *frame,
                int what, PyObject *cfunc, uint64_t now)
{
    if (self->every) {
        cpmt_every_event(self, code, lasti, line, frame, what, cfunc, now);
    }
    else {
        cpmt_general_event(self, code, lasti, line, frame, what, cfunc, now);
    }
}

/* The quiet part of an event at which the gate asked for no RSS read (see
 * cpmt_event): 1 if names must be held still (cpmt_hold_names), else 0. */
static inline int
cpmt_quiet(CpmtTracer *self, PyCodeObject *code, int lasti, int line, int what, PyObject *cfunc,
           uint64_t now)
{
#if PMT_CPMT_DEFER_LINE
    self->prev_lasti = lasti;
#else
    (void)lasti;
#endif
    /* quiet_ok: an event was remembered, and RSS was not read since */
    (void)pmt_cpmt_seq_remember_quiet(&self->seq, now, what, line);
    int more = 0;
    if (cfunc != NULL && cfunc != self->prev_cfunc) {
        PyObject *key = cfunc;
        if (key != self->spare_cfunc && Py_IS_TYPE(cfunc, &PyCFunction_Type)) {
            key = CPMT_DEF_KEY(cfunc);      /* equal to a slot: proven static */
        }
        if (key == self->prev_cfunc) {
            /* the same static method again (its C_RETURN) */
        }
        else if (key == self->spare_cfunc) {    /* alternating: swap, no counts */
            self->spare_cfunc = self->prev_cfunc;
            self->prev_cfunc = key;
        }
        else {
            more = 1;
        }
    }
    if (code != self->prev_code) {
        if (code == self->spare_code) {
            self->spare_code = self->prev_code;
            self->prev_code = code;
        }
        else {
            more = 1;
        }
    }
    return more;
}

/* One event of self.  code is borrowed (or NULL); the line is line, or, if
 * that is CPMT_LINE_LATER, the line of instruction offset lasti (bytes),
 * computed only if a row needs it; frame (legacy hook only, when the line
 * cannot be known otherwise, else NULL) gives a row's line
 * (PyFrame_GetLineNumber); cfunc is the C function or method descriptor of a
 * C_* event. */
static inline void
cpmt_event(CpmtTracer *self, PyCodeObject *code, int lasti, int line, PyFrameObject *frame,
           int what, PyObject *cfunc)
{
    uint64_t now = pmt_ticks(&cpmt_tclock);
    if (self->quiet_ok && !pmt_gate_due_attached(&self->gate, now)) {
        if (cpmt_quiet(self, code, lasti, line, what, cfunc, now)) {
            cpmt_hold_names(self, code, cfunc);
        }
        return;
    }
    cpmt_full_event(self, code, lasti, line, frame, what, cfunc, now);
}

/* ---- shared by callback.c and names.c ---- */

/* References the callback gives up are dropped only when it is done with
 * its state: a destructor can run Python code (even one that exits this
 * tracer). */
typedef struct {
    PyObject *obj[10];
    int n;
} Drops;

static inline void
drop_later(Drops *d, PyObject *o)
{
    if (o != NULL) {
        d->obj[d->n++] = o;
    }
}

static inline void
drop_now(Drops *d)
{
    for (int i = 0; i < d->n; i++) {
        Py_DECREF(d->obj[i]);
    }
}

/* The UTF-8 text of s (cached in the str), or NULL. */
static inline const char *
cpmt_utf8_of(PyObject *s, size_t *len)
{
    Py_ssize_t n;
    const char *t = PyUnicode_AsUTF8AndSize(s, &n);
    if (t == NULL) {
        PyErr_Clear();
        *len = 0;
        return NULL;
    }
    *len = (size_t)n;
    return t;
}

/* The File and Function of a row (names.c). */
void cpmt_names_of(CpmtTracer *self, PyCodeObject *code, int what, PyObject *cfunc,
                   pmt_cpmt_row *row, Drops *d);
/* Is the method a static type's (its PyMethodDef lives as long as the
 * process)?  Memoised by address (names.c). */
int cpmt_def_is_static(PyCFunctionObject *f);
int cpmt_descr_is_static(PyMethodDescrObject *f);

#endif /* PMT_CPMT_EVENT_H */
