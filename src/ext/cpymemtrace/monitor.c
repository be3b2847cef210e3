/* monitor.c: Profile and Trace on sys.monitoring (PEP 669, CPython 3.12+),
 * the default hook there (cheaper than the profile / trace function, which
 * CPython builds on top of it and which materialises a frame per event).
 *
 * One tool id for all tracers of the process: the first free of 3, 4, 5
 * (0 debugger, 1 coverage, 2 profiler are left to the tools they are named
 * for), taken when the first tracer enters and given back when the last one
 * leaves.  Monitoring is per interpreter, so every thread runs these
 * callbacks while any tracer is active; each finds its thread's innermost
 * active Profile / Trace in a thread-local pointer (NULL on other threads:
 * they return at once).  The events are those the legacy functions see,
 * mapped as CPython's Python/legacy_tracing.c maps them:
 *   PY_START, PY_RESUME, PY_THROW          -> CALL
 *   PY_RETURN, PY_YIELD, PY_UNWIND         -> RETURN
 *   CALL (a C function), C_RETURN, C_RAISE -> C_CALL, C_RETURN, C_EXCEPTION (Profile)
 *   LINE, JUMP back within one line         -> LINE (Trace)
 *   RAISE, STOP_ITERATION                   -> EXCEPTION (Trace)
 * The line of an event is computed from (code, offset) only if a row needs it. */
#include "cpmt.h"
#include "event.h"

#if PMT_CPMT_HAVE_MONITORING

#include <string.h>

enum { K_PROF = 0, K_TRACE = 1 };

/* The innermost tracer of each kind on this thread, borrowed: the thread
 * state's dict holds it (so that a thread that ends with a tracer entered
 * releases it, and its log is closed, as the legacy function is released
 * with the thread state), and each one holds the one it displaced. */
static _Thread_local __attribute__((tls_model("initial-exec"))) CpmtTracer *tls_top[2];
static PyObject *dict_key[2];

static int tool_id = -1;
static Py_ssize_t n_active[2];      /* active monitoring tracers of each kind, all threads */
static unsigned long cur_events;
static PyObject *mon;               /* sys.monitoring */
static PyObject *missing;           /* sys.monitoring.MISSING */
static PyObject *disable;           /* sys.monitoring.DISABLE */

static inline int
kind_index(char kind)
{
    return kind == 'P' ? K_PROF : K_TRACE;
}

/* ---- the callbacks ---- */

static inline void
on_event(CpmtTracer *t, PyObject *const *args, int what, PyObject *cfunc)
{
    cpmt_event(t, (PyCodeObject *)args[0], pmt_cpmt_small_int(args[1]), CPMT_LINE_LATER, NULL,
               what, cfunc);
}

/* An event both kinds see, at an instruction offset. */
static inline PyObject *
on_both(PyObject *const *args, int what)
{
    CpmtTracer *p = tls_top[K_PROF], *t = tls_top[K_TRACE];
    if (p != NULL) {
        on_event(p, args, what, NULL);
    }
    if (t != NULL) {
        on_event(t, args, what, NULL);
    }
    Py_RETURN_NONE;
}

static PyObject *
mon_start(PyObject *Py_UNUSED(m), PyObject *const *args, Py_ssize_t Py_UNUSED(n))
{
    return on_both(args, PyTrace_CALL);
}

static PyObject *
mon_return(PyObject *Py_UNUSED(m), PyObject *const *args, Py_ssize_t Py_UNUSED(n))
{
    return on_both(args, PyTrace_RETURN);
}

/* PY_UNWIND: (code, offset, exc).  The offset can be an instruction without
 * a line (the cleanup of a generator closed at a yield); the legacy function
 * reports the frame's line, so that is taken (a rare event: an exception
 * leaving a function). */
static PyObject *
mon_unwind(PyObject *Py_UNUSED(m), PyObject *const *args, Py_ssize_t Py_UNUSED(n))
{
    CpmtTracer *p = tls_top[K_PROF], *t = tls_top[K_TRACE];
    if (p == NULL && t == NULL) {
        Py_RETURN_NONE;
    }
    PyFrameObject *frame = PyEval_GetFrame();     /* borrowed */
    int line = frame != NULL ? PyFrame_GetLineNumber(frame)
                             : PyCode_Addr2Line((PyCodeObject *)args[0], pmt_cpmt_small_int(args[1]));
    PyCodeObject *code = (PyCodeObject *)args[0];
    if (p != NULL) {
        cpmt_event(p, code, -1, line, NULL, PyTrace_RETURN, NULL);
    }
    if (t != NULL) {
        cpmt_event(t, code, -1, line, NULL, PyTrace_RETURN, NULL);
    }
    Py_RETURN_NONE;
}

