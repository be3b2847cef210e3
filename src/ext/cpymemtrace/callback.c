/* callback.c: the function the interpreter calls at every event of a thread
 * with an active Profile (profile function) or Trace (trace function).
 *
 * It decides whether RSS may have changed (the gate, src/core/rssgate.h),
 * reads it only then, and writes a NEXT: row (preceded by a PREV: row for the
 * event before it) when RSS moved by at least the trigger since the last row.
 * Nothing here allocates, except what the interpreter caches itself (the
 * UTF-8 form of a non-ASCII name, once). */
#include "cpmt.h"

#include <string.h>

#include "rss.h"


static void
names_of(PyCodeObject *code, int what, PyObject *cfunc, pmt_cpmt_row *row)
{
    row->file = NULL;
    row->file_len = 0;
    row->function = NULL;
    row->function_len = 0;
    if (code != NULL) {
        Py_ssize_t n;
        const char *s = PyUnicode_AsUTF8AndSize(code->co_filename, &n);
        if (s == NULL) {
            PyErr_Clear();
        }
        else {
            row->file = s;
            row->file_len = (size_t)n;
        }
    }
    if (what == PyTrace_C_CALL || what == PyTrace_C_RETURN || what == PyTrace_C_EXCEPTION) {
        if (cfunc != NULL && PyCFunction_Check(cfunc)) {
            row->function = ((PyCFunctionObject *)cfunc)->m_ml->ml_name;
        }
        else if (cfunc != NULL) {
            row->function = Py_TYPE(cfunc)->tp_name;
        }
        if (row->function) {
            row->function_len = strlen(row->function);
        }
    }
    else if (code != NULL) {
        Py_ssize_t n;
        const char *s = PyUnicode_AsUTF8AndSize(code->co_name, &n);
        if (s == NULL) {
            PyErr_Clear();
        }
        else {
            row->function = s;
            row->function_len = (size_t)n;
        }
    }
}

/* References the callback gives up are dropped only when it is done with
 * its state: a destructor can run Python code (even one that exits this
 * tracer). */
