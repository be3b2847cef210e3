/* module.c: pymemtrace._process, the binding of src/core/sampler.
 *
 * Sampler(pid, interval, *, callback=None, path=None, fd=-1, ...) samples a
 * process on C threads (see src/core/sampler.h); in logging mode the
 * records reach `callback` in batches (delivery.c), in file mode C writes
 * them as JSON lines.  add_message() queues labels for the next sample of
 * any Sampler (one process-wide src/core/labelq).  Tree (tree.c) samples each
 * process of a tree for process_tree.  This file only converts
 * arguments, releases the GIL around anything that waits, and maps errno
 * to exceptions.
 */
#define PY_SSIZE_T_CLEAN
#include <Python.h>

#include <errno.h>
#include <math.h>
#include <string.h>
#include <unistd.h>

#include "compat.h"
#include "sampler_object.h"
#include "tree.h"

#define MAX_LABELS 4096         /* labels waiting for a sample */

static pmt_labelq labels = PMT_LABELQ_INIT(MAX_LABELS);

/* Raise the exception for errno e about process pid; returns NULL. */
static PyObject *
raise_errno(int e, pid_t pid)
{
    if (e == ESRCH) {
        return PyErr_Format(PyExc_ProcessLookupError, "no process with pid %d "
                            "(or it has exited)", (int)pid);
    }
    if (e == EACCES || e == EPERM) {
        return PyErr_Format(PyExc_PermissionError, "may not read /proc/%d "
                            "(process of another user?)", (int)pid);
    }
    if (e == ENOMEM) {
        return PyErr_NoMemory();
    }
    errno = e;
    return PyErr_SetFromErrno(PyExc_OSError);
}

/* ---- the Sampler type ------------------------------------------------------- */

static int
Sampler_init(SamplerObject *self, PyObject *args, PyObject *kwds)
{
    static char *kwlist[] = {"pid", "interval", "callback", "path", "fd",
                             "append", "children", "status", "smaps",
                             "extra", "latency", "via_main", "hwm", NULL};
    int pid;
    double interval;
    PyObject *callback = Py_None;
    PyObject *path = Py_None;
    int fd = -1, append = 0, children = 0, status = 0, smaps = 0, extra = 1;
    double latency = 0.1;
    int via_main = 1, hwm = 0;
    if (self->initialised) {
        PyErr_SetString(PyExc_RuntimeError, "Sampler.__init__ called twice");
        return -1;
    }
    if (!PyArg_ParseTupleAndKeywords(args, kwds, "id|$OO&ipppppdpp", kwlist,
                                     &pid, &interval, &callback,
                                     PyUnicode_FSConverter, &path, &fd,
                                     &append, &children, &status, &smaps,
                                     &extra, &latency, &via_main, &hwm)) {
        return -1;
    }
    int rc = -1;
    if (!(interval > 0) || !isfinite(interval)) {
        PyErr_SetString(PyExc_ValueError, "interval must be a number of seconds > 0");
        goto done;
    }
    if (!(latency > 0) || !isfinite(latency)) {
        PyErr_SetString(PyExc_ValueError, "latency must be > 0");
        goto done;
    }
    int file_mode = path != Py_None || fd >= 0;
    if (file_mode == (callback != Py_None)) {
        PyErr_SetString(PyExc_TypeError, "give exactly one of callback or path/fd");
        goto done;
    }
    if (callback != Py_None && !PyCallable_Check(callback)) {
        PyErr_SetString(PyExc_TypeError, "callback must be callable");
        goto done;
    }
    pmt_sampler_config cfg;
    memset(&cfg, 0, sizeof(cfg));
    cfg.pid = pid > 0 ? pid : getpid();
    cfg.interval = interval;
    cfg.latency = latency;
    cfg.flags = (status ? PMT_PS_STATUS : 0) | (smaps ? PMT_PS_SMAPS : 0)
                | (hwm ? PMT_PS_HWM : 0);
    cfg.keys = (extra ? PMT_JSON_EXTRA : 0) | (children ? PMT_JSON_NPROCS : 0);
    cfg.children = children;
    cfg.logging = !file_mode;
    cfg.via_main = via_main;
    cfg.labels = &labels;
    if (!file_mode) {
        pmt_delivery_hooks(self, &cfg);
    }
    int init_rc, e;
    Py_BEGIN_ALLOW_THREADS
    init_rc = pmt_sampler_init(&self->core, &cfg);
    e = errno;
    Py_END_ALLOW_THREADS
    if (init_rc != 0) {
        pmt_sampler_destroy(&self->core);
        raise_errno(e, cfg.pid);
        goto done;
    }
    self->initialised = 1;
    if (path != Py_None) {
        if (pmt_sampler_open_log(&self->core, PyBytes_AS_STRING(path), append) != 0) {
            PyErr_SetFromErrnoWithFilenameObject(PyExc_OSError, path);
            goto done;
        }
    }
    else if (fd >= 0) {
        if (pmt_sampler_adopt_log(&self->core, fd) != 0) {
            PyErr_SetFromErrno(PyExc_OSError);
            goto done;
        }
    }
    else {
        Py_INCREF(callback);
        self->callback = callback;
    }
    rc = 0;
done:
    Py_XDECREF(path == Py_None ? NULL : path);
    return rc;
}