/* CALL, C_RETURN, C_RAISE: (code, offset, callable, arg0).  Only C
 * functions and method descriptors with a self are events (as in the legacy
 * profiler); the tracer's own methods are not part of the traced code. */
static inline void
on_c_event(PyObject *const *args, int what)
{
    CpmtTracer *p = tls_top[K_PROF];
    if (p == NULL) {
        return;
    }
    PyObject *callable = args[2];
    if (Py_IS_TYPE(callable, &PyMethodDescr_Type)) {      /* list.append, ... */
        if (args[3] == missing || IS_TRACER(args[3])) {
            return;
        }
    }
    else if (Py_IS_TYPE(callable, &PyFunction_Type) || PyType_Check(callable)) {
        return;     /* a Python function: its PY_START is the event; a class
                       (a flag test, not PyCFunction_Check's walk of its MRO) */
    }
    else if (Py_IS_TYPE(callable, &PyCFunction_Type) || PyCFunction_Check(callable)) {
        PyObject *m_self = ((PyCFunctionObject *)callable)->m_self;
        if (m_self != NULL && IS_TRACER(m_self)) {
            return;
        }
    }
    else {
        return;
    }
    on_event(p, args, what, callable);
}

#define C_EVENT_CALLBACK(NAME, WHAT)                                                      \
    static PyObject *NAME(PyObject *Py_UNUSED(m), PyObject *const *args,                  \
                          Py_ssize_t Py_UNUSED(n))                                        \
    {                                                                                     \
        on_c_event(args, WHAT);                                                           \
        Py_RETURN_NONE;                                                                   \
    }
C_EVENT_CALLBACK(mon_call, PyTrace_C_CALL)
C_EVENT_CALLBACK(mon_c_return, PyTrace_C_RETURN)
C_EVENT_CALLBACK(mon_c_raise, PyTrace_C_EXCEPTION)

/* LINE: (code, line). */
static PyObject *
mon_line(PyObject *Py_UNUSED(m), PyObject *const *args, Py_ssize_t Py_UNUSED(n))
{
    CpmtTracer *t = tls_top[K_TRACE];
    if (t != NULL) {
        cpmt_event(t, (PyCodeObject *)args[0], -1, pmt_cpmt_small_int(args[1]), NULL,
                   PyTrace_LINE, NULL);
    }
    Py_RETURN_NONE;
}

/* JUMP: (code, from, to).  A backward jump within one line is a LINE event
 * for the legacy trace function (a loop on one line); any other jump never
 * is (a new line gets LINE) and is disabled where it is. */
static PyObject *
mon_jump(PyObject *Py_UNUSED(m), PyObject *const *args, Py_ssize_t Py_UNUSED(n))
{
    static PyObject *last_code;     /* strong: the last same-line backward */
    static int last_from = -1;      /*   jump seen */
    PyObject *code = args[0];
    int from = pmt_cpmt_small_int(args[1]);
    int to = pmt_cpmt_small_int(args[2]);
    if (to > from) {
        return Py_NewRef(disable);
    }
    if (code != last_code || from != last_from) {
        if (PyCode_Addr2Line((PyCodeObject *)code, to)
                != PyCode_Addr2Line((PyCodeObject *)code, from)) {
            return Py_NewRef(disable);
        }
        Py_XSETREF(last_code, Py_NewRef(code));
        last_from = from;
    }
    CpmtTracer *t = tls_top[K_TRACE];
    if (t != NULL) {
        cpmt_event(t, (PyCodeObject *)code, to, CPMT_LINE_LATER, NULL, PyTrace_LINE, NULL);
    }
    Py_RETURN_NONE;
}