typedef struct {
    PyObject *obj[4];
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

/* Keep alive what the formatter's name cache points into. */
static inline void
keep_names(CpmtTracer *self, PyCodeObject *code, PyObject *cfunc, Drops *d)
{
    if (code != self->fmt_code) {
        Py_XINCREF(code);
        drop_later(d, (PyObject *)self->fmt_code);
        self->fmt_code = code;
    }
    if (cfunc != NULL && cfunc != self->fmt_cfunc) {
        Py_INCREF(cfunc);
        drop_later(d, self->fmt_cfunc);
        self->fmt_cfunc = cfunc;
    }
}

/* The line of an event that may get no row: on 3.12+ its instruction offset
 * is kept and the line computed only for a PREV row (compat.h). */
static inline int
line_for_later(CpmtTracer *self, PyFrameObject *frame)
{
    if (frame == NULL) {
        return 0;
    }
#if PMT_CPMT_DEFER_LINE
    self->prev_lasti = pmt_cpmt_frame_lasti(frame);
    return CPMT_LINE_LATER;
#else
    (void)self;
    return PyFrame_GetLineNumber(frame);
#endif
}

static void
write_prev_row(CpmtTracer *self, Drops *drops)
{
    pmt_cpmt_row row;
    pmt_cpmt_seq_prev_row(&self->seq, cpmt_clock_of(self->seq.prev_ticks), &row);
    if (row.line == CPMT_LINE_LATER) {
        row.line = self->prev_code != NULL
                   ? PyCode_Addr2Line(self->prev_code, self->prev_lasti) : 0;
    }
    int c_event = row.what == PyTrace_C_CALL || row.what == PyTrace_C_RETURN
                  || row.what == PyTrace_C_EXCEPTION;
    names_of(self->prev_code, row.what, self->prev_cfunc, &row);
    keep_names(self, self->prev_code, c_event ? self->prev_cfunc : NULL, drops);
    pmt_cpmt_write_row(self->w, &row, &self->fmt);
}

/* Hold this event's code (a reference from PyFrame_GetCode) and C function
 * as the previous event's.  Returns the C function given up and sets *gone
 * to the code reference given up: the caller drops both last (they may run
 * destructors). */
static inline PyObject *
hold_names(CpmtTracer *self, PyCodeObject *code, PyObject *cfunc, PyObject **gone)
{
    PyObject *gone_cfunc = NULL;
    if (cfunc != NULL && cfunc != self->prev_cfunc) {
        Py_INCREF(cfunc);
        gone_cfunc = self->prev_cfunc;
        self->prev_cfunc = cfunc;
    }
    if (code == self->prev_code) {
        *gone = (PyObject *)code;
    }
    else {
        *gone = (PyObject *)self->prev_code;
        self->prev_code = code;
    }
    return gone_cfunc;
}

/* An event that gets no row and reads no RSS, the common case: remember it
 * (a PREV row may need it) and hold its code and C function. */
static inline void
quiet_event(CpmtTracer *self, PyFrameObject *frame, int what, PyObject *cfunc, uint64_t now)
{
    int line = line_for_later(self, frame);
    PyCodeObject *code = frame != NULL ? PyFrame_GetCode(frame) : NULL;
    pmt_cpmt_seq_remember(&self->seq, self->seq.event++, now, what, line, self->rss, 0);
    PyObject *gone_code, *gone_cfunc = hold_names(self, code, cfunc, &gone_code);
    /* Last: these may run destructors. */
    Py_XDECREF(gone_cfunc);
    Py_XDECREF(gone_code);
}

/* Any other event: the first one, one at which the gate says read RSS
 * (due), every event of Profile(0) and of exact mode. */
static __attribute__((noinline)) int
full_event(CpmtTracer *self, PyFrameObject *frame, int what, PyObject *cfunc, uint64_t now,
           int due)
{
    int64_t rss = self->rss;
    if (due) {
        if (!self->exact) {
            cpmt_hooks_ensure();     /* someone may have taken the counters away */
            pmt_tickclock_anchor(&cpmt_tclock);
        }
        else if (now - cpmt_tclock.ta > cpmt_anchor_every) {
            pmt_tickclock_anchor(&cpmt_tclock);
        }
        int64_t v = pmt_rss_current();
        if (v >= 0) {
            rss = self->rss = v;
        }
        self->rss_reads++;
        pmt_gate_mark_rss(&self->gate, now, v);
    }
    int64_t ev;
    int prev_due;
    int logged = pmt_cpmt_seq_event(&self->seq, rss, &ev, &prev_due);
    PyCodeObject *code = frame != NULL ? PyFrame_GetCode(frame) : NULL;
    Drops drops = {{NULL, NULL, NULL, NULL}, 0};
    int line;
    if (logged) {
        if (prev_due) {
            write_prev_row(self, &drops);   /* before prev_lasti changes */
        }
        line = frame != NULL ? PyFrame_GetLineNumber(frame) : 0;
        pmt_cpmt_row row;
        pmt_cpmt_seq_next_row(&self->seq, ev, cpmt_clock_of(now), what, line, rss, &row);
        names_of(code, what, cfunc, &row);
        keep_names(self, code, cfunc, &drops);
        pmt_cpmt_write_row(self->w, &row, &self->fmt);
        if (pmt_lw_error(self->w)) {
            self->failed = 1;   /* reported at __exit__ */
        }
    }
    else {
        line = line_for_later(self, frame);
    }
    pmt_cpmt_seq_remember(&self->seq, ev, now, what, line, rss, logged);
    PyObject *gone_code, *gone_cfunc = hold_names(self, code, cfunc, &gone_code);
    /* An event that reads no RSS cannot be logged: RSS is the previous
     * event's, which was compared with the last row already. */
    self->quiet_ok = self->state == ST_ACTIVE && !self->failed && !self->exact
                     && self->seq.trigger > 0;
    /* Last: these may run destructors. */
    drop_now(&drops);
    Py_XDECREF(gone_cfunc);
    Py_XDECREF(gone_code);
    return 0;
}

int
cpmt_callback(PyObject *obj, PyFrameObject *frame, int what, PyObject *arg)
{
    CpmtTracer *self = (CpmtTracer *)obj;
    PyObject *cfunc = NULL;
    if (what >= PyTrace_C_CALL) {       /* C_CALL, C_EXCEPTION, C_RETURN, OPCODE */
        if (what == PyTrace_OPCODE) {
            return 0;
        }
        if (PyCFunction_Check(arg)) {
            PyObject *m_self = ((PyCFunctionObject *)arg)->m_self;
            if (m_self != NULL && IS_TRACER(m_self)) {
                return 0;   /* our own __exit__: not part of the traced code */
            }
        }
        cfunc = arg;
    }
    uint64_t now = pmt_ticks(&cpmt_tclock);
    if (self->quiet_ok) {
        if (!pmt_gate_due_attached(&self->gate, now)) {
            quiet_event(self, frame, what, cfunc, now);
            return 0;
        }
        return full_event(self, frame, what, cfunc, now, 1);
    }
    if (self->state != ST_ACTIVE || self->failed) {
        return 0;
    }
    int due = self->exact || self->seq.event == 0 || pmt_gate_due_attached(&self->gate, now);
    return full_event(self, frame, what, cfunc, now, due);
}