static int
check_ready(SamplerObject *self)
{
    if (!self->initialised || (self->core.lw == NULL && self->callback == NULL)) {
        PyErr_SetString(PyExc_RuntimeError, "Sampler not initialised");
        return -1;
    }
    return 0;
}

static PyObject *
Sampler_start(SamplerObject *self, PyObject *Py_UNUSED(ignored))
{
    if (check_ready(self) < 0) {
        return NULL;
    }
    if (self->core.started) {
        PyErr_SetString(PyExc_RuntimeError, "Sampler already started");
        return NULL;
    }
    int rc;
    Py_BEGIN_ALLOW_THREADS
    rc = pmt_sampler_start(&self->core);
    Py_END_ALLOW_THREADS
    if (rc != 0) {
        errno = rc;
        return PyErr_SetFromErrno(PyExc_OSError);
    }
    Py_INCREF(self);            /* the threads use self until stop() */
    Py_RETURN_NONE;
}

static PyObject *
Sampler_stop(SamplerObject *self, PyObject *Py_UNUSED(ignored))
{
    if (!self->core.started || self->stopped) {
        Py_RETURN_NONE;
    }
    if (pmt_sampler_delivering_here(&self->core)) {
        /* joining would wait for the very batch this thread is logging */
        PyErr_SetString(PyExc_RuntimeError,
                        "cannot stop a process sampler from inside the logging of its own records");
        return NULL;
    }
    self->stopped = 1;
    if (self->core.owner != getpid()) {
        /* a forked child: the threads are the parent's */
        pmt_sampler_forget_threads(&self->core);
        Py_DECREF(self);
        Py_RETURN_NONE;
    }
    Py_BEGIN_ALLOW_THREADS
    pmt_sampler_stop(&self->core);
    Py_END_ALLOW_THREADS
    /* what the deliverer did not hand over, from this thread */
    pmt_delivery_drain(self);
    if (pmt_sampler_asked_pending(&self->core) > 0) {
        self->ref_owed = 1;     /* a pending call still holds self */
    }
    else {
        Py_DECREF(self);
    }
    Py_RETURN_NONE;
}

