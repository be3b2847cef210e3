/* tracer.c: the Profile and Trace types: context managers that attach the
 * per-event function (callback.c) to the calling thread as its profile
 * (Profile) or trace (Trace) function, stacked when nested, each with its
 * own log (tracerlog.c). */
#include "cpmt.h"

#include <string.h>

#include "rss.h"


/* (d_rss_trigger, message, filepath) into arg[0..2], NULL where not given.  A
 * decorator makes a tracer per call: the usual calls (up to three positional
 * arguments, the keywords by their interned names, once each) are sorted here
 * by pointer, ~20 times cheaper than PyArg_ParseTupleAndKeywords, which looks
 * each name up by a new string; anything else goes to it, for its errors. */
static int
tracer_args(PyObject *args, PyObject *kwds, PyObject *arg[3])
{
    static char *kwlist[] = {"d_rss_trigger", "message", "filepath", NULL};
    static PyObject *names[3];
    Py_ssize_t n = PyTuple_GET_SIZE(args);
    arg[0] = arg[1] = arg[2] = NULL;
    if (names[2] == NULL) {
        for (int i = 0; i < 3; i++) {
            if (names[i] == NULL && (names[i] = PyUnicode_InternFromString(kwlist[i])) == NULL) {
                return -1;
            }
        }
    }
    if (n <= 3) {
        for (Py_ssize_t i = 0; i < n; i++) {
            arg[i] = PyTuple_GET_ITEM(args, i);
        }
        Py_ssize_t pos = 0;
        PyObject *k, *v;
        int sorted = 1;
        while (sorted && kwds != NULL && PyDict_Next(kwds, &pos, &k, &v)) {
            int j = 0;
            while (j < 3 && k != names[j]) {
                j++;
            }
            sorted = j < 3 && arg[j] == NULL;   /* else unknown, not interned, or twice */
            if (sorted) {
                arg[j] = v;
            }
        }
        if (sorted) {
            return 0;
        }
        arg[0] = arg[1] = arg[2] = NULL;
    }
    /* No ":Profile" in the format: the original pymemtrace's own tests assert
     * its exact words, "function takes at most 3 arguments (4 given)"
     * (tests/test_original_suite.py runs them). */
    return PyArg_ParseTupleAndKeywords(args, kwds, "|OOO", kwlist, &arg[0], &arg[1], &arg[2])
           ? 0 : -1;
}

