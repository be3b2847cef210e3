/* callback.c: the function the interpreter calls at every event of a thread
 * with an active Profile (profile function) or Trace (trace function).
 *
 * It decides whether RSS may have changed (the gate, src/core/rssgate.h),
 * reads it only then, and writes a NEXT: row (preceded by a PREV: row for the
 * event before it) when RSS moved by at least the trigger since the last row.
 * Nothing here allocates, except what the interpreter caches itself (the
 * UTF-8 form of a non-ASCII name, once). */
#include "cpmt.h"
#include "event.h"

#include <string.h>

#include "rss.h"


/* Keep alive what the formatter's name cache points into. */
static inline void
keep_names(CpmtTracer *self, PyCodeObject *code, PyObject *cfunc, Drops *d)
{
    if (code != self->fmt_code) {
        Py_XINCREF(code);
        drop_later(d, (PyObject *)self->fmt_code);
        self->fmt_code = code;
    }
    if (cfunc != NULL && cfunc != self->fmt_cfunc && !CPMT_IS_DEF_KEY(cfunc)) {
        Py_INCREF(cfunc);
        drop_later(d, self->fmt_cfunc);
        self->fmt_cfunc = cfunc;
    }
}

/* The line of instruction offset lasti (bytes) of code, for a row: on 3.12+
 * decoding the line table costs ~340 instructions, ~1,900 in a long
 * function, and Profile(0) asks at every event, mostly for the same few
 * places (a call's start, its returns, the C calls of a loop).  The memo is
 * 2-way set associative (CPMT_LINE_MEMO / 2 sets, a Fibonacci hash of both
 * keys): a direct-mapped one of 16 missed a third of the asks on the
 * objects workload (~12 places), two places sharing a slot in turns. */
static inline size_t
line_set(PyCodeObject *code, int lasti)
{
    uint32_t k = (uint32_t)((uintptr_t)code >> 4) ^ (uint32_t)lasti;
    return (size_t)((k * 0x9E3779B1u) >> (32 - CPMT_LINE_SETS_LOG2)) * 2;
}

/* The memo's line of (code, lasti) in *line: 0 if it has none. */
static inline int
line_known_of(const CpmtTracer *self, PyCodeObject *code, int lasti, int *line)
{
    size_t set = line_set(code, lasti);
    for (size_t i = set; i < set + 2; i++) {
        if (self->lines[i].code == code && self->lines[i].lasti == lasti) {
            *line = self->lines[i].line;
            return 1;
        }
    }
    return 0;
}

static int
line_of(CpmtTracer *self, PyCodeObject *code, int lasti, Drops *d)
{
    int line;
    if (code == NULL) {
        return 0;
    }
    if (line_known_of(self, code, lasti, &line)) {
        return line;
    }
    size_t set = line_set(code, lasti);
    line = PyCode_Addr2Line(code, lasti);
    /* the newer entry goes first, the one it displaces second */
    drop_later(d, (PyObject *)self->lines[set + 1].code);
    self->lines[set + 1] = self->lines[set];
    Py_INCREF(code);
    self->lines[set].code = code;
    self->lines[set].lasti = lasti;
    self->lines[set].line = line;
    return line;
}

/* The line of a NEXT row: the frame's (legacy hook, when it is not known
 * otherwise), else line, else (CPMT_LINE_LATER) that of (code, lasti). */
static inline int
row_line(CpmtTracer *self, PyFrameObject *frame, PyCodeObject *code, int lasti, int line,
         Drops *d)
{
    if (frame != NULL) {
        return PyFrame_GetLineNumber(frame);
    }
    return line == CPMT_LINE_LATER ? line_of(self, code, lasti, d) : line;
}

static void
write_prev_row(CpmtTracer *self, Drops *drops)
{
    pmt_cpmt_row row;
    pmt_cpmt_seq_prev_row(&self->seq, cpmt_clock_of(self->seq.prev_ticks), &row);
    if (row.line == CPMT_LINE_LATER) {
        row.line = line_of(self, self->prev_code, self->prev_lasti, drops);
    }
    int c_event = row.what == PyTrace_C_CALL || row.what == PyTrace_C_RETURN
                  || row.what == PyTrace_C_EXCEPTION;
    cpmt_names_of(self, self->prev_code, row.what, self->prev_cfunc, &row, drops);
    keep_names(self, self->prev_code, c_event ? self->prev_cfunc : NULL, drops);
    pmt_cpmt_write_row(self->w, &row, &self->fmt);
}

