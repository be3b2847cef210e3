/* malloccap.h: the functions of the _malloccap module defined outside
 * src/ext/_malloccap.c (one file per concern). */
#ifndef PMT_MALLOCCAP_H
#define PMT_MALLOCCAP_H
#include <Python.h>

/* stacks(path, *, lo=0, hi=2**64-1, thread=None, points=0, slices=0) -> dict */
PyObject *pmt_malloccap_stacks(PyObject *self, PyObject *args, PyObject *kwargs);

/* pprof(path, *, lo=0, hi=2**64-1, thread=None, inuse_at_end=False, time_ns=0) -> bytes */
PyObject *pmt_malloccap_pprof(PyObject *self, PyObject *args, PyObject *kwargs);

#endif