/* RAISE (and STOP_ITERATION where the legacy tracer reports it): (code, offset, exc). */
static PyObject *
mon_raise(PyObject *Py_UNUSED(m), PyObject *const *args, Py_ssize_t Py_UNUSED(n))
{
    CpmtTracer *t = tls_top[K_TRACE];
    if (t != NULL) {
        on_event(t, args, PyTrace_EXCEPTION, NULL);
    }
    Py_RETURN_NONE;
}

static PyMethodDef mon_defs[] = {
    {"_mon_start", (PyCFunction)(void (*)(void))mon_start, METH_FASTCALL, NULL},
    {"_mon_return", (PyCFunction)(void (*)(void))mon_return, METH_FASTCALL, NULL},
    {"_mon_call", (PyCFunction)(void (*)(void))mon_call, METH_FASTCALL, NULL},
    {"_mon_c_return", (PyCFunction)(void (*)(void))mon_c_return, METH_FASTCALL, NULL},
    {"_mon_c_raise", (PyCFunction)(void (*)(void))mon_c_raise, METH_FASTCALL, NULL},
    {"_mon_line", (PyCFunction)(void (*)(void))mon_line, METH_FASTCALL, NULL},
    {"_mon_jump", (PyCFunction)(void (*)(void))mon_jump, METH_FASTCALL, NULL},
    {"_mon_raise", (PyCFunction)(void (*)(void))mon_raise, METH_FASTCALL, NULL},
    {"_mon_unwind", (PyCFunction)(void (*)(void))mon_unwind, METH_FASTCALL, NULL},
};

/* Which callback each event gets, and for which kinds of tracer it is enabled. */
#define FOR_P 1
#define FOR_T 2
static const struct {
    const char *event;
    int def;
    int kinds;
} mon_table[] = {
    {"PY_START", 0, FOR_P | FOR_T},   {"PY_RESUME", 0, FOR_P | FOR_T},
    {"PY_THROW", 0, FOR_P | FOR_T},   {"PY_RETURN", 1, FOR_P | FOR_T},
    {"PY_YIELD", 1, FOR_P | FOR_T},   {"PY_UNWIND", 8, FOR_P | FOR_T},
    {"CALL", 2, FOR_P},               {"C_RETURN", 3, 0},     /* C_*: enabled with CALL */
    {"C_RAISE", 4, 0},                {"LINE", 5, FOR_T},
    {"JUMP", 6, FOR_T},               {"RAISE", 7, FOR_T},
    {"STOP_ITERATION", 7, FOR_T},
};
#define N_EVENTS (sizeof mon_table / sizeof mon_table[0])
static unsigned long event_bit[N_EVENTS];
static PyObject *event_obj[N_EVENTS];   /* the same as ints */
static PyObject *callback[N_EVENTS];    /* the callbacks, made once */

/* sys.monitoring's functions, looked up once: a context that enters and leaves
 * calls them ~30 times, and a decorator makes a context per call. */
enum { F_GET_TOOL, F_USE_TOOL_ID, F_FREE_TOOL_ID, F_REGISTER_CALLBACK, F_SET_EVENTS, N_FUNCS };
static const char *const func_name[N_FUNCS] = {"get_tool", "use_tool_id", "free_tool_id",
                                               "register_callback", "set_events"};
static PyObject *func[N_FUNCS];

/* ---- claiming the tool id, registering, enabling ---- */

static int
load_module(void)
{
    if (mon != NULL) {
        return 0;
    }
    PyObject *sys = PyImport_ImportModule("sys");
    PyObject *m = sys ? PyObject_GetAttrString(sys, "monitoring") : NULL;
    Py_XDECREF(sys);
    if (m == NULL) {
        return -1;
    }
    PyObject *events = PyObject_GetAttrString(m, "events");
    missing = PyObject_GetAttrString(m, "MISSING");
    disable = PyObject_GetAttrString(m, "DISABLE");
    if (events == NULL || missing == NULL || disable == NULL) {
        goto fail;
    }
    for (size_t i = 0; i < N_EVENTS; i++) {
        PyObject *v = PyObject_GetAttrString(events, mon_table[i].event);
        event_bit[i] = v ? PyLong_AsUnsignedLong(v) : 0;
        event_obj[i] = v;
        if (v == NULL || PyErr_Occurred()) {
            goto fail;
        }
        callback[i] = PyCFunction_New(&mon_defs[mon_table[i].def], NULL);
        if (callback[i] == NULL) {
            goto fail;
        }
    }
    for (int i = 0; i < N_FUNCS; i++) {
        if ((func[i] = PyObject_GetAttrString(m, func_name[i])) == NULL) {
            goto fail;
        }
    }
    Py_DECREF(events);
    mon = m;
    return 0;
fail:
    Py_XDECREF(events);
    Py_CLEAR(missing);
    Py_CLEAR(disable);
    for (size_t i = 0; i < N_EVENTS; i++) {
        Py_CLEAR(event_obj[i]);
        Py_CLEAR(callback[i]);
    }
    for (int i = 0; i < N_FUNCS; i++) {
        Py_CLEAR(func[i]);
    }
    Py_DECREF(m);
    return -1;
}

