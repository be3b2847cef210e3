/* tracerlog.c: a Profile/Trace object's log file and its hook on the thread:
 * opening the log (a given path, or a new default-named file that never
 * overwrites one), attaching the per-event function, and finishing (detach,
 * give the thread back what was displaced, END line, close). */
#include "cpmt.h"
#include "event.h"

#include <errno.h>
#include <limits.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "rss.h"

void
cpmt_clear_refs(CpmtTracer *self)
{
    Py_CLEAR(self->prev_code);
    Py_CLEAR(self->spare_code);
    /* a key (event.h CPMT_DEF_KEY) holds no reference */
    PyObject **slots[2] = {&self->prev_cfunc, &self->spare_cfunc};
    for (int i = 0; i < 2; i++) {
        PyObject *o = *slots[i];
        *slots[i] = NULL;
        if (!CPMT_IS_DEF_KEY(o)) {
            Py_XDECREF(o);
        }
    }
    Py_CLEAR(self->nm_code);
    for (int i = 0; i < CPMT_LINE_MEMO; i++) {
        Py_CLEAR(self->lines[i].code);
    }
    Py_CLEAR(self->fmt_code);
    Py_CLEAR(self->fmt_cfunc);
    self->fmt_cname = NULL;
    self->nm_cname = NULL;
}


int
cpmt_set_hook(CpmtTracer *self, Py_tracefunc func, PyObject *obj)
{
    return pmt_cpmt_set_hook(self->kind == 'P', func, obj);
}

const char *
cpmt_path_cstr(CpmtTracer *self)
{
    return self->path_bytes ? PyBytes_AS_STRING(self->path_bytes) : "?";
}

/* Open the log: filepath, or a new default-named file in the cwd.  Sets
 * self->path / path_bytes.  Returns 0, or -1 with OSError set. */
int
cpmt_open_log(CpmtTracer *self)
{
    self->w = PyMem_RawMalloc(sizeof(pmt_logwriter));
    if (self->w == NULL) {
        PyErr_NoMemory();
        return -1;
    }
    pmt_lw_init(self->w);   /* cpmt_discard_log may close it before it is opened */
    /* Every event a row: a bigger buffer.  The writer touches all of it at
     * open, before the first event reads RSS, so the log never shows the
     * buffer's pages faulting in as RSS steps of the traced code. */
    size_t bufsize = pmt_cpmt_bufsize(self->trigger);
    if (self->filepath != NULL) {
        PyObject *b = NULL;
        if (!PyUnicode_FSConverter(self->filepath, &b)) {
            return -1;
        }
        self->path_bytes = b;
        self->path = PyUnicode_DecodeFSDefaultAndSize(PyBytes_AS_STRING(b), PyBytes_GET_SIZE(b));
        if (self->path == NULL) {
            return -1;
        }
        if (strlen(PyBytes_AS_STRING(b)) != (size_t)PyBytes_GET_SIZE(b)) {
            PyErr_SetString(PyExc_ValueError, "filepath: embedded null byte");
            return -1;
        }
        if (pmt_lw_open_size(self->w, PyBytes_AS_STRING(b), 0, bufsize) != 0) {
            PyErr_SetFromErrnoWithFilenameObject(PyExc_OSError, self->path);
            return -1;
        }
        return 0;
    }
    char cwd[PATH_MAX];
    if (getcwd(cwd, sizeof cwd) == NULL) {
        PyErr_SetFromErrno(PyExc_OSError);
        return -1;
    }
    char path[PATH_MAX + 128];
    if (pmt_cpmt_open_default(self->w, path, sizeof path, cwd, time(NULL), getpid(),
                              self->kind, self->depth, cpmt_py_version, bufsize) != 0) {
        int e = errno;
        PyObject *p = PyUnicode_DecodeFSDefault(path);
        errno = e;
        if (p == NULL) {
            return -1;
        }
        PyErr_SetFromErrnoWithFilenameObject(PyExc_OSError, p);
        Py_DECREF(p);
        return -1;
    }
    self->path_bytes = PyBytes_FromString(path);
    if (self->path_bytes == NULL) {
        return -1;
    }
    self->path = PyUnicode_DecodeFSDefault(path);
    return self->path ? 0 : -1;
}

void
cpmt_discard_log(CpmtTracer *self)
{
    if (self->w != NULL) {
        (void)pmt_lw_close(self->w);
        PyMem_RawFree(self->w);
        self->w = NULL;
    }
}

/* Take this tracer off its thread, give the thread back what it displaced,
 * write the END line and close.  Returns 0, or -1 with errno set if the log
 * could not be written completely. */
int
cpmt_finish(CpmtTracer *self, const char *why)
{
    PyThreadState *ts = PyThreadState_Get();
    self->quiet_ok = 0;
    self->every = 0;
    self->state = ST_DONE;
    pmt_gate_detach(&self->gate);
#if PMT_CPMT_HAVE_MONITORING
    if (self->mon) {
        CpmtTracer *outer = cpmt_mon_detach(self, ts);
        if (outer != NULL && outer->state == ST_ACTIVE) {
            pmt_cpmt_write_resume(outer->w, outer->seq.event, cpmt_clock_now());
        }
    }
    else
#endif
    if (ts == self->tstate) {
        Py_tracefunc pf = self->prev_func;
        PyObject *po = self->prev_obj;
        /* A displaced tracer that has ended meanwhile (exits out of order) is skipped. */
        while (pf == cpmt_callback && po != NULL && IS_TRACER(po)
               && ((CpmtTracer *)po)->state == ST_DONE) {
            pf = ((CpmtTracer *)po)->prev_func;
            po = ((CpmtTracer *)po)->prev_obj;
        }
        PyObject *cur = PMT_CPMT_TS_OBJ(ts, self->kind == 'P');
        if (cur == (PyObject *)self) {
            if (cpmt_set_hook(self, pf, po) < 0) {
                /* An audit hook refused: detach at least (state DONE: no-op). */
                PyErr_WriteUnraisable((PyObject *)self);
            }
            else if (pf == cpmt_callback && po != NULL && IS_TRACER(po)
                     && ((CpmtTracer *)po)->state == ST_ACTIVE) {
                CpmtTracer *outer = (CpmtTracer *)po;
                pmt_cpmt_write_resume(outer->w, outer->seq.event, cpmt_clock_now());
            }
        }
    }
    cpmt_registry_remove(self);
    if (!self->exact) {
        cpmt_hooks_release();
    }
    int64_t rss = pmt_rss_current();    /* one read for both the END line's numbers */
    pmt_cpmt_write_end(self->w, self->seq.event, cpmt_clock_now(), rss >= 0 ? rss : self->rss,
                       pmt_rss_peak_given(rss), why);
    int rc = pmt_lw_close(self->w);
    int e = errno;
    PyMem_RawFree(self->w);
    self->w = NULL;
    cpmt_clear_refs(self);
    errno = e;
    return rc;
}