/* sample(event=None) -> (time, json_text): one sample now, in this thread. */
static PyObject *
Sampler_sample(SamplerObject *self, PyObject *args, PyObject *kwds)
{
    static char *kwlist[] = {"event", NULL};
    const char *event = NULL;
    if (!PyArg_ParseTupleAndKeywords(args, kwds, "|z", kwlist, &event)) {
        return NULL;
    }
    if (check_ready(self) < 0) {
        return NULL;
    }
    if (self->core.started && !self->stopped) {
        PyErr_SetString(PyExc_RuntimeError, "sample() while the sampler runs");
        return NULL;
    }
    char buf[PMT_SLOT_TEXT];
    char *heap = NULL;
    size_t len = 0;
    double wall = 0;
    const char *text;
    int e;
    Py_BEGIN_ALLOW_THREADS
    text = pmt_sampler_sample_now(&self->core, event, buf, sizeof(buf), &len,
                                  &heap, &wall);
    e = errno;
    Py_END_ALLOW_THREADS
    if (text == NULL) {
        if (e == ESRCH) {
            return PyErr_Format(PyExc_ProcessLookupError, "process %d has exited",
                                (int)self->core.cfg.pid);
        }
        return raise_errno(e, self->core.cfg.pid);
    }
    PyObject *r = Py_BuildValue("(ds#)", wall, text, (Py_ssize_t)len);
    free(heap);
    return r;
}

/* stop_record(event=None, gone_key="error", gone_text="process exited",
 *             exit_code=None, peak=-1, peak_source=None)
 *   -> (time, json_text, gone): the STOP record, after stop(). */
static PyObject *
Sampler_stop_record(SamplerObject *self, PyObject *args, PyObject *kwds)
{
    static char *kwlist[] = {"event", "gone_key", "gone_text", "exit_code",
                             "peak", "peak_source", NULL};
    pmt_stopinfo info;
    memset(&info, 0, sizeof(info));
    info.gone_key = "error";
    info.gone_text = "process exited";
    info.peak = -1;
    PyObject *exit_code = Py_None;
    long long peak = -1;
    if (!PyArg_ParseTupleAndKeywords(args, kwds, "|zssOLz", kwlist, &info.event,
                                     &info.gone_key, &info.gone_text, &exit_code,
                                     &peak, &info.peak_source)) {
        return NULL;
    }
    if (exit_code != Py_None) {
        info.exit_code = (int)PyLong_AsLong(exit_code);
        if (info.exit_code == -1 && PyErr_Occurred()) {
            return NULL;
        }
        info.has_exit_code = 1;
    }
    if (peak >= 0 && info.peak_source != NULL) {
        info.peak = (int64_t)peak;
    }
    if (check_ready(self) < 0) {
        return NULL;
    }
    if (self->core.started && !self->stopped) {
        PyErr_SetString(PyExc_RuntimeError, "stop_record() while the sampler runs");
        return NULL;
    }
    char buf[PMT_SLOT_TEXT];
    char *heap = NULL;
    size_t len = 0;
    double wall = 0;
    int gone = 0, e;
    const char *text;
    Py_BEGIN_ALLOW_THREADS
    text = pmt_sampler_stop_record(&self->core, &info, buf, sizeof(buf), &len,
                                   &heap, &wall, &gone);
    e = errno;
    Py_END_ALLOW_THREADS
    if (text == NULL) {
        return raise_errno(e, self->core.cfg.pid);
    }
    PyObject *r = Py_BuildValue("(ds#O)", wall, text, (Py_ssize_t)len,
                                gone ? Py_True : Py_False);
    free(heap);
    return r;
}

/* write_line(text): file mode only, after stop(): append a line. */
static PyObject *
Sampler_write_line(SamplerObject *self, PyObject *arg)
{
    Py_ssize_t n;
    const char *s = PyUnicode_AsUTF8AndSize(arg, &n);
    if (s == NULL) {
        return NULL;
    }
    if (!self->initialised || self->core.lw == NULL
        || (self->core.started && !self->stopped)) {
        PyErr_SetString(PyExc_RuntimeError,
                        "write_line() needs a file-mode sampler that is not running");
        return NULL;
    }
    (void)pmt_sampler_write_line(&self->core, s, (size_t)n);
    Py_RETURN_NONE;
}

/* close(): stop, then (file mode) flush and close; raises the first write error. */
static PyObject *
Sampler_close(SamplerObject *self, PyObject *Py_UNUSED(ignored))
{
    if (self->core.started && !self->stopped) {
        PyObject *r = Sampler_stop(self, NULL);
        if (r == NULL) {
            return NULL;
        }
        Py_DECREF(r);
    }
    if (self->initialised && pmt_sampler_close_log(&self->core) != 0) {
        return PyErr_SetFromErrno(PyExc_OSError);
    }
    Py_RETURN_NONE;
}

