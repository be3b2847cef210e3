/* tracer.c: the per-event half of the _reftrace module: ReferenceTracing and
 * ReferenceTracingSimple over CPython 3.13+'s reference tracer hook (PyRefTracer_SetTracer), which
 * the interpreter calls at every object creation and destruction.
 *
 * The interpreter has one tracer slot, so the context managers form a stack:
 * the innermost active one gets the events; entering a new one detaches the
 * one below (a MSG line in its log says so), leaving re-attaches it, and
 * leaving the last restores whatever tracer was installed before.
 *
 * CPython 3.13.0 to 3.13.2 do not call the tracer for objects the eval loop
 * frees itself (cpython gh-130382): such a destruction is found when a new
 * object is created at the same address, and counted then (unseen_del).
 *
 * Per event (all C, no Python object created, no allocation unless a hash
 * table grows): count it; ReferenceTracing also keeps every object created
 * during the trace in a pointer table (so a destruction is matched to its
 * creation and the live count per type is exact: objects that existed before
 * the trace never make a count negative), keeps per-type live/created/destroyed
 * counts in a second table (both src/core/addrtab.h), and writes a row (clock,
 * address, live count, type, file, line, function, RSS) into its log
 * (src/core/reftracelog.c: the format, opening, notes, closing) when the
 * type passes the filters.  RSS is re-read at most every 1024 events or 1 ms
 * (src/core/rssgate.h).  Objects the tracer itself causes to exist (frame
 * objects made by asking for the current line, the dict of
 * live_object_counts()) are kept in a third table and never reported.
 *
 * module.c holds the types and the module; before 3.13 this file is empty.
 */
#include "reftrace.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "reftracelog.h"
#include "rss.h"

#if PMT_HAVE_REFTRACER

static RefTraceObject *top;             /* the innermost active tracer */
static PyRefTracer saved_fn;            /* the tracer before the outermost one */
static void *saved_data;
static int in_tracer;                   /* inside our callback or our own work */
static pmt_hashtab own;                 /* objects that exist because of us */

enum { FILTER_UNKNOWN = 0, FILTER_LOG = 1, FILTER_SKIP = 2 };

static int
name_in(PyObject *names, const char *name)
{
    Py_ssize_t n = names ? PyTuple_GET_SIZE(names) : 0;
    for (Py_ssize_t i = 0; i < n; i++) {
        const char *s = PyUnicode_AsUTF8(PyTuple_GET_ITEM(names, i));
        if (s && strcmp(s, name) == 0) {
            return 1;
        }
    }
    return 0;
}

/* A builtin type: a static type whose name has no module part (int, str,
 * list, range_iterator, builtin_function_or_method, ...). */
static int
is_builtin(PyTypeObject *tp)
{
    return !(tp->tp_flags & Py_TPFLAGS_HEAPTYPE) && strchr(tp->tp_name, '.') == NULL;
}

static int
decide(RefTraceObject *self, PyTypeObject *tp)
{
    if (self->include_tp_names && PyTuple_GET_SIZE(self->include_tp_names)) {
        return name_in(self->include_tp_names, tp->tp_name) ? FILTER_LOG : FILTER_SKIP;
    }
    if (!self->include_builtins && is_builtin(tp)) {
        return FILTER_SKIP;
    }
    return name_in(self->exclude_tp_names, tp->tp_name) ? FILTER_SKIP : FILTER_LOG;
}

static double
clock_now(RefTraceObject *self, int64_t now)
{
    return (double)(now - self->t0) / 1e9;
}

/* The current Python frame's file, line and function.  Asking may create a
 * frame object: that creation lands in `own` (we are in_tracer). */