/* Hold this event's code and C function (borrowed) as the previous
 * event's.  The one held before stays as a spare: code that alternates
 * between two (a loop calling list.append and len) swaps them and changes
 * no reference counts.  References given up go to d: the caller drops them
 * last (they may run destructors).  A key (CPMT_DEF_KEY) holds nothing. */
static inline void
hold_one(PyObject **prev, PyObject **spare, PyObject *o, Drops *d)
{
    if (o == *spare) {
        *spare = *prev;
        *prev = o;
        return;
    }
    if (!CPMT_IS_DEF_KEY(o)) {
        Py_XINCREF(o);
    }
    if (!CPMT_IS_DEF_KEY(*spare)) {
        drop_later(d, *spare);
    }
    *spare = *prev;
    *prev = o;
}

/* What a C function slot takes for cfunc: its key if its method is a
 * static type's, else cfunc itself. */
static inline PyObject *
slot_of(PyObject *cfunc)
{
    if (cfunc != NULL && !Py_IS_TYPE(cfunc, &PyMethodDescr_Type) && PyCFunction_Check(cfunc)
            && cpmt_def_is_static((PyCFunctionObject *)cfunc)) {
        return CPMT_DEF_KEY(cfunc);
    }
    return cfunc;
}

static inline void
hold_names(CpmtTracer *self, PyCodeObject *code, PyObject *cfunc, Drops *d)
{
    if (cfunc != NULL && cfunc != self->prev_cfunc) {
        PyObject *slot = slot_of(cfunc);
        if (slot != self->prev_cfunc) {
            hold_one(&self->prev_cfunc, &self->spare_cfunc, slot, d);
        }
    }
    if (code != self->prev_code) {
        hold_one((PyObject **)&self->prev_code, (PyObject **)&self->spare_code,
                 (PyObject *)code, d);
    }
}

void
cpmt_hold_names(CpmtTracer *self, PyCodeObject *code, PyObject *cfunc)
{
    Drops drops;
    drops.n = 0;        /* obj[] is read only below n */
    hold_names(self, code, cfunc, &drops);
    drop_now(&drops);
}

/* Read RSS at an event the gate (or exact mode, or event 0) asks it at:
 * the new RSS, or the last one if it cannot be read. */
static inline __attribute__((always_inline)) int64_t
read_rss(CpmtTracer *self, uint64_t now)
{
    if (!self->exact) {
        /* Put back wrappers someone took out (tracemalloc stopped).  Asking
         * costs ~800 instructions on 3.12 (the allocators' lock): only when
         * the counters saw nothing since the last read (the wrappers may be
         * gone), and at every 16th read. */
        if ((PMT_GATE_LOAD(pmt_gate_bytes) == self->gate.bytes
                && PMT_GATE_LOAD(pmt_gate_blocks) == self->gate.blocks)
                || (self->rss_reads & 15) == 0) {
            cpmt_hooks_ensure();
        }
        pmt_tickclock_anchor(&cpmt_tclock);
    }
    else if (now - cpmt_tclock.ta > cpmt_anchor_every) {
        pmt_tickclock_anchor(&cpmt_tclock);
    }
    int64_t v = pmt_rss_current();
    if (v >= 0) {
        self->rss = v;
    }
    self->rss_reads++;
    pmt_gate_mark_rss(&self->gate, now, v);
    return self->rss;
}

/* ---- cpmt_every_event: Profile(0) / Trace(0) ----
 * With trigger 0 every event gets a NEXT row (pmt_cpmt_seq_event: |dRSS| >=
 * 0 always holds), so the event before it always has one and no PREV row is
 * ever written: nothing is remembered for one (the previous event's numbers,
 * offset, code and C function), and no quiet path is taken (quiet_ok stays
 * 0).  The rows' bytes are those cpmt_general_event writes; what differs is what
 * is held: the last row's code (nm_code, which also owns the names the
 * formatter's cache points at) and its C function when that is not a static
 * type's method (fmt_cfunc), not the previous event's and the spare ones. */

/* This row's code is not the last one's: take its names. */
static void __attribute__((noinline))
every_new_code(CpmtTracer *self, PyCodeObject *code, Drops *d)
{
    Py_INCREF(code);
    drop_later(d, (PyObject *)self->nm_code);
    self->nm_code = code;
    self->nm_file = cpmt_utf8_of(code->co_filename, &self->nm_file_len);
    self->nm_func = cpmt_utf8_of(code->co_name, &self->nm_func_len);
}


/* A C row's function name when every_function does not know it: the
 * name names_of gives it, and then known, as a static method's (st_ml) or as
 * fmt_cfunc's, which is held (as keep_names holds it). */
