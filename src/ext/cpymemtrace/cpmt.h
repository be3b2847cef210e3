/* cpmt.h: what the files of the cPyMemTrace extension share (internal).
 *
 *   module.c      the module: its functions, settings, init, exit/fork flush
 *   tracer.c      the Profile / Trace type: arguments, enter, exit, attributes
 *   tracerlog.c   a tracer's log file: open, discard, finish (END line)
 *   callback.c    the per-event function (gate, RSS read, NEXT/PREV rows)
 *   event.h       its fast path, inline in both hooks
 *   names.c       the File and Function of a row; static-type methods
 *   allochooks.c  wrappers around the interpreter's allocators that feed the
 *                 gate counters (src/core/rssgate.h)
 *   registry.c    the active tracers of every thread (flushed at exit/fork)
 *   callable.c    the tracer as a Python-level function (sys.settrace(sys.gettrace()))
 *   monitor.c     the sys.monitoring backend (3.12+): tool id, callbacks, per-thread top
 *
 * The log's text is src/core/cpmtlog.c, the writer src/core/logwriter.c.
 * Every CPython-version difference is in src/ext/compat.h.
 */
#ifndef PMT_CPMT_H
#define PMT_CPMT_H

#define PY_SSIZE_T_CLEAN
#include <Python.h>
#include <frameobject.h>

#include <limits.h>
#include <stdint.h>

#include "compat.h"
#include "cpmtlog.h"
#include "cpmtseq.h"
#include "logwriter.h"
#include "rssgate.h"
#include "tickclock.h"

/* ---- module settings and clock (module.c; single-phase init) ---- */
/* What the per-event path reads is hidden: loaded directly, not through the
 * GOT (PMT_GATE_HIDDEN, rssgate.h). */
#define CPMT_HIDDEN PMT_GATE_HIDDEN
extern pmt_tickclock cpmt_tclock CPMT_HIDDEN;   /* event stamps (tickclock.h) */
extern int64_t cpmt_origin_ns;          /* the Clock column's zero */
extern uint64_t cpmt_anchor_every;      /* ticks between clock anchors in exact mode */
extern char cpmt_py_version[32];        /* "3.11.7" */
extern int cpmt_exact_rss;              /* read RSS at every event */
extern int cpmt_every_path;             /* trigger 0 takes cpmt_every_event (callback.c) */
extern uint64_t cpmt_gate_limit_bytes;
extern int64_t cpmt_gate_limit_blocks;
extern uint32_t cpmt_gate_limit_events;
extern int64_t cpmt_gate_limit_ns;
extern int cpmt_use_monitoring;         /* new outermost tracers attach via sys.monitoring */

static inline int64_t
cpmt_clock_now(void)
{
    return pmt_monotonic_ns() - cpmt_origin_ns;
}

static inline int64_t
cpmt_clock_of(uint64_t ticks)
{
    return pmt_tickclock_ns(&cpmt_tclock, ticks) - cpmt_origin_ns;
}

/* ---- the Profile / Trace object (tracer.c) ---- */
enum { ST_NEW = 0, ST_ACTIVE = 1, ST_DONE = 2 };
#define CPMT_LINE_SETS_LOG2 5
#define CPMT_LINE_MEMO (2 << CPMT_LINE_SETS_LOG2)   /* 2 ways of 32 sets */

typedef struct CpmtTracer {
    PyObject_HEAD
    char kind;                  /* 'P' (profile) or 'T' (trace) */
    int state;
    int depth;
    int exact;
    int failed;                 /* the writer failed: stop logging */
    int mon;                    /* attached via sys.monitoring (monitor.c), not as the
                                   thread's profile / trace function */
    int quiet_ok;               /* active, not failed, not exact, trigger > 0, past
                                   event 0: an event that reads no RSS gets no row */
    int every;                  /* active, not failed, trigger 0: every event gets a
                                   NEXT row and none a PREV row (callback.c cpmt_every_event) */
    int64_t trigger;
    PyObject *message;          /* str or NULL */
    PyObject *filepath;         /* str or bytes (os.fspath) or NULL */
    PyObject *path;             /* str: the log's path once opened */
    PyObject *path_bytes;       /* bytes: the same, file-system encoded */
    pmt_logwriter *w;
    PyThreadState *tstate;
    Py_tracefunc prev_func;     /* what this one displaced on its thread */
    PyObject *prev_obj;         /*   (monitoring: the outer tracer of its kind, or NULL) */
    /* event state */
    pmt_cpmt_seq seq;           /* numbering and the NEXT/PREV rule (src/core/cpmtseq.h) */
    int64_t rss;                /* last RSS read */
    int64_t rss_reads;          /* how many times RSS was read */
    pmt_cpmt_fmtcache fmt;
    pmt_gate gate;
    /* the previous event's names, for a PREV row */
    PyCodeObject *prev_code;    /* strong */
    int prev_lasti;             /* its instruction offset, when its line is
                                   CPMT_LINE_LATER (compat.h PMT_CPMT_DEFER_LINE) */
    PyObject *prev_cfunc;       /* strong: the C function of a C_* event */
    PyCodeObject *spare_code;   /* strong: the ones held before them, kept so */
    PyObject *spare_cfunc;      /*   that alternating names change no counts */
    struct {                    /* lines of (code, offset) computed for rows on */
        PyCodeObject *code;     /*   3.12+ (strong: an address is never reused */
        int lasti;              /*   while cached); 2-way (callback.c line_of) */
        int line;
    } lines[CPMT_LINE_MEMO];
    PyCodeObject *nm_code;      /* strong: the last code a row named, and */
    const char *nm_file;        /*   its names (UTF-8, owned by it) */
    size_t nm_file_len;
    const char *nm_func;
    size_t nm_func_len;
    const char *nm_cname;       /* the last C row's function name (its owner */
    size_t nm_cname_len;        /*   is fmt_cfunc, or it is static) and length */
    PyCodeObject *fmt_code;     /* strong: the owners of the names the row */
    PyObject *fmt_cfunc;        /*   formatter's cache points at (cpmtlog.h) */
    /* cpmt_every_event's C function names: fmt_cfunc's (when it is a PyCFunction,
     * PyCMethod or method descriptor: its PyMethodDef's name, which lives as
     * long as it is held), and those of the last two static methods */
    const char *fmt_cname;      /* NULL: not known */
    size_t fmt_clen;
    const PyMethodDef *st_ml[2];
    size_t st_len[2];
    int every_due;              /* cpmt_every_event: RSS is read at this event */
    pmt_cpmt_row erow;          /* cpmt_every_event's row */
    struct CpmtTracer *reg_next;
    struct CpmtTracer *reg_prev;
} CpmtTracer;