static void
where(const char **file, int *line, const char **func)
{
    *file = NULL;
    *func = NULL;
    *line = 0;
    PyFrameObject *f = PyEval_GetFrame();
    if (f == NULL) {
        return;
    }
    PyCodeObject *code = PyFrame_GetCode(f);
    PyObject *exc = PyErr_GetRaisedException();
    *file = PyUnicode_AsUTF8(code->co_filename);
    *func = PyUnicode_AsUTF8(code->co_name);
    *line = PyFrame_GetLineNumber(f);
    PyErr_Clear();
    PyErr_SetRaisedException(exc);
    Py_DECREF(code);    /* the frame keeps the code alive */
}

static void
fail(RefTraceObject *self, int err)
{
    if (!self->err) {
        self->err = err;
    }
}

static void
log_event(RefTraceObject *self, PyObject *obj, PyTypeObject *tp, int destroy, int64_t live)
{
    int64_t now = pmt_monotonic_ns();
    if (pmt_gate_due(&self->gate, (uint64_t)now)) {
        int64_t rss = pmt_rss_current();
        if (rss >= 0) {
            self->rss = rss;
        }
        pmt_gate_mark(&self->gate, (uint64_t)now);
    }
    pmt_rt_event ev;
    ev.destroy = destroy;
    ev.clock = clock_now(self, now);
    ev.address = (uintptr_t)obj;
    ev.live = live;
    ev.type = tp->tp_name;
    where(&ev.file, &ev.line, &ev.function);
    ev.rss = self->rss;
    ev.drss = self->rss - self->rss_logged;
    self->rss_logged = self->rss;
    pmt_rt_write_event(self->w, &ev);
}

static void
full_event(RefTraceObject *self, PyObject *obj, PyRefTracerEvent event)
{
    int created;
    PyTypeObject *tp = Py_TYPE(obj);
    rt_entry *te;
    int64_t live;
    if (event == PyRefTracer_CREATE) {
        rt_entry *oe = pmt_at_put(&self->objects, (uintptr_t)obj, &created);
        if (oe && !created) {
            /* An object we saw created at this address died without a
             * DESTROY event (3.13's specialized instructions free some
             * objects directly): count its destruction now. */
            rt_entry *old = pmt_at_get(&self->types, oe->aux);
            if (old) {
                old->n[0]--;
                old->n[2]++;
            }
            self->unseen_del++;
        }
        te = pmt_at_put(&self->types, (uintptr_t)tp, &created);
        if (oe == NULL || te == NULL) {
            fail(self, ENOMEM);
            return;
        }
        oe->aux = (uintptr_t)tp;
        live = ++te->n[0];
        te->n[1]++;
    } else {
        rt_entry old;
        if (pmt_at_remove(&self->objects, (uintptr_t)obj, &old)) {
            te = pmt_at_get(&self->types, old.aux);
            if (te) {
                te->n[0]--;
                te->n[2]++;
            }
        } else {
            te = pmt_at_put(&self->types, (uintptr_t)tp, &created);
            if (te == NULL) {
                fail(self, ENOMEM);
                return;
            }
        }
        if (te == NULL) {
            return;
        }
        live = te->n[0];
    }
    if (te->aux == FILTER_UNKNOWN) {
        te->aux = (uintptr_t)decide(self, tp);
    }
    if (te->aux == FILTER_LOG) {
        log_event(self, obj, tp, event == PyRefTracer_DESTROY, live);
    }
    if (event == PyRefTracer_DESTROY && PyType_Check(obj)) {
        /* A type is going away: its entry (keyed by its address) goes too. */
        pmt_at_remove(&self->types, (uintptr_t)obj, NULL);
    }
}

static int
tracer(PyObject *obj, PyRefTracerEvent event, void *data)
{
    RefTraceObject *self = (RefTraceObject *)data;
    int created;
    if (in_tracer) {
        if (event == PyRefTracer_CREATE) {
            pmt_at_put(&own, (uintptr_t)obj, &created);
        } else {
            pmt_at_remove(&own, (uintptr_t)obj, NULL);
        }
        return 0;
    }
    if (own.len && pmt_at_remove(&own, (uintptr_t)obj, NULL) &&
            event == PyRefTracer_DESTROY) {
        return 0;   /* ours; a CREATE there means ours died unseen: go on */
    }
    if (self->suspended) {
        return 0;
    }
    in_tracer = 1;
    if (event == PyRefTracer_CREATE) {
        self->count_new++;
    } else {
        self->count_del++;
    }
    if (self->kind == KIND_FULL && !self->err) {
        full_event(self, obj, event);
    }
    in_tracer = 0;
    return 0;
}

