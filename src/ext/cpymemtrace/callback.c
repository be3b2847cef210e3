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

static void
write_prev_row(CpmtTracer *self, Drops *drops)
{
    pmt_cpmt_row row;
    pmt_cpmt_seq_prev_row(&self->seq, cpmt_clock_of(self->seq.prev_ticks), &row);
    int c_event = row.what == PyTrace_C_CALL || row.what == PyTrace_C_RETURN
                  || row.what == PyTrace_C_EXCEPTION;
    names_of(self->prev_code, row.what, self->prev_cfunc, &row);
    keep_names(self, self->prev_code, c_event ? self->prev_cfunc : NULL, drops);
    pmt_cpmt_write_row(self->w, &row, &self->fmt);
}

int
cpmt_callback(PyObject *obj, PyFrameObject *frame, int what, PyObject *arg)
{
    CpmtTracer *self = (CpmtTracer *)obj;
    if (self->state != ST_ACTIVE || self->failed || what == PyTrace_OPCODE) {
        return 0;
    }
    int c_event = what == PyTrace_C_CALL || what == PyTrace_C_RETURN
                  || what == PyTrace_C_EXCEPTION;
    if (c_event && PyCFunction_Check(arg)) {
        PyObject *m_self = ((PyCFunctionObject *)arg)->m_self;
        if (m_self != NULL && IS_TRACER(m_self)) {
            return 0;   /* our own __exit__: not part of the traced code */
        }
    }
    uint64_t now = pmt_ticks(&cpmt_tclock);
    int64_t rss = self->rss;
    if (self->exact || pmt_gate_due(&self->gate, now)) {
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
    int line = frame != NULL ? PyFrame_GetLineNumber(frame) : 0;
    PyCodeObject *code = frame != NULL ? PyFrame_GetCode(frame) : NULL;
    Drops drops = {{NULL, NULL, NULL, NULL}, 0};
    if (logged) {
        if (prev_due) {
            write_prev_row(self, &drops);
        }
        pmt_cpmt_row row;
        pmt_cpmt_seq_next_row(&self->seq, ev, cpmt_clock_of(now), what, line, rss, &row);
        names_of(code, what, c_event ? arg : NULL, &row);
        keep_names(self, code, c_event ? arg : NULL, &drops);
        pmt_cpmt_write_row(self->w, &row, &self->fmt);
        if (pmt_lw_error(self->w)) {
            self->failed = 1;   /* reported at __exit__ */
        }
    }
    pmt_cpmt_seq_remember(&self->seq, ev, now, what, line, rss, logged);
    PyObject *gone_cfunc = NULL, *gone_code = NULL;
    if (c_event && arg != self->prev_cfunc) {
        Py_XINCREF(arg);
        gone_cfunc = self->prev_cfunc;
        self->prev_cfunc = arg;
    }
    if (code == self->prev_code) {
        gone_code = (PyObject *)code;   /* the reference PyFrame_GetCode gave */
    }
    else {
        gone_code = (PyObject *)self->prev_code;
        self->prev_code = code;
    }
    /* Last: these may run destructors. */
    drop_now(&drops);
    Py_XDECREF(gone_cfunc);
    Py_XDECREF(gone_code);
    return 0;
}

