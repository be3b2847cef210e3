/* sampler_object.h: the pymemtrace._process.Sampler object shared by the
 * binding's two files: module.c (the type, its methods, the module) and
 * delivery.c (handing batches of records to the Python callback).  The
 * engine itself is src/core/sampler. */
#ifndef PMT_PROCESS_SAMPLER_OBJECT_H
#define PMT_PROCESS_SAMPLER_OBJECT_H

#include "sampler.h"

typedef struct {
    PyObject_HEAD
    pmt_sampler core;
    int initialised;            /* core holds a set-up sampler */
    int stopped;
    PyObject *callback;         /* logging mode */
    int cb_err;                 /* the callback raised at least once */
    int ref_owed;               /* the last pending call drops stop()'s ref */
} SamplerObject;

/* Logging mode: point cfg's hooks at self (delivery.c). */
void pmt_delivery_hooks(SamplerObject *self, pmt_sampler_config *cfg);
/* With the GIL, after the threads are joined: hand the records still in
 * the ring to the callback. */
void pmt_delivery_drain(SamplerObject *self);

#endif