static RefTraceObject *
top_full(void)
{
    for (RefTraceObject *t = top; t; t = t->below) {
        if (t->kind == KIND_FULL) {
            return t;
        }
    }
    return NULL;
}

static int
depth_of(int kind)
{
    int n = 0;
    for (RefTraceObject *t = top; t; t = t->below) {
        n += t->kind == kind;
    }
    return n;
}

static void
write_msg(RefTraceObject *self, const char *tag, const char *text, size_t len)
{
    pmt_rt_write_message(self->w, tag, clock_now(self, pmt_monotonic_ns()), text, len);
}

static int
open_log(RefTraceObject *self)
{
    self->w = PyMem_RawMalloc(sizeof(pmt_logwriter));
    if (self->w == NULL) {
        PyErr_NoMemory();
        return -1;
    }
    /* The default name is in the current directory, so that
     * log_file_path() is absolute. */
    char cwd[2048];
    const char *dir = self->filepath ? NULL : getcwd(cwd, sizeof cwd);
    if (pmt_rt_open(self->w, self->filepath ? PyBytes_AS_STRING(self->filepath) : NULL,
                    self->path, sizeof self->path, dir, time(NULL), getpid(),
                    depth_of(KIND_FULL), pmt_rt_py_version, self->message) != 0) {
        PyErr_Format(PyExc_OSError, "ReferenceTracing: can not open the log file %s: %s",
                     self->path[0] ? self->path : "(default name in the current directory)",
                     strerror(errno));
        PyMem_RawFree(self->w);
        self->w = NULL;
        return -1;
    }
    return 0;
}

PyObject *
RefTrace_enter(RefTraceObject *self, PyObject *Py_UNUSED(ignored))
{
    if (self->active) {
        return PyErr_Format(PyExc_RuntimeError, "this %s is already active",
                            Py_TYPE(self)->tp_name);
    }
    if (own.entry_size == 0) {
        pmt_at_init(&own);
    }
    if (self->kind == KIND_FULL) {
        pmt_at_init(&self->types);
        pmt_at_init(&self->objects);
        if (open_log(self) < 0) {
            pmt_ht_free(&self->types);
            pmt_ht_free(&self->objects);
            return NULL;
        }
        self->t0 = pmt_monotonic_ns();
        self->rss = self->rss_logged = pmt_rss_current();
        pmt_gate_init(&self->gate, PMT_GATE_LIMIT_BYTES, PMT_GATE_LIMIT_BLOCKS,
                      PMT_GATE_LIMIT_EVENTS, PMT_GATE_LIMIT_NS, (uint64_t)self->t0);
        RefTraceObject *outer = top_full();
        if (outer) {
            pmt_rt_write_detach(outer->w, clock_now(outer, pmt_monotonic_ns()), self->path);
            pmt_lw_flush(outer->w);
        }
        Py_CLEAR(self->final_counts);
    }
    if (top == NULL) {
        saved_fn = PyRefTracer_GetTracer(&saved_data);
    }
    self->count_new = self->count_del = self->unseen_del = 0;
    self->err = 0;
    self->suspended = 0;
    self->below = top;
    top = self;
    Py_INCREF(self);    /* the stack's reference */
    self->active = 1;
    self->finished = 0;
    if (PyRefTracer_SetTracer(tracer, self) < 0) {
        top = self->below;
        self->below = NULL;
        self->active = 0;
        Py_DECREF(self);
        return NULL;
    }
    return Py_NewRef(self);
}

/* {type name: live count} of the types the filters let through that have
 * objects alive, built without reporting the dict and strings themselves. */