static PyObject *
tracer_new(PyTypeObject *type, PyObject *args, PyObject *kwds)
{
    PyObject *arg[3];
    const char *tname = type == &CpmtProfileType ? "Profile" : "Trace";
    if (tracer_args(args, kwds, arg) < 0) {
        return NULL;
    }
    PyObject *trigger_obj = arg[0];
    PyObject *message = arg[1] ? arg[1] : Py_None, *filepath = arg[2] ? arg[2] : Py_None;
    long long trigger = -1;
    if (trigger_obj != NULL) {
        if (PyBool_Check(trigger_obj) || !PyIndex_Check(trigger_obj)) {
            PyErr_Format(PyExc_TypeError,
                         "%s(): d_rss_trigger must be an int (bytes; -1 for the page size), "
                         "not %.100s", tname, Py_TYPE(trigger_obj)->tp_name);
            return NULL;
        }
        PyObject *as_int = PyNumber_Index(trigger_obj);
        if (as_int == NULL) {
            return NULL;
        }
        trigger = PyLong_AsLongLong(as_int);
        Py_DECREF(as_int);
        if (trigger == -1 && PyErr_Occurred()) {
            PyErr_Clear();
            PyErr_Format(PyExc_ValueError, "%s(): d_rss_trigger is out of range", tname);
            return NULL;
        }
        if (trigger < -1) {
            PyErr_Format(PyExc_ValueError,
                         "%s(): d_rss_trigger must be -1 (the page size), 0 (every event) "
                         "or a positive number of bytes, not %lld", tname, trigger);
            return NULL;
        }
    }
    if (message != Py_None && !PyUnicode_Check(message)) {
        PyErr_Format(PyExc_TypeError, "%s(): message must be a str or None, not %.100s",
                     tname, Py_TYPE(message)->tp_name);
        return NULL;
    }
    PyObject *fspath = NULL;
    if (filepath != Py_None) {
        if (!PyUnicode_Check(filepath) && !PyBytes_Check(filepath)
                && !PyObject_HasAttrString((PyObject *)Py_TYPE(filepath), "__fspath__")) {
            PyErr_Format(PyExc_TypeError,
                         "%s(): filepath must be a str, bytes, os.PathLike or None, not %.100s",
                         tname, Py_TYPE(filepath)->tp_name);
            return NULL;
        }
        fspath = PyOS_FSPath(filepath);
        if (fspath == NULL) {
            return NULL;
        }
        if ((PyUnicode_Check(fspath) && PyUnicode_GET_LENGTH(fspath) == 0)
                || (PyBytes_Check(fspath) && PyBytes_GET_SIZE(fspath) == 0)) {
            Py_DECREF(fspath);
            PyErr_Format(PyExc_ValueError, "%s(): filepath must not be empty", tname);
            return NULL;
        }
        Py_ssize_t nul = PyUnicode_Check(fspath)
            ? PyUnicode_FindChar(fspath, 0, 0, PyUnicode_GET_LENGTH(fspath), 1)
            : (memchr(PyBytes_AS_STRING(fspath), 0, (size_t)PyBytes_GET_SIZE(fspath)) ? 0 : -1);
        if (nul != -1) {
            Py_DECREF(fspath);
            if (nul == -2) {
                return NULL;
            }
            PyErr_Format(PyExc_ValueError, "%s(): filepath must not contain a null byte", tname);
            return NULL;
        }
    }
    CpmtTracer *self = (CpmtTracer *)type->tp_alloc(type, 0);
    if (self == NULL) {
        Py_XDECREF(fspath);
        return NULL;
    }
    self->kind = type == &CpmtProfileType ? 'P' : 'T';
    self->state = ST_NEW;
    self->trigger = trigger == -1 ? (int64_t)pmt_page_size() : (int64_t)trigger;
    if (message != Py_None) {
        Py_INCREF(message);
        self->message = message;
    }
    self->filepath = fspath;
    return (PyObject *)self;
}


static void
tracer_dealloc(CpmtTracer *self)
{
    if (self->state == ST_ACTIVE) {
        /* Abandoned while attached (its thread ended): keep what it logged. */
        cpmt_registry_remove(self);
        pmt_gate_detach(&self->gate);
        self->state = ST_DONE;
        self->every = 0;
#if PMT_CPMT_HAVE_MONITORING
        if (self->mon) {
            (void)cpmt_mon_detach(self, NULL);
        }
#endif
        if (!self->exact) {
            cpmt_hooks_release();
        }
        self->quiet_ok = 0;
        self->state = ST_DONE;
    }
    if (self->w != NULL) {
        (void)pmt_lw_close(self->w);
        PyMem_RawFree(self->w);
        self->w = NULL;
    }
    cpmt_clear_refs(self);
    Py_CLEAR(self->prev_obj);
    Py_CLEAR(self->message);
    Py_CLEAR(self->filepath);
    Py_CLEAR(self->path);
    Py_CLEAR(self->path_bytes);
    Py_TYPE(self)->tp_free((PyObject *)self);
}