/* wait(timeout) -> bool: True once sampling has ended by itself. */
static PyObject *
Sampler_wait(SamplerObject *self, PyObject *arg)
{
    double timeout = PyFloat_AsDouble(arg);
    if (timeout == -1.0 && PyErr_Occurred()) {
        return NULL;
    }
    if (!self->initialised) {
        Py_RETURN_FALSE;
    }
    int ended;
    Py_BEGIN_ALLOW_THREADS
    ended = pmt_sampler_wait(&self->core, timeout);
    Py_END_ALLOW_THREADS
    return PyBool_FromLong(ended);
}

static PyObject *
Sampler_get_stats(SamplerObject *self, PyObject *Py_UNUSED(ignored))
{
    pmt_sampler_stats st;
    memset(&st, 0, sizeof(st));
    if (self->initialised) {
        pmt_sampler_get_stats(&self->core, &st);
    }
    return Py_BuildValue("{sKsKsKsKsKsisisisisn}",
                         "samples", (unsigned long long)st.samples,
                         "batches_main", (unsigned long long)st.batches_main,
                         "batches_thread", (unsigned long long)st.batches_thread,
                         "dropped", (unsigned long long)st.dropped,
                         "missed", (unsigned long long)st.missed,
                         "errno", st.err, "ended", st.ended,
                         "callback_error", self->cb_err,
                         "pid", (int)self->core.cfg.pid,
                         "capacity", (Py_ssize_t)st.capacity);
}

static void
Sampler_dealloc(SamplerObject *self)
{
    /* started and not stopped holds a reference, so the threads are gone */
    if (self->initialised) {
        pmt_sampler_destroy(&self->core);
    }
    Py_XDECREF(self->callback);
    Py_TYPE(self)->tp_free((PyObject *)self);
}

static PyMethodDef Sampler_methods[] = {
    {"start", (PyCFunction)Sampler_start, METH_NOARGS,
     "start()\n--\n\nStart the sampler (and, in logging mode, delivery) threads."},
    {"stop", (PyCFunction)Sampler_stop, METH_NOARGS,
     "stop()\n--\n\nStop and join the threads, then hand the records still "
     "waiting to the callback from this thread."},
    {"sample", (PyCFunction)(void (*)(void))Sampler_sample, METH_VARARGS | METH_KEYWORDS,
     "sample(event=None)\n--\n\nOne sample now: (time, json_text).  Not while running."},
    {"stop_record", (PyCFunction)(void (*)(void))Sampler_stop_record, METH_VARARGS | METH_KEYWORDS,
     "stop_record(event=None, gone_key='error', gone_text='process exited', exit_code=None, "
     "peak=-1, peak_source=None)\n--\n\n"
     "After stop(): the STOP record (time, json_text, gone) with the sampled and kernel peaks."},
    {"write_line", (PyCFunction)Sampler_write_line, METH_O,
     "write_line(text)\n--\n\nFile mode, after stop(): append one line."},
    {"close", (PyCFunction)Sampler_close, METH_NOARGS,
     "close()\n--\n\nStop, then flush and close the file (file mode)."},
    {"wait", (PyCFunction)Sampler_wait, METH_O,
     "wait(timeout)\n--\n\nTrue once sampling has ended by itself (process exit, write error)."},
    {"stats", (PyCFunction)Sampler_get_stats, METH_NOARGS,
     "stats()\n--\n\nCounters: samples, dropped, missed, errno, ended, ..."},
    {NULL, NULL, 0, NULL},
};

