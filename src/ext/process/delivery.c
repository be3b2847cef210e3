/* delivery.c: hand a process sampler's batches of records to the Python
 * callback (the binding's side of src/core/sampler's delivery thread).
 *
 * A batch is offered first to the main thread through Py_AddPendingCall (it
 * runs the call at its next check of the eval breaker, so a CPU-bound
 * program pays for the records' Python work and no GIL hand-over between
 * threads); if the main thread has not taken it within PMT_MAIN_GRACE (it
 * sleeps or waits in C, so the GIL is likely free), the delivery thread takes
 * the GIL and delivers it.  Either way the callback gets one list of
 * (sample_time, kind, json_text) tuples per batch. */
#define PY_SSIZE_T_CLEAN
#include <Python.h>

#include "compat.h"
#include "sampler_object.h"

/* With the GIL: the records as one list to the callback. */
static void
call_back(void *arg, const pmt_slot *recs, size_t n)
{
    SamplerObject *self = (SamplerObject *)arg;
    PyObject *list = PyList_New((Py_ssize_t)n);
    if (list == NULL) {
        goto error;
    }
    for (size_t i = 0; i < n; i++) {
        PyObject *t = Py_BuildValue("(dis#)", recs[i].created, recs[i].kind,
                                    pmt_slot_text(&recs[i]), (Py_ssize_t)recs[i].len);
        if (t == NULL) {
            Py_DECREF(list);
            goto error;
        }
        PyList_SET_ITEM(list, (Py_ssize_t)i, t);
    }
    PyObject *r = PyObject_CallOneArg(self->callback, list);
    Py_DECREF(list);
    if (r == NULL) {
        goto error;
    }
    Py_DECREF(r);
    return;
error:
    self->cb_err = 1;
    PyErr_WriteUnraisable(self->callback);
}

/* The pending call, in the main thread with the GIL. */
static int
pending_deliver(void *arg)
{
    SamplerObject *self = (SamplerObject *)arg;
    (void)pmt_sampler_deliver(&self->core, 1, call_back, self);
    if (pmt_sampler_asked_done(&self->core) == 0 && self->ref_owed) {
        /* stop() left its reference for the last pending call to drop */
        self->ref_owed = 0;
        Py_DECREF(self);
    }
    return 0;
}

/* hooks.ask_main: from the delivery thread, without the GIL. */
static int
ask_main(void *ctx)
{
    return Py_AddPendingCall(pending_deliver, ctx) == 0 ? 0 : -1;
}

/* hooks.deliver_here: on the delivery thread. */
static void
deliver_here(void *ctx)
{
    SamplerObject *self = (SamplerObject *)ctx;
    if (PMT_IS_FINALIZING()) {
        return;                 /* the batch is dropped */
    }
    PyGILState_STATE g = PyGILState_Ensure();
    (void)pmt_sampler_deliver(&self->core, 0, call_back, self);
    PyGILState_Release(g);
}

void
pmt_delivery_hooks(SamplerObject *self, pmt_sampler_config *cfg)
{
    cfg->hooks.ask_main = ask_main;
    cfg->hooks.deliver_here = deliver_here;
    cfg->hooks.ctx = self;
}

void
pmt_delivery_drain(SamplerObject *self)
{
    if (self->callback) {
        pmt_sampler_drain(&self->core, call_back, self);
    }
}