static PyObject *
tracer_enter(CpmtTracer *self, PyObject *Py_UNUSED(ignored))
{
    if (self->state != ST_NEW) {
        PyErr_Format(PyExc_RuntimeError, "this cPyMemTrace.%s has already been %s; "
                     "make a new one for each with-block",
                     self->kind == 'P' ? "Profile" : "Trace",
                     self->state == ST_ACTIVE ? "entered" : "used");
        return NULL;
    }
    PyThreadState *ts = PyThreadState_Get();
    /* A nested tracer attaches the way the outer one of its kind did. */
    CpmtTracer *outer = cpmt_current(self->kind);
    self->mon = outer != NULL ? outer->mon : cpmt_use_monitoring;
    Py_tracefunc pf = NULL;
    PyObject *po = NULL;
    if (!self->mon) {
        pf = PMT_CPMT_TS_FUNC(ts, self->kind == 'P');
        po = PMT_CPMT_TS_OBJ(ts, self->kind == 'P');
    }
    self->depth = outer ? outer->depth + 1 : 1;
    if (cpmt_open_log(self) != 0) {
        cpmt_discard_log(self);
        Py_CLEAR(self->path);
        Py_CLEAR(self->path_bytes);
        return NULL;
    }
    if (self->message != NULL) {
        Py_ssize_t n;
        const char *s = PyUnicode_AsUTF8AndSize(self->message, &n);
        if (s == NULL) {
            cpmt_discard_log(self);
            return NULL;
        }
        pmt_cpmt_write_start(self->w, s, (size_t)n);
    }
    else {
        pmt_cpmt_write_start(self->w, NULL, 0);
    }
    self->exact = cpmt_exact_rss;
    if (!self->exact) {
        cpmt_hooks_acquire();
    }
    /* No RSS read here: the first event reads it (seq.event == 0), and __exit__
     * reads it for the END line. */
    self->rss = 0;
    pmt_tickclock_anchor(&cpmt_tclock);
    pmt_gate_init(&self->gate, cpmt_gate_limit_bytes, cpmt_gate_limit_blocks, cpmt_gate_limit_events,
                  pmt_tickclock_ticks_in(&cpmt_tclock, cpmt_gate_limit_ns), pmt_ticks(&cpmt_tclock));
    if (!self->exact) {
        pmt_gate_attach(&self->gate);   /* the allocators' counters check its limits */
    }
    pmt_cpmt_seq_start(&self->seq, self->trigger);
    self->rss_reads = 0;
    memset(&self->fmt, 0, sizeof self->fmt);
    self->failed = 0;
    self->quiet_ok = 0;
    if (outer != NULL) {
        pmt_cpmt_write_detach(outer->w, outer->seq.event, cpmt_clock_now(), self->depth, cpmt_path_cstr(self));
    }
    self->state = ST_ACTIVE;
    self->every = self->trigger == 0 && cpmt_every_path;     /* ST_ACTIVE, failed 0 */
    self->tstate = ts;
    int rc;
#if PMT_CPMT_HAVE_MONITORING
    if (self->mon) {
        rc = cpmt_mon_attach(self);     /* sets prev_obj */
    }
    else
#endif
    {
        Py_XINCREF(po);     /* the set call below drops the thread's reference */
        rc = cpmt_set_hook(self, cpmt_callback, (PyObject *)self);
        if (rc == 0) {
            self->prev_func = pf;
            self->prev_obj = po;
        }
        else {
            Py_XDECREF(po);
        }
    }
    if (rc < 0) {
        self->state = ST_NEW;
        self->every = 0;
        self->tstate = NULL;
        pmt_gate_detach(&self->gate);
        if (outer != NULL) {
            pmt_cpmt_write_resume(outer->w, outer->seq.event, cpmt_clock_now());
        }
        if (!self->exact) {
            cpmt_hooks_release();
        }
        cpmt_discard_log(self);
        return NULL;
    }
    cpmt_registry_add(self);
    Py_INCREF(self);
    return (PyObject *)self;
}

static PyObject *
tracer_exit(CpmtTracer *self, PyObject *args)
{
    PyObject *exc_type = Py_None, *exc = Py_None, *tb = Py_None;
    if (!PyArg_UnpackTuple(args, "__exit__", 0, 3, &exc_type, &exc, &tb)) {
        return NULL;
    }
    if (self->state != ST_ACTIVE) {
        Py_RETURN_FALSE;
    }
    const char *why = "ok";
    if (exc_type != Py_None && PyType_Check(exc_type)) {
        why = ((PyTypeObject *)exc_type)->tp_name;
        const char *dot = strrchr(why, '.');
        if (dot != NULL) {
            why = dot + 1;
        }
    }
    Py_INCREF(self);    /* finishing may drop the thread's reference */
    int rc = cpmt_finish(self, why);
    if (rc != 0) {
        PyErr_SetFromErrnoWithFilenameObject(PyExc_OSError, self->path);
    }
    Py_DECREF(self);
    if (rc != 0) {
        return NULL;
    }
    Py_RETURN_FALSE;
}