static PyObject *
live_counts(RefTraceObject *self)
{
    int was = in_tracer;
    in_tracer = 1;
    PyObject *d = PyDict_New();
    size_t pos = 0;
    rt_entry *e;
    while (d && (e = pmt_ht_next(&self->types, &pos)) != NULL) {
        if (e->n[0] > 0 && e->aux == FILTER_LOG) {
            PyObject *v = PyLong_FromLongLong(e->n[0]);
            const char *name = ((PyTypeObject *)e->key)->tp_name;
            if (v == NULL || PyDict_SetItemString(d, name, v) < 0) {
                Py_XDECREF(v);
                Py_CLEAR(d);
                break;
            }
            Py_DECREF(v);
        }
    }
    in_tracer = was;
    return d;
}

static int
collect_garbage(RefTraceObject *self)
{
    if (self->gc_collect_on_exit < 0) {
        return 0;
    }
    PyObject *gc = PyImport_ImportModule("gc");
    PyObject *r = gc ? PyObject_CallMethod(gc, "collect", "i", self->gc_collect_on_exit) : NULL;
    Py_XDECREF(gc);
    Py_XDECREF(r);
    return r ? 0 : -1;
}

static void
unlink_from_stack(RefTraceObject *self)
{
    RefTraceObject **pp = &top;
    while (*pp && *pp != self) {
        pp = &(*pp)->below;
    }
    if (*pp) {
        *pp = self->below;
    }
    self->below = NULL;
}

PyObject *
RefTrace_exit(RefTraceObject *self, PyObject *Py_UNUSED(args))
{
    if (!self->active) {
        return PyErr_Format(PyExc_RuntimeError, "%s.__exit__() without __enter__()",
                            Py_TYPE(self)->tp_name);
    }
    int gc_failed = 0;
    if (self->kind == KIND_FULL && !self->suspended) {
        gc_failed = collect_garbage(self) < 0;   /* still tracing: garbage shows as DEL */
    }
    int was_top = top == self;
    unlink_from_stack(self);
    self->active = 0;
    self->finished = 1;
    int rc = was_top ? PyRefTracer_SetTracer(top ? tracer : saved_fn, top ? (void *)top
                                             : saved_data) : 0;
    if (was_top && top) {
        RefTraceObject *outer = top_full();
        if (outer && self->kind == KIND_FULL) {
            pmt_rt_write_attach(outer->w, clock_now(outer, pmt_monotonic_ns()));
        }
    }
    if (top == NULL) {
        pmt_ht_free(&own);          /* addresses are reused once nobody traces */
    }
    int err = self->err;
    if (self->kind == KIND_FULL) {
        self->final_counts = live_counts(self);
        size_t pos = 0;
        rt_entry *e;
        while ((e = pmt_ht_next(&self->types, &pos)) != NULL) {
            if (e->n[0] > 0 && e->aux == FILTER_LOG) {
                pmt_rt_write_live(self->w, e->n[0], ((PyTypeObject *)e->key)->tp_name);
            }
        }
        int close_err = pmt_rt_close(self->w);
        if (!err) {
            err = close_err;
        }
        PyMem_RawFree(self->w);
        self->w = NULL;
        pmt_ht_free(&self->types);
        pmt_ht_free(&self->objects);
    }
    Py_DECREF(self);    /* the stack's reference; the caller holds one */
    if (rc < 0 || gc_failed || (self->kind == KIND_FULL && self->final_counts == NULL)) {
        return NULL;
    }
    if (err) {
        errno = err;
        return PyErr_Format(err == ENOMEM ? PyExc_MemoryError : PyExc_OSError,
                            "ReferenceTracing: tracing stopped: %s (log %s)", strerror(err),
                            self->path);
    }
    Py_RETURN_FALSE;
}

static int
require_active(RefTraceObject *self, const char *what)
{
    if (!self->active) {
        PyErr_Format(PyExc_IOError, "Log file is closed: %s() needs the %s to be active "
                     "(inside its with block).", what, Py_TYPE(self)->tp_name);
        return -1;
    }
    return 0;
}