static PyTypeObject SamplerType = {
    PyVarObject_HEAD_INIT(NULL, 0)
    .tp_name = "pymemtrace._process.Sampler",
    .tp_basicsize = sizeof(SamplerObject),
    .tp_flags = Py_TPFLAGS_DEFAULT,
    .tp_doc = "Sampler(pid, interval, *, callback=None, path=None, fd=-1, append=False,\n"
              "        children=False, status=False, smaps=False, extra=True, latency=0.1,\n"
              "        via_main=True, hwm=False)\n\n"
              "Samples process pid every interval seconds on a C thread.",
    .tp_new = PyType_GenericNew,
    .tp_init = (initproc)Sampler_init,
    .tp_dealloc = (destructor)Sampler_dealloc,
    .tp_methods = Sampler_methods,
};

/* ---- module functions ---------------------------------------------------------- */

static PyObject *
add_message(PyObject *Py_UNUSED(module), PyObject *arg)
{
    if (!PyUnicode_Check(arg)) {
        return PyErr_Format(PyExc_TypeError, "message must be str, not %.100s",
                            Py_TYPE(arg)->tp_name);
    }
    Py_ssize_t n;
    const char *s = PyUnicode_AsUTF8AndSize(arg, &n);
    if (s == NULL) {
        return NULL;
    }
    if (pmt_labelq_push(&labels, s, (size_t)n) != 0) {
        return PyErr_NoMemory();
    }
    Py_RETURN_NONE;
}

static PyObject *
clear_messages(PyObject *Py_UNUSED(module), PyObject *Py_UNUSED(ignored))
{
    pmt_labelq_clear(&labels);
    Py_RETURN_NONE;
}

static PyObject *
pending_messages(PyObject *Py_UNUSED(module), PyObject *Py_UNUSED(ignored))
{
    return PyLong_FromLong(pmt_labelq_count(&labels));
}

static PyMethodDef module_methods[] = {
    {"add_message", add_message, METH_O,
     "add_message(message)\n--\n\nQueue a label for the next sample of any Sampler."},
    {"clear_messages", clear_messages, METH_NOARGS,
     "clear_messages()\n--\n\nForget the labels not yet taken."},
    {"pending_messages", pending_messages, METH_NOARGS,
     "pending_messages()\n--\n\nHow many labels wait for a sample."},
    {NULL, NULL, 0, NULL},
};

static struct PyModuleDef module_def = {
    PyModuleDef_HEAD_INIT,
    .m_name = "pymemtrace._process",
    .m_doc = "C sampler threads for pymemtrace.process (see src/ext/process/).",
    .m_size = -1,
    .m_methods = module_methods,
};

static void
labels_prepare(void)
{
    pmt_labelq_lock(&labels);
}

static void
labels_release(void)
{
    pmt_labelq_unlock(&labels);
}

PyMODINIT_FUNC
PyInit__process(void)
{
    static int atfork_done;
    if (!atfork_done) {
        /* a fork never copies the label lock while a sampler thread holds it */
        if (pthread_atfork(labels_prepare, labels_release, labels_release) != 0) {
            PyErr_SetString(PyExc_OSError, "pthread_atfork failed");
            return NULL;
        }
        atfork_done = 1;
    }
    if (PyType_Ready(&SamplerType) < 0) {
        return NULL;
    }
    PyObject *m = PyModule_Create(&module_def);
    if (m == NULL) {
        return NULL;
    }
    Py_INCREF(&SamplerType);
    if (PyModule_AddObject(m, "Sampler", (PyObject *)&SamplerType) < 0) {
        Py_DECREF(&SamplerType);
        Py_DECREF(m);
        return NULL;
    }
    if (PyModule_AddIntConstant(m, "KIND_SAMPLE", PMT_KIND_SAMPLE) < 0
        || PyModule_AddIntConstant(m, "KIND_START", PMT_KIND_START) < 0
        || PyModule_AddIntConstant(m, "KIND_STOP", PMT_KIND_STOP) < 0
        || PyModule_AddIntConstant(m, "SLOT_TEXT", PMT_SLOT_TEXT) < 0
        || pmt_tree_type_add(m) < 0) {
        Py_DECREF(m);
        return NULL;
    }
    return m;
}