static const char * __attribute__((noinline))
every_c_name(CpmtTracer *self, PyObject *cfunc, const PyMethodDef *ml, size_t *len, Drops *d)
{
    if (cfunc == NULL) {
        *len = 0;
        return NULL;
    }
    const char *name;
    int is_static = 0;
    if (Py_IS_TYPE(cfunc, &PyMethodDescr_Type)) {
        name = ((PyMethodDescrObject *)cfunc)->d_method->ml_name;
        is_static = cpmt_descr_is_static((PyMethodDescrObject *)cfunc);
    }
    else if (PyCFunction_Check(cfunc)) {
        name = ((PyCFunctionObject *)cfunc)->m_ml->ml_name;
        is_static = CPMT_IS_DEF_KEY(slot_of(cfunc));
    }
    else {
        name = Py_TYPE(cfunc)->tp_name;     /* may change (a heap type's __name__): not kept */
    }
    *len = name != NULL ? strlen(name) : 0;
    if (is_static && ml != NULL) {
        self->st_ml[1] = self->st_ml[0];
        self->st_len[1] = self->st_len[0];
        self->st_ml[0] = ml;
        self->st_len[0] = *len;
    }
    else if (!is_static) {
        if (cfunc != self->fmt_cfunc) {
            Py_INCREF(cfunc);
            drop_later(d, self->fmt_cfunc);
            self->fmt_cfunc = cfunc;
        }
        self->fmt_cname = ml != NULL ? name : NULL;
        self->fmt_clen = *len;
    }
    return name;
}

/* The PyMethodDef of a C function whose type is exactly PyCFunction,
 * PyCMethod or a method descriptor (its name is that one's for good), or
 * NULL. */
static inline const PyMethodDef *
exact_ml(PyObject *cfunc)
{
    if (cfunc == NULL) {
        return NULL;
    }
    PyTypeObject *tp = Py_TYPE(cfunc);
    if (tp == &PyCFunction_Type || tp == &PyCMethod_Type) {
        return ((PyCFunctionObject *)cfunc)->m_ml;
    }
    return tp == &PyMethodDescr_Type ? ((PyMethodDescrObject *)cfunc)->d_method : NULL;
}

/* The Function of an every_event row whose code is nm_code (or NULL) when
 * it is known without a call: 1, or 0 (a C function not known yet). */
static inline int
every_function(CpmtTracer *self, PyCodeObject *code, int what, PyObject *cfunc,
               pmt_cpmt_row *row)
{
    if ((unsigned)(what - PyTrace_C_CALL) > (unsigned)(PyTrace_C_RETURN - PyTrace_C_CALL)) {
        /* not C_CALL, C_EXCEPTION, C_RETURN */
        row->function = code != NULL ? self->nm_func : NULL;
        row->function_len = code != NULL ? self->nm_func_len : 0;
        return 1;
    }
    if (cfunc == self->fmt_cfunc && self->fmt_cname != NULL) {
        row->function = self->fmt_cname;
        row->function_len = self->fmt_clen;
        return 1;
    }
    const PyMethodDef *ml = exact_ml(cfunc);
    if (ml == NULL) {
        return 0;
    }
    if (ml == self->st_ml[1]) {     /* alternating: swap */
        self->st_ml[1] = self->st_ml[0];
        self->st_ml[0] = ml;
        size_t n = self->st_len[1];
        self->st_len[1] = self->st_len[0];
        self->st_len[0] = n;
    }
    if (ml != self->st_ml[0]) {
        return 0;
    }
    row->function = ml->ml_name;
    row->function_len = self->st_len[0];
    return 1;
}

/* An every_event row that needs a call: RSS read (due), a name or a line
 * not known yet, the log's buffer full or in error, or the legacy hook's
 * frame.  Rows are written as cpmt_general_event writes them. */
static void __attribute__((noinline))
every_slow(CpmtTracer *self, PyCodeObject *code, int lasti, int line, PyFrameObject *frame,
           int what, PyObject *cfunc, uint64_t now)
{
    int64_t rss = self->every_due ? read_rss(self, now) : self->rss;
    int64_t ev = self->seq.event++;
    Drops drops;
    drops.n = 0;
    line = row_line(self, frame, code, lasti, line, &drops);
    pmt_cpmt_row row;
    pmt_cpmt_seq_next_row(&self->seq, ev, cpmt_clock_of(now), what, line, rss, &row);
    if (code != self->nm_code && code != NULL) {
        every_new_code(self, code, &drops);
    }
    row.file = code != NULL ? self->nm_file : NULL;
    row.file_len = code != NULL ? self->nm_file_len : 0;
    if (!every_function(self, code, what, cfunc, &row)) {
        row.function = every_c_name(self, cfunc, exact_ml(cfunc), &row.function_len, &drops);
    }
    pmt_logwriter *w = self->w;
    pmt_cpmt_write_row(w, &row, &self->fmt);
    if (w->err != 0) {      /* pmt_lw_error, read directly */
        self->failed = 1;   /* reported at __exit__ */
        self->every = 0;
    }
    /* Last: these may run destructors. */
    drop_now(&drops);
}