static PyObject *
write_message(RefTraceObject *self, PyObject *arg)
{
    Py_ssize_t n;
    const char *s;
    if (!PyUnicode_Check(arg)) {
        return PyErr_Format(PyExc_TypeError, "message must be a str, not %.100s",
                            Py_TYPE(arg)->tp_name);
    }
    int was = in_tracer;
    in_tracer = 1;
    s = PyUnicode_AsUTF8AndSize(arg, &n);
    in_tracer = was;
    if (s == NULL) {
        return NULL;
    }
    write_msg(self, "MSG", s, (size_t)n);
    Py_RETURN_NONE;
}

PyObject *
RefTrace_write_message_to_log(RefTraceObject *self, PyObject *arg)
{
    if (require_active(self, "write_message_to_log") < 0) {
        return NULL;
    }
    return write_message(self, arg);
}

PyObject *
RefTrace_live_object_counts(RefTraceObject *self, PyObject *Py_UNUSED(ignored))
{
    if (self->active) {
        return live_counts(self);
    }
    if (self->final_counts) {
        return PyDict_Copy(self->final_counts);
    }
    return PyDict_New();
}

PyObject *
RefTrace_log_file_path(RefTraceObject *self, PyObject *Py_UNUSED(ignored))
{
    if (!self->active) {
        Py_RETURN_NONE;
    }
    return PyUnicode_DecodeFSDefault(self->path);
}

PyObject *
RefTrace_suspend(RefTraceObject *self, PyObject *Py_UNUSED(ignored))
{
    self->suspended = 1;
    Py_RETURN_NONE;
}

PyObject *
RefTrace_resume(RefTraceObject *self, PyObject *Py_UNUSED(ignored))
{
    self->suspended = 0;
    Py_RETURN_NONE;
}

/* ---- module functions: the innermost active ReferenceTracing ------------ */

PyObject *
mod_wrapper_depth(PyObject *Py_UNUSED(m), PyObject *Py_UNUSED(a))
{
    return PyLong_FromLong(depth_of(KIND_FULL));
}

PyObject *
mod_simple_wrapper_depth(PyObject *Py_UNUSED(m), PyObject *Py_UNUSED(a))
{
    return PyLong_FromLong(depth_of(KIND_SIMPLE));
}

PyObject *
mod_log_path(PyObject *Py_UNUSED(m), PyObject *Py_UNUSED(a))
{
    RefTraceObject *t = top_full();
    if (t == NULL) {
        Py_RETURN_NONE;
    }
    return RefTrace_log_file_path(t, NULL);
}

PyObject *
mod_write_message_to_log(PyObject *Py_UNUSED(m), PyObject *arg)
{
    RefTraceObject *t = top_full();
    if (t == NULL) {
        PyErr_SetString(PyExc_ValueError, "Trying to write to a reference tracing log file "
                        "when no reference tracer is active.");
        return NULL;
    }
    return write_message(t, arg);
}

PyObject *
mod_live_object_counts(PyObject *Py_UNUSED(m), PyObject *Py_UNUSED(a))
{
    RefTraceObject *t = top_full();
    if (t == NULL) {
        PyErr_SetString(PyExc_ValueError, "Trying to read live object counts when no "
                        "reference tracer is active.");
        return NULL;
    }
    return live_counts(t);
}

/* atexit: write out what the active tracers' logs still buffer, so a program
 * that exits inside a with block (sys.exit, an uncaught exception) keeps it. */
PyObject *
mod_flush_all(PyObject *Py_UNUSED(m), PyObject *Py_UNUSED(a))
{
    for (RefTraceObject *t = top; t; t = t->below) {
        if (t->kind == KIND_FULL && t->w) {
            (void)pmt_lw_flush(t->w);     /* errors stay sticky for __exit__ */
        }
    }
    Py_RETURN_NONE;
}

#endif /* PMT_HAVE_REFTRACER */