static PyObject *
tracer_get_log_path(CpmtTracer *self, void *Py_UNUSED(closure))
{
    if (self->path == NULL) {
        Py_RETURN_NONE;
    }
    Py_INCREF(self->path);
    return self->path;
}

static PyObject *
tracer_get_trigger(CpmtTracer *self, void *Py_UNUSED(closure))
{
    return PyLong_FromLongLong((long long)self->trigger);
}

static PyObject *
tracer_get_depth(CpmtTracer *self, void *Py_UNUSED(closure))
{
    return PyLong_FromLong(self->depth);
}

static PyObject *
tracer_get_events(CpmtTracer *self, void *Py_UNUSED(closure))
{
    return PyLong_FromLongLong((long long)self->seq.event);
}

static PyObject *
tracer_get_rss_reads(CpmtTracer *self, void *Py_UNUSED(closure))
{
    return PyLong_FromLongLong((long long)self->rss_reads);
}

static PyObject *
tracer_repr(CpmtTracer *self)
{
    static const char *states[] = {"new", "active", "done"};
    return PyUnicode_FromFormat("<cPyMemTrace.%s %s d_rss_trigger=%lld log=%R>",
                                self->kind == 'P' ? "Profile" : "Trace", states[self->state],
                                (long long)self->trigger,
                                self->path ? self->path : Py_None);
}

/* ---- the original pymemtrace's methods (a drop-in for its users) ---- */

static PyObject *
tracer_log_file_path(CpmtTracer *self, PyObject *Py_UNUSED(ignored))
{
    if (self->state != ST_ACTIVE || self->path == NULL) {
        Py_RETURN_NONE;
    }
    return Py_NewRef(self->path);
}

/* The text of a str argument, or NULL with an exception set: OSError if the
 * log is not open (before __enter__, after __exit__; the original's error),
 * TypeError if msg is not a str. */
static const char *
open_log_and_text(CpmtTracer *self, PyObject *msg, const char *fname, Py_ssize_t *n)
{
    if (self->state != ST_ACTIVE || self->w == NULL) {
        PyErr_SetString(PyExc_OSError, "Log file is closed.");
        return NULL;
    }
    if (!PyUnicode_Check(msg)) {
        PyErr_Format(PyExc_TypeError, "%s(): msg must be a str, not %.100s", fname,
                     Py_TYPE(msg)->tp_name);
        return NULL;
    }
    return PyUnicode_AsUTF8AndSize(msg, n);
}

static PyObject *
tracer_write_message_to_log(CpmtTracer *self, PyObject *msg)
{
    Py_ssize_t n;
    const char *s = open_log_and_text(self, msg, "write_message_to_log", &n);
    if (s == NULL) {
        return NULL;
    }
    /* At the current event: the last one this tracer saw. */
    int64_t ev = pmt_cpmt_seq_current(&self->seq);
    pmt_cpmt_write_msg_row(self->w, ev, ev - self->seq.last_event,
                           pmt_cpmt_seq_clock(&self->seq, cpmt_clock_now()), s, (size_t)n);
    Py_RETURN_NONE;
}

static PyObject *
tracer_write_to_log(CpmtTracer *self, PyObject *text)
{
    Py_ssize_t n;
    const char *s = open_log_and_text(self, text, "write_to_log", &n);
    if (s == NULL) {
        return NULL;
    }
    pmt_cpmt_write_message(self->w, s, (size_t)n);
    Py_RETURN_NONE;
}

PyMethodDef cpmt_tracer_methods[CPMT_N_METHODS + 1] = {
    {"__enter__", (PyCFunction)tracer_enter, METH_NOARGS,
     "Attach to the calling thread and open the log."},
    {"__exit__", (PyCFunction)tracer_exit, METH_VARARGS,
     "Detach, give the thread back what was attached before, and close the log.\n"
     "Raises OSError if the log could not be written completely."},
    {"log_file_path", (PyCFunction)tracer_log_file_path, METH_NOARGS,
     "log_file_path() -> str | None\n\nThe path of this object's log while it is active, "
     "None before and after."},
    {"write_message_to_log", (PyCFunction)tracer_write_message_to_log, METH_O,
     "write_message_to_log(msg)\n\nWrite a row 'MSG:  <Event> +<dEvent> <Clock> # msg' into "
     "this object's log,\nat its current event.  OSError if the log is not open."},
    {"write_to_log", (PyCFunction)tracer_write_to_log, METH_O,
     "write_to_log(text)\n\nWrite text verbatim (newline added if missing) into this "
     "object's log.\nOSError if the log is not open."},
    {NULL, NULL, 0, NULL},
};

