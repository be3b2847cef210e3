/* callable.c: a Profile/Trace object is also a Python-level profile / trace
 * function, so that code which saves and restores the thread's function
 * (old = sys.gettrace(); ...; sys.settrace(old): test.support, coverage tools,
 * debuggers) keeps the tracer working.
 *
 * sys.gettrace() / sys.getprofile() return the object the C function was
 * attached with: the tracer.  sys.settrace(tracer) / sys.setprofile(tracer)
 * attach the interpreter's Python-level trampoline, which calls the tracer
 * with (frame, event, arg).  At the first such call the tracer puts its C
 * function back (from then on the thread runs at the C function's cost) and
 * records that event.  Called by anything else (a tool chaining to the
 * function it displaced), tracer(frame, event, arg) records that one event as
 * if the interpreter had reported it.  A Trace returns itself (the frame's
 * local trace function stays this tracer), a Profile None.  Before __enter__,
 * after __exit__, or on another thread than the one that entered it, a call
 * records nothing and returns None.  A tracer attached via sys.monitoring
 * (3.12+, monitor.c) is not the thread's function and sees every event
 * anyway: called, it records nothing and returns None.
 */
#include "cpmt.h"

#include <string.h>

static const struct {
    const char *name;
    int what;
} event_names[] = {
    {"call", PyTrace_CALL},         {"exception", PyTrace_EXCEPTION},
    {"line", PyTrace_LINE},         {"return", PyTrace_RETURN},
    {"c_call", PyTrace_C_CALL},     {"c_exception", PyTrace_C_EXCEPTION},
    {"c_return", PyTrace_C_RETURN}, {"opcode", PyTrace_OPCODE},
};

/* The PyTrace_* number of an event name, or -1. */
static int
event_number(PyObject *event)
{
    Py_ssize_t n;
    const char *s = PyUnicode_AsUTF8AndSize(event, &n);
    if (s == NULL) {
        PyErr_Clear();
        return -1;
    }
    for (size_t i = 0; i < sizeof event_names / sizeof event_names[0]; i++) {
        const char *name = event_names[i].name;
        if (strlen(name) == (size_t)n && memcmp(s, name, (size_t)n) == 0) {
            return event_names[i].what;
        }
    }
    return -1;
}

PyObject *
cpmt_tracer_call(PyObject *obj, PyObject *args, PyObject *kwds)
{
    CpmtTracer *self = (CpmtTracer *)obj;
    const char *tname = self->kind == 'P' ? "Profile" : "Trace";
    PyObject *frame, *event, *arg;
    if (kwds != NULL && PyDict_GET_SIZE(kwds) != 0) {
        PyErr_Format(PyExc_TypeError, "%s(frame, event, arg) takes no keyword arguments", tname);
        return NULL;
    }
    if (!PyArg_UnpackTuple(args, tname, 3, 3, &frame, &event, &arg)) {
        return NULL;
    }
    if (frame != Py_None && !PyFrame_Check(frame)) {
        PyErr_Format(PyExc_TypeError, "%s(frame, event, arg): frame must be a frame or None, "
                     "not %.100s", tname, Py_TYPE(frame)->tp_name);
        return NULL;
    }
    int what = PyUnicode_Check(event) ? event_number(event) : -1;
    if (what < 0) {
        PyErr_Format(PyExc_ValueError, "%s(frame, event, arg): event must be one of 'call', "
                     "'return', 'line', 'exception', 'c_call', 'c_return', 'c_exception', "
                     "'opcode', not %.200R", tname, event);
        return NULL;
    }
    PyThreadState *ts = PyThreadState_Get();
    if (self->state != ST_ACTIVE || ts != self->tstate || self->mon) {
        /* A tracer on sys.monitoring sees every event already: nothing to do. */
        Py_RETURN_NONE;
    }
    int prof = self->kind == 'P';
    if (PMT_CPMT_TS_OBJ(ts, prof) == obj && PMT_CPMT_TS_FUNC(ts, prof) != cpmt_callback) {
        /* sys.settrace(tracer): the trampoline holds this tracer; the C
         * function takes its place again.  If that is refused (an audit
         * hook), the trampoline keeps calling: slower, nothing lost. */
        if (cpmt_set_hook(self, cpmt_callback, obj) < 0) {
            PyErr_WriteUnraisable(obj);
        }
    }
    Py_INCREF(obj);     /* the event may run destructors */
    (void)cpmt_callback(obj, frame == Py_None ? NULL : (PyFrameObject *)frame, what, arg);
    if (self->kind == 'T') {
        return obj;
    }
    Py_DECREF(obj);
    Py_RETURN_NONE;
}