/* sys.monitoring.<func[f]>(tool id, a, b): a and b borrowed, NULL to leave
 * out.  0, or -1 with an exception set. */
static int
call_mon(int f, int id, PyObject *a, PyObject *b)
{
    PyObject *args[3] = {PyLong_FromLong(id), a, b};    /* 0..5: a cached small int */
    if (args[0] == NULL) {
        return -1;
    }
    PyObject *r = PyObject_Vectorcall(func[f], args, a == NULL ? 1 : b == NULL ? 2 : 3, NULL);
    Py_DECREF(args[0]);
    if (r == NULL) {
        return -1;
    }
    Py_DECREF(r);
    return 0;
}

static int
set_events(unsigned long events)
{
    PyObject *e = PyLong_FromUnsignedLong(events);
    int rc = e == NULL ? -1 : call_mon(F_SET_EVENTS, tool_id, e, NULL);
    Py_XDECREF(e);
    return rc;
}

/* Register (or, with none, unregister) every callback. */
static int
register_callbacks(int none)
{
    for (size_t i = 0; i < N_EVENTS; i++) {
        if (call_mon(F_REGISTER_CALLBACK, tool_id, event_obj[i], none ? Py_None : callback[i]) < 0) {
            return -1;
        }
    }
    return 0;
}

static void
release_tool(void)
{
    PyObject *et, *ev, *tb;
    PyErr_Fetch(&et, &ev, &tb);
    if (set_events(0) < 0 || register_callbacks(1) < 0
            || call_mon(F_FREE_TOOL_ID, tool_id, NULL, NULL) < 0) {
        PyErr_WriteUnraisable(NULL);
    }
    PyErr_Restore(et, ev, tb);
    tool_id = -1;
    cur_events = 0;
}

static int
claim_tool(const char *tname)
{
    if (load_module() < 0) {
        return -1;
    }
    static const int candidates[] = {3, 4, 5};
    PyObject *owners[3] = {NULL, NULL, NULL};
    int id = -1;
    for (int i = 0; i < 3 && id < 0; i++) {
        PyObject *arg = PyLong_FromLong(candidates[i]);
        owners[i] = arg ? PyObject_CallOneArg(func[F_GET_TOOL], arg) : NULL;
        Py_XDECREF(arg);
        if (owners[i] == NULL) {
            goto out;
        }
        if (owners[i] == Py_None) {
            id = candidates[i];
        }
    }
    if (id < 0) {
        PyErr_Format(PyExc_RuntimeError,
                     "cPyMemTrace.%s: no sys.monitoring tool id is free (3: %R, 4: %R, 5: %R); "
                     "cPyMemTrace.set_backend('legacy') attaches as a profile/trace function "
                     "instead", tname, owners[0], owners[1], owners[2]);
        goto out;
    }
    PyObject *name = PyUnicode_FromString("pymemtrace");
    int rc = name == NULL ? -1 : call_mon(F_USE_TOOL_ID, id, name, NULL);
    Py_XDECREF(name);
    if (rc < 0) {
        goto out;
    }
    tool_id = id;
    if (register_callbacks(0) < 0) {
        release_tool();
        id = -1;
    }
out:
    for (int i = 0; i < 3; i++) {
        Py_XDECREF(owners[i]);
    }
    return tool_id >= 0 && id >= 0 ? 0 : -1;
}