static PyGetSetDef tracer_getset[] = {
    {"log_path", (getter)tracer_get_log_path, NULL, "Path of the log (None before __enter__).", NULL},
    {"d_rss_trigger", (getter)tracer_get_trigger, NULL, "The trigger in bytes (-1 resolved to the page size).", NULL},
    {"depth", (getter)tracer_get_depth, NULL, "Stack depth on its thread (1: outermost).", NULL},
    {"events", (getter)tracer_get_events, NULL, "Number of events seen so far.", NULL},
    {"rss_reads", (getter)tracer_get_rss_reads, NULL,
     "How many times RSS was read at an event (every event in exact mode).", NULL},
    {NULL, NULL, NULL, NULL, NULL},
};

PyDoc_STRVAR(profile_doc,
"Profile(d_rss_trigger=-1, message=None, filepath=None)\n\n"
"Context manager: log RSS at Python and C calls and returns of this thread.\n\n"
"d_rss_trigger: -1 logs when RSS moved by a page or more, 0 logs every event,\n"
"n logs when |dRSS| >= n bytes.  message is written first in the log.\n"
"filepath names the log; by default a new file\n"
"YYYYMMDD_HHMMSS_PID_P_n_PY<version>.log is created in the current directory.\n\n"
"sys.getprofile() returns the active Profile; sys.setprofile() of it puts its C\n"
"function back at the next event.  Called as profile(frame, event, arg) it\n"
"records that event (on the thread that entered it, while active) and\n"
"returns None.");

PyDoc_STRVAR(trace_doc,
"Trace(d_rss_trigger=-1, message=None, filepath=None)\n\n"
"Context manager: as Profile, but attached as a trace function, so the log\n"
"has LINE events (every line executed) and no C_CALL/C_RETURN events.\n"
"By default a new file YYYYMMDD_HHMMSS_PID_T_n_PY<version>.log is created.\n\n"
"sys.gettrace() returns the active Trace; sys.settrace() of it puts its C\n"
"function back at the next call event.  Called as trace(frame, event, arg) it\n"
"records that event (on the thread that entered it, while active) and\n"
"returns itself, as a Python trace function returns its local trace function.");

#define TRACER_TYPE(VAR, NAME, DOC)                                                     \
    PyTypeObject VAR = {                                                         \
        PyVarObject_HEAD_INIT(NULL, 0)                                                  \
        .tp_name = "pymemtrace.cPyMemTrace." NAME,                                      \
        .tp_basicsize = sizeof(CpmtTracer),                                             \
        .tp_dealloc = (destructor)tracer_dealloc,                                       \
        .tp_repr = (reprfunc)tracer_repr,                                               \
        .tp_call = cpmt_tracer_call,                                                    \
        .tp_flags = Py_TPFLAGS_DEFAULT,                                                 \
        .tp_doc = DOC,                                                                  \
        .tp_methods = cpmt_tracer_methods,                                                   \
        .tp_getset = tracer_getset,                                                     \
        .tp_new = tracer_new,                                                           \
    };

TRACER_TYPE(CpmtProfileType, "Profile", profile_doc)
TRACER_TYPE(CpmtTraceType, "Trace", trace_doc)

CpmtTracer *
cpmt_current(char kind)
{
#if PMT_CPMT_HAVE_MONITORING
    CpmtTracer *m = cpmt_mon_current(kind);
    if (m != NULL) {
        return m;
    }
#endif
    PyThreadState *ts = PyThreadState_Get();
    Py_tracefunc f = PMT_CPMT_TS_FUNC(ts, kind == 'P');
    PyObject *o = PMT_CPMT_TS_OBJ(ts, kind == 'P');
    if (f == cpmt_callback && o != NULL && IS_TRACER(o)
            && ((CpmtTracer *)o)->state == ST_ACTIVE) {
        return (CpmtTracer *)o;
    }
    return NULL;
}