/* Most events: no call but the formatter's, last (no register to save).
 * Its row is the tracer's (erow): no address of this frame goes to it. */
void
cpmt_every_event(CpmtTracer *self, PyCodeObject *code, int lasti, int line, PyFrameObject *frame,
                 int what, PyObject *cfunc, uint64_t now)
{
    /* the due test of cpmt_general_event with quiet_ok 0 */
    self->every_due = self->exact || self->seq.event == 0
                      || pmt_gate_due_attached(&self->gate, now);
    pmt_logwriter *w = self->w;
    pmt_cpmt_row *row = &self->erow;
    if (self->every_due | (frame != NULL) | !pmt_cpmt_row_fits(w)
            | (code != self->nm_code && code != NULL)) {
        goto slow;
    }
    if (line == CPMT_LINE_LATER && (code == NULL || !line_known_of(self, code, lasti, &line))) {
        goto slow;
    }
    if (!every_function(self, code, what, cfunc, row)) {
        goto slow;
    }
    row->file = code != NULL ? self->nm_file : NULL;
    row->file_len = code != NULL ? self->nm_file_len : 0;
    int64_t ev = self->seq.event++;
    pmt_cpmt_seq_next_row(&self->seq, ev, cpmt_clock_of(now), what, line, self->rss, row);
    pmt_cpmt_append_row(w, row, &self->fmt);    /* it fits: cannot fail */
    return;
slow:
    every_slow(self, code, lasti, line, frame, what, cfunc, now);
}

/* Any other event than a quiet one (event.h) of a tracer that does not
 * take every_event: the first one, one at which the gate says read RSS,
 * every event of exact mode, and any event of a tracer no longer active
 * (ignored). */
void
cpmt_general_event(CpmtTracer *self, PyCodeObject *code, int lasti, int line, PyFrameObject *frame,
                   int what, PyObject *cfunc, uint64_t now)
{
    if (self->state != ST_ACTIVE || self->failed) {
        return;
    }
    int due = !self->quiet_ok    /* else the gate said so already */
              ? self->exact || self->seq.event == 0 || pmt_gate_due_attached(&self->gate, now)
              : 1;
    int64_t rss = due ? read_rss(self, now) : self->rss;
    int64_t ev;
    int prev_due;
    int logged = pmt_cpmt_seq_event(&self->seq, rss, &ev, &prev_due);
    Drops drops;
    drops.n = 0;
    if (logged) {
        if (prev_due) {
            write_prev_row(self, &drops);   /* before prev_lasti changes */
        }
        line = row_line(self, frame, code, lasti, line, &drops);
        pmt_cpmt_row row;
        pmt_cpmt_seq_next_row(&self->seq, ev, cpmt_clock_of(now), what, line, rss, &row);
        cpmt_names_of(self, code, what, cfunc, &row, &drops);
        keep_names(self, code, slot_of(cfunc), &drops);
        pmt_cpmt_write_row(self->w, &row, &self->fmt);
        if (pmt_lw_error(self->w)) {
            self->failed = 1;   /* reported at __exit__ */
        }
    }
    self->prev_lasti = lasti;
    pmt_cpmt_seq_remember(&self->seq, ev, now, what, line, rss, logged);
    hold_names(self, code, cfunc, &drops);
    /* An event that reads no RSS cannot be logged: RSS is the previous
     * event's, which was compared with the last row already. */
    self->quiet_ok = !(self->failed | self->exact) && self->seq.trigger > 0;   /* ST_ACTIVE */
    /* Last: these may run destructors. */
    drop_now(&drops);
}

