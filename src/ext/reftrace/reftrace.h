/* reftrace.h: what the two halves of the _reftrace module share: the
 * ReferenceTracing object and the functions tracer.c (the reference tracer
 * callback, the tracer stack, the log) gives module.c (the types, argument
 * parsing, the module).  CPython 3.13+ only where PMT_HAVE_REFTRACER. */
#ifndef PMT_REFTRACE_H
#define PMT_REFTRACE_H

#define PY_SSIZE_T_CLEAN
#include <Python.h>

#include "../compat.h"
#include "logwriter.h"
#include "addrtab.h"
#include "hashtab.h"
#include "rssgate.h"

enum { KIND_FULL = 0, KIND_SIMPLE = 1 };

typedef struct RefTraceObject {
    PyObject_HEAD
    int kind;
    int active;
    int finished;
    int suspended;
    int64_t count_new;
    int64_t count_del;
    int64_t unseen_del;         /* destructions found when an address was reused */
    int err;                    /* errno of the first failure, reported at __exit__ */
    /* ReferenceTracing only */
    char *message;
    PyObject *filepath;         /* bytes (fs-encoded) or NULL: default name */
    int include_builtins;
    PyObject *exclude_tp_names; /* tuple of str */
    PyObject *include_tp_names; /* tuple of str */
    int gc_collect_on_exit;
    pmt_logwriter *w;
    char path[4096];
    pmt_hashtab types;          /* rt_entry: type -> live, created, destroyed; aux: filter */
    pmt_hashtab objects;        /* rt_entry: object -> its type (aux), objects created here */
    int64_t t0;
    pmt_gate gate;
    int64_t rss, rss_logged;
    PyObject *final_counts;     /* dict kept after __exit__ */
    struct RefTraceObject *below;
} RefTraceObject;


/* One entry of the tracer's tables (src/core/addrtab.h), keyed by an address. */
typedef pmt_addr_entry rt_entry;

/* "3.13.0": the interpreter's version, for messages and default log names. */
extern char pmt_rt_py_version[32];

#if PMT_HAVE_REFTRACER
/* The methods and module functions tracer.c implements (see there). */
PyObject *RefTrace_enter(RefTraceObject *self, PyObject *unused);
PyObject *RefTrace_exit(RefTraceObject *self, PyObject *args);
PyObject *RefTrace_write_message_to_log(RefTraceObject *self, PyObject *arg);
PyObject *RefTrace_live_object_counts(RefTraceObject *self, PyObject *unused);
PyObject *RefTrace_log_file_path(RefTraceObject *self, PyObject *unused);
PyObject *RefTrace_suspend(RefTraceObject *self, PyObject *unused);
PyObject *RefTrace_resume(RefTraceObject *self, PyObject *unused);
PyObject *mod_wrapper_depth(PyObject *m, PyObject *unused);
PyObject *mod_simple_wrapper_depth(PyObject *m, PyObject *unused);
PyObject *mod_log_path(PyObject *m, PyObject *unused);
PyObject *mod_write_message_to_log(PyObject *m, PyObject *arg);
PyObject *mod_live_object_counts(PyObject *m, PyObject *unused);
PyObject *mod_flush_all(PyObject *m, PyObject *unused);
#endif

#endif /* PMT_REFTRACE_H */