static int
update_events(void)
{
    unsigned long want = 0;
    for (size_t i = 0; i < N_EVENTS; i++) {
        if (((mon_table[i].kinds & FOR_P) && n_active[K_PROF] > 0)
                || ((mon_table[i].kinds & FOR_T) && n_active[K_TRACE] > 0)) {
            want |= event_bit[i];
        }
    }
    if (want == cur_events) {
        return 0;
    }
    if (set_events(want) < 0) {
        return -1;
    }
    cur_events = want;
    return 0;
}

/* ---- what tracer.c / tracerlog.c / module.c call ---- */

CpmtTracer *
cpmt_mon_current(char kind)
{
    CpmtTracer *t = tls_top[kind_index(kind)];
    return t != NULL && t->state == ST_ACTIVE ? t : NULL;
}

int
cpmt_mon_attach(CpmtTracer *self)
{
    int k = kind_index(self->kind);
    const char *tname = self->kind == 'P' ? "Profile" : "Trace";
    if (dict_key[k] == NULL) {
        dict_key[k] = PyUnicode_InternFromString(k == K_PROF ? "pymemtrace.cPyMemTrace.Profile"
                                                             : "pymemtrace.cPyMemTrace.Trace");
        if (dict_key[k] == NULL) {
            return -1;
        }
    }
    PyObject *d = PyThreadState_GetDict();      /* borrowed */
    if (d == NULL) {
        PyErr_SetString(PyExc_RuntimeError, "cPyMemTrace: no thread state dict");
        return -1;
    }
    PyObject *cur = PyDict_GetItemWithError(d, dict_key[k]);   /* borrowed */
    if (cur == NULL && PyErr_Occurred()) {
        return -1;
    }
    if (tool_id < 0 && claim_tool(tname) < 0) {
        return -1;
    }
    Py_XINCREF(cur);    /* setting the dict below drops its reference */
    n_active[k]++;
    if (update_events() < 0 || PyDict_SetItem(d, dict_key[k], (PyObject *)self) < 0) {
        Py_XDECREF(cur);
        n_active[k]--;
        if (n_active[K_PROF] + n_active[K_TRACE] == 0) {
            release_tool();
        }
        else if (update_events() < 0) {
            PyErr_WriteUnraisable(NULL);
        }
        return -1;
    }
    self->prev_obj = cur;
    tls_top[k] = self;
    return 0;
}

/* self has ended (state DONE).  Called with its thread state, on its thread
 * the innermost tracer before it that is still active takes over again
 * (returned, borrowed, for a RESUME note); from another thread only the
 * events are updated (the owner thread keeps it, doing nothing: state DONE).
 * With ts NULL, self is being deallocated (its thread state was cleared). */
CpmtTracer *
cpmt_mon_detach(CpmtTracer *self, PyThreadState *ts)
{
    int k = kind_index(self->kind);
    CpmtTracer *resumed = NULL;
    n_active[k]--;
    if (n_active[K_PROF] + n_active[K_TRACE] == 0) {
        release_tool();
    }
    else if (update_events() < 0) {
        PyErr_WriteUnraisable(NULL);
    }
    if (tls_top[k] != self) {
        return NULL;
    }
    if (ts == NULL) {
        tls_top[k] = (CpmtTracer *)self->prev_obj;  /* going too, or the thread is */
        return NULL;
    }
    if (ts != self->tstate) {
        return NULL;
    }
    PyObject *po = self->prev_obj;
    self->prev_obj = NULL;
    while (po != NULL && ((CpmtTracer *)po)->state == ST_DONE) {
        PyObject *next = Py_XNewRef(((CpmtTracer *)po)->prev_obj);
        Py_DECREF(po);
        po = next;
    }
    PyObject *d = PyThreadState_GetDict();
    tls_top[k] = (CpmtTracer *)po;
    if (d != NULL) {
        PyObject *et, *ev, *tb;
        PyErr_Fetch(&et, &ev, &tb);
        /* Drops the dict's reference to self: the caller holds another. */
        int rc = po != NULL ? PyDict_SetItem(d, dict_key[k], po) : PyDict_DelItem(d, dict_key[k]);
        if (rc < 0) {
            PyErr_WriteUnraisable(NULL);
        }
        PyErr_Restore(et, ev, tb);
    }
    resumed = (CpmtTracer *)po;
    Py_XDECREF(po);     /* the dict holds it */
    return resumed;
}

#endif /* PMT_CPMT_HAVE_MONITORING */