/* Any event the quiet path below does not take. */
static int __attribute__((noinline))
callback_any(PyObject *obj, PyFrameObject *frame, int what, PyObject *arg)
{
    CpmtTracer *self = (CpmtTracer *)obj;
    PyObject *cfunc = NULL;
    if (what >= PyTrace_C_CALL) {       /* C_CALL, C_EXCEPTION, C_RETURN, OPCODE */
        if (what == PyTrace_OPCODE) {
            return 0;
        }
        if (PyCFunction_Check(arg) && cpmt_is_own_method(((PyCFunctionObject *)arg)->m_ml)) {
            return 0;   /* our own __exit__: not part of the traced code */
        }
        cfunc = arg;
    }
    if (frame == NULL) {
        cpmt_event(self, NULL, -1, 0, NULL, what, cfunc);
        return 0;
    }
    /* On 3.12+ the line of an event that may get no row is computed from
     * its instruction offset only if a row needs it, or is f_lineno when
     * that is set (compat.h); frame stays only if f_lineno is not known. */
    PyCodeObject *code = pmt_cpmt_frame_code(frame);
#if PMT_CPMT_DEFER_LINE
    int lasti = pmt_cpmt_frame_lasti(frame), line = CPMT_LINE_LATER;
    int set = pmt_cpmt_frame_lineno(frame);
    if (set >= 0) {
        line = set != 0 ? set : CPMT_LINE_LATER;
        frame = NULL;
    }
#else
    int lasti = -1, line = pmt_cpmt_frame_line(frame);
#endif
    cpmt_event(self, code, lasti, line, frame, what, cfunc);
    return 0;
}

#if (PMT_CPMT_FRAME311 || PMT_CPMT_FRAME312) && PMT_HAVE_TSC
#define CPMT_QUICK 1
/* The code, offset and line of an event of a frame whose fields are read
 * directly (compat.h); line_known(frame) first: 0 if its line must be asked
 * for (3.11: f_lineno not set). */
#if PMT_CPMT_DEFER_LINE
#define line_known(frame) 1
#else
#define line_known(frame) (PMT_FRAME_LINENO(frame) != 0)
#endif

static inline void
direct_place(PyFrameObject *frame, PyCodeObject **code, int *lasti, int *line)
{
    int set = PMT_FRAME_LINENO(frame);
    *code = pmt_cpmt_direct_code(frame);
#if PMT_CPMT_DEFER_LINE
    *lasti = pmt_cpmt_direct_lasti(frame);
    *line = set != 0 ? set : CPMT_LINE_LATER;
#else
    *lasti = -1;
    *line = set;
#endif
}

/* The rest of a quick event (below), called last: no register of the
 * callback lives across these calls. */
static int __attribute__((noinline))
quick_full(CpmtTracer *self, PyFrameObject *frame, int what, PyObject *cfunc, uint64_t now)
{
    PyCodeObject *code;
    int lasti, line;
    direct_place(frame, &code, &lasti, &line);
    cpmt_full_event(self, code, lasti, line, NULL, what, cfunc, now);   /* event.h */
    return 0;
}

static int __attribute__((noinline))
quick_hold(CpmtTracer *self, PyCodeObject *code, PyObject *cfunc)
{
    cpmt_hold_names(self, code, cfunc);
    return 0;
}
#else
#define CPMT_QUICK 0
#endif

/* The profile / trace function.  An event of a frame whose fields are read
 * directly (3.11+, compat.h), with the TSC clock, is cpmt_event inline here,
 * its slow parts called last (quick_*); any other event goes to
 * callback_any.  So the quiet path needs (almost) no callee-saved register
 * and no prologue (~14 instructions of the ~80 a quiet event cost in the
 * callback, callgrind, 3.13 Trace). */
int
cpmt_callback(PyObject *obj, PyFrameObject *frame, int what, PyObject *arg)
{
#if CPMT_QUICK
    CpmtTracer *self = (CpmtTracer *)obj;
    if (frame != NULL && pmt_cpmt_frame_direct && cpmt_tclock.use_tsc && line_known(frame)) {
        PyObject *cfunc = NULL;
        if (what >= PyTrace_C_CALL) {   /* C_CALL, C_EXCEPTION, C_RETURN, OPCODE */
            /* OPCODE, and a subclass (PyCFunction_Check: a call), in callback_any */
            if (what == PyTrace_OPCODE
                    || (!Py_IS_TYPE(arg, &PyCFunction_Type) && !Py_IS_TYPE(arg, &PyCMethod_Type))) {
                return callback_any(obj, frame, what, arg);
            }
            if (cpmt_is_own_method(((PyCFunctionObject *)arg)->m_ml)) {
                return 0;   /* our own __exit__: not part of the traced code */
            }
            cfunc = arg;
        }
        uint64_t now = pmt_ticks(&cpmt_tclock);
        if (self->quiet_ok && !pmt_gate_due_attached(&self->gate, now)) {
            PyCodeObject *code;
            int lasti, line;
            direct_place(frame, &code, &lasti, &line);
            return cpmt_quiet(self, code, lasti, line, what, cfunc, now)
                   ? quick_hold(self, code, cfunc) : 0;
        }
        return quick_full(self, frame, what, cfunc, now);
    }
#endif
    return callback_any(obj, frame, what, arg);
}