extern PyTypeObject CpmtProfileType CPMT_HIDDEN;
extern PyTypeObject CpmtTraceType CPMT_HIDDEN;

#define IS_TRACER(o) (Py_IS_TYPE((o), &CpmtProfileType) || Py_IS_TYPE((o), &CpmtTraceType))

/* The methods of both types (tracer.c), and whether a C function's
 * PyMethodDef is one of them: a C function with one is a method bound to a
 * Profile / Trace (one compare where IS_TRACER(m_self) is three loads). */
#define CPMT_N_METHODS 5
extern PyMethodDef cpmt_tracer_methods[CPMT_N_METHODS + 1] CPMT_HIDDEN;
static inline int
cpmt_is_own_method(const PyMethodDef *ml)
{
    return (uintptr_t)ml - (uintptr_t)cpmt_tracer_methods
           < CPMT_N_METHODS * sizeof(PyMethodDef);
}

/* The active tracer of this kind ('P' or 'T') on the calling thread, or NULL. */
CpmtTracer *cpmt_current(char kind);

/* ---- its log (tracerlog.c) ---- */
/* Open the log: filepath, or a new default-named file in the cwd.  Sets
 * path / path_bytes.  Returns 0, or -1 with OSError set. */
int cpmt_open_log(CpmtTracer *self);
void cpmt_discard_log(CpmtTracer *self);
const char *cpmt_path_cstr(CpmtTracer *self);
/* Take the tracer off its thread, give the thread back what it displaced,
 * write the END line and close.  Returns 0, or -1 with errno set if the log
 * could not be written completely. */
int cpmt_finish(CpmtTracer *self, const char *why);
void cpmt_clear_refs(CpmtTracer *self);
int cpmt_set_hook(CpmtTracer *self, Py_tracefunc func, PyObject *obj);

/* ---- the per-event function (callback.c) ---- */
/* The remembered line of an event whose line is computed only for a row. */
#define CPMT_LINE_LATER INT_MIN
int cpmt_callback(PyObject *obj, PyFrameObject *frame, int what, PyObject *arg);
/* ---- the sys.monitoring backend (monitor.c, 3.12+) ---- */
#if PMT_CPMT_HAVE_MONITORING
/* The innermost active monitoring tracer of this kind on this thread, or NULL. */
CpmtTracer *cpmt_mon_current(char kind);
/* Make self the innermost of its kind on this thread (the one there becomes
 * self->prev_obj); the first one takes a tool id.  -1 with an exception set. */
int cpmt_mon_attach(CpmtTracer *self);
/* self has ended: returns the tracer that takes over again on this thread
 * (borrowed), or NULL. */
CpmtTracer *cpmt_mon_detach(CpmtTracer *self, PyThreadState *ts);
#endif

/* ---- tracer(frame, event, arg) (callable.c): the types' tp_call ---- */
PyObject *cpmt_tracer_call(PyObject *obj, PyObject *args, PyObject *kwds);

/* ---- allocator wrappers (allochooks.c) ---- */
/* The first user decides how frees are sized and installs the wrappers;
 * the last one takes them out if they are still on top. */
void cpmt_hooks_acquire(void);
void cpmt_hooks_release(void);
/* Put back a wrapper someone took out of its chain (cheap when on top). */
void cpmt_hooks_ensure(void);

/* ---- active tracers of every thread (registry.c) ---- */
void cpmt_registry_add(CpmtTracer *t);
void cpmt_registry_remove(CpmtTracer *t);
/* Flush the log of every active tracer. */
void cpmt_registry_flush(void);

#endif /* PMT_CPMT_H */
