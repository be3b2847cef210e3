/* _malloccap.c: thin binding over src/core/capture_aggregate (the capture reader).
 *
 * read(path) -> dict: the whole aggregation runs in C with the GIL released;
 * this module only turns the finished report (totals, per-site rows, the
 * largest allocations) into Python objects.
 */
#define PY_SSIZE_T_CLEAN
#include <Python.h>

#include <dlfcn.h>

#include "capture_aggregate.h"
#include "capture_read.h"
#include "compat.h"
#include "malloccap/malloccap.h"

static const char *
kind_name(uint32_t kind)
{
    switch (kind) {
    case PMT_MC_MALLOC: return "malloc";
    case PMT_MC_CALLOC: return "calloc";
    case PMT_MC_REALLOC: return "realloc";
    case PMT_MC_MEMALIGN: return "memalign";
    case PMT_MC_MMAP: return "mmap";
    default: return "?";
    }
}

static PyObject *
str_of(const char *s)
{
    return PyUnicode_DecodeUTF8(s, (Py_ssize_t)strlen(s), "replace");
}

static PyObject *
site_tuple(const pmt_mc_site *s, int native)
{
    if (native) {
        return Py_BuildValue("(NNKKKKKKKKKK)", str_of(s->file), str_of(s->function),
                             (unsigned long long)s->offset, (unsigned long long)s->addr,
                             (unsigned long long)s->bytes, (unsigned long long)s->count,
                             (unsigned long long)s->malloc_bytes,
                             (unsigned long long)s->malloc_count,
                             (unsigned long long)s->mmap_bytes,
                             (unsigned long long)s->mmap_count,
                             (unsigned long long)s->live_bytes,
                             (unsigned long long)s->live_count);
    }
    return Py_BuildValue("(NNiKKKKKKKK)", str_of(s->file), str_of(s->function), (int)s->line,
                         (unsigned long long)s->bytes, (unsigned long long)s->count,
                         (unsigned long long)s->malloc_bytes,
                         (unsigned long long)s->malloc_count,
                         (unsigned long long)s->mmap_bytes, (unsigned long long)s->mmap_count,
                         (unsigned long long)s->live_bytes, (unsigned long long)s->live_count);
}

static int
set_u(PyObject *d, const char *k, unsigned long long v)
{
    PyObject *o = PyLong_FromUnsignedLongLong(v);
    if (!o) {
        return -1;
    }
    int r = PyDict_SetItemString(d, k, o);
    Py_DECREF(o);
    return r;
}

static PyObject *
sites_list(const pmt_mc_site *v, size_t n, int native)
{
    PyObject *l = PyList_New((Py_ssize_t)n);
    if (!l) {
        return NULL;
    }
    for (size_t i = 0; i < n; i++) {
        PyObject *t = site_tuple(&v[i], native);
        if (!t) {
            Py_DECREF(l);
            return NULL;
        }
        PyList_SET_ITEM(l, (Py_ssize_t)i, t);
    }
    return l;
}

static PyObject *
to_dict(const pmt_mc_report *r)
{
    PyObject *d = PyDict_New();
    if (!d) {
        return NULL;
    }
    static const char *status[] = {"none", "on", "mismatch"};
    struct {
        const char *k;
        unsigned long long v;
    } nums[] = {
        {"version", r->version}, {"pid", r->pid}, {"ppid", r->ppid},
        {"start_ns", r->start_ns}, {"python_hex", r->python_hex},
        {"trailing_bytes", r->trailing_bytes}, {"seq_gaps", r->seq_gaps},
        {"dropped", r->dropped}, {"unknown_frees", r->unknown_frees}, {"events", r->events},
        {"stop_events", r->stop_events}, {"stop_errno", r->stop_errno},
        {"total_bytes", r->total_bytes}, {"total_count", r->total_count},
        {"malloc_bytes", r->malloc_bytes}, {"malloc_count", r->malloc_count},
        {"mmap_bytes", r->mmap_bytes}, {"mmap_count", r->mmap_count},
        {"peak_bytes", r->peak_bytes}, {"peak_malloc_bytes", r->peak_malloc_bytes},
        {"peak_mmap_bytes", r->peak_mmap_bytes}, {"live_bytes", r->live_bytes},
        {"live_count", r->live_count}, {"live_malloc_bytes", r->live_malloc_bytes},
        {"live_mmap_bytes", r->live_mmap_bytes},
        {"checkpoint", r->ckpt_seq}, {"checkpoint_ns", r->ckpt_time_ns},
    };
    for (size_t i = 0; i < sizeof(nums) / sizeof(nums[0]); i++) {
        if (set_u(d, nums[i].k, nums[i].v) < 0) {
            goto error;
        }
    }
    PyObject *o;
    o = PyUnicode_FromString(r->python_status < 3 ? status[r->python_status] : "?");
    if (!o || PyDict_SetItemString(d, "python_status", o) < 0) {
        Py_XDECREF(o);
        goto error;
    }
    Py_DECREF(o);
    if (PyDict_SetItemString(d, "native", (r->flags & PMT_MC_FLAG_NATIVE) ? Py_True : Py_False) < 0 ||
        PyDict_SetItemString(d, "complete", r->complete ? Py_True : Py_False) < 0 ||
        PyDict_SetItemString(d, "ended_by_exec", r->ended_by_exec ? Py_True : Py_False) < 0 ||
        PyDict_SetItemString(d, "aggregate", r->aggregate ? Py_True : Py_False) < 0 ||
        PyDict_SetItemString(d, "checkpoint_final", r->ckpt_final ? Py_True : Py_False) < 0 ||
        PyDict_SetItemString(d, "checkpoint_older", r->ckpt_older ? Py_True : Py_False) < 0) {
        goto error;
    }
    o = sites_list(r->py_sites, r->n_py_sites, 0);
    if (!o || PyDict_SetItemString(d, "py_sites", o) < 0) {
        Py_XDECREF(o);
        goto error;
    }
    Py_DECREF(o);
    o = sites_list(r->native_sites, r->n_native_sites, 1);
    if (!o || PyDict_SetItemString(d, "native_sites", o) < 0) {
        Py_XDECREF(o);
        goto error;
    }
    Py_DECREF(o);
    o = PyList_New((Py_ssize_t)r->n_big);
    if (!o) {
        goto error;
    }
    for (size_t i = 0; i < r->n_big; i++) {
        const pmt_mc_big *b = &r->big[i];
        PyObject *nat;
        if (b->native_site == UINT32_MAX) {
            nat = Py_NewRef(Py_None);
        }
        else {
            nat = PyLong_FromUnsignedLong(b->native_site);
        }
        PyObject *t = nat ? Py_BuildValue("(KsOIN)", (unsigned long long)b->size,
                                          kind_name(b->kind), b->freed ? Py_True : Py_False,
                                          (unsigned int)b->py_site, nat)
                          : NULL;
        if (!t) {
            Py_DECREF(o);
            goto error;
        }
        PyList_SET_ITEM(o, (Py_ssize_t)i, t);
    }
    if (PyDict_SetItemString(d, "largest", o) < 0) {
        Py_DECREF(o);
        goto error;
    }
    Py_DECREF(o);
    return d;
error:
    Py_DECREF(d);
    return NULL;
}

static PyObject *
mc_read(PyObject *self, PyObject *arg)
{
    (void)self;
    PyObject *bytes;
    if (!PyUnicode_FSConverter(arg, &bytes)) {
        return NULL;
    }
    pmt_mc_report r;
    int rc;
    Py_BEGIN_ALLOW_THREADS
    rc = pmt_mc_read(PyBytes_AS_STRING(bytes), &r);
    Py_END_ALLOW_THREADS
    Py_DECREF(bytes);
    if (rc < 0) {
        PyErr_SetString(PyExc_ValueError, r.error);
        pmt_mc_report_free(&r);
        return NULL;
    }
    PyObject *d = to_dict(&r);
    pmt_mc_report_free(&r);
    return d;
}

/* pack(path, level): pack a capture in place (src/core/capture_pack.c). */
static PyObject *
mc_pack(PyObject *self, PyObject *args)
{
    (void)self;
    PyObject *bytes;
    int level = 6;
    if (!PyArg_ParseTuple(args, "O&|i:pack", PyUnicode_FSConverter, &bytes, &level)) {
        return NULL;
    }
    if (level < 1 || level > 9) {
        Py_DECREF(bytes);
        return PyErr_Format(PyExc_ValueError, "level must be 1 to 9, not %d", level);
    }
    char err[512];
    int rc;
    Py_BEGIN_ALLOW_THREADS
    rc = pmt_capture_pack(PyBytes_AS_STRING(bytes), level, err, sizeof(err));
    Py_END_ALLOW_THREADS
    Py_DECREF(bytes);
    if (rc < 0) {
        PyErr_SetString(PyExc_OSError, err);
        return NULL;
    }
    Py_RETURN_NONE;
}

/* control(op) -> int: pymemtrace_malloc_control() of the preload library
 * if this process runs under it (see src/preload), else -1. */
static PyObject *
mc_control(PyObject *self, PyObject *arg)
{
    (void)self;
    int op = pmt_long_as_int(arg);
    if (op == -1 && PyErr_Occurred()) {
        return NULL;
    }
    if (op < -1 || op > 1) {
        PyErr_Format(PyExc_ValueError, "op must be -1, 0 or 1, not %d", op);
        return NULL;
    }
    int (*control)(int) = (int (*)(int))dlsym(RTLD_DEFAULT, "pymemtrace_malloc_control");
    if (control == NULL) {
        return PyLong_FromLong(-1);
    }
    return PyLong_FromLong(control(op));
}

static PyMethodDef methods[] = {
    {"control", mc_control, METH_O,
     "control(op) -> int\n\nResume (1), pause (0) or query (-1) the preload tracer of this\n"
     "process.  Returns whether it was tracing, or -1 if the process is not traced."},
    {"pack", mc_pack, METH_VARARGS,
     "pack(path, level=6)\n\nPack a capture in place (zlib): the header stays, the chunks become\n"
     "one stream.  A packed capture is left alone.  Raises OSError if it cannot."},
    {"read", mc_read, METH_O,
     "read(path) -> dict\n\nRead and aggregate a `pymemtrace malloc` capture (in C).\n"
     "Raises ValueError naming what is wrong with a capture that cannot be read."},
    {"stacks", (PyCFunction)(void (*)(void))pmt_malloccap_stacks, METH_VARARGS | METH_KEYWORDS,
     "stacks(path, *, lo=0, hi=2**64-1, thread=None, points=0, slices=0, lo_ns=None,\n"
     "       hi_ns=None) -> dict\n\n"
     "Aggregate a capture by whole stack (in C): each distinct stack's bytes and count\n"
     "allocated in the events [lo, hi), live at the high-water mark and live at hi; each\n"
     "function's inclusive and self totals; `points` heap samples over all events (with\n"
     "the capture's clock and RSS); `slices` per-stack slices of the range.  thread: a\n"
     "thread id, or None for all.  lo_ns / hi_ns: the range by the capture's clock (ns\n"
     "since it opened) instead of lo / hi."},
    {"pprof", (PyCFunction)(void (*)(void))pmt_malloccap_pprof, METH_VARARGS | METH_KEYWORDS,
     "pprof(path, *, lo=0, hi=2**64-1, thread=None, inuse_at_end=False, time_ns=0) -> bytes\n\n"
     "The capture aggregated by stack as an uncompressed pprof profile.proto message\n"
     "(alloc_objects, alloc_space, inuse_objects, inuse_space; in use at the high-water\n"
     "mark, or at the end of the range with inuse_at_end)."},
    {NULL, NULL, 0, NULL},
};

static struct PyModuleDef module = {
    PyModuleDef_HEAD_INIT, "_malloccap",
    "Reader and aggregator of `pymemtrace malloc` captures (C, see src/core/capture_format.h).",
    -1, methods, NULL, NULL, NULL, NULL,
};

PyMODINIT_FUNC
PyInit__malloccap(void)
{
    PyObject *m = PyModule_Create(&module);
    if (!m) {
        return NULL;
    }
    if (PyModule_AddIntConstant(m, "RECORD_SIZE", PMT_MC_RECORD_BASE) < 0 ||
        PyModule_AddIntConstant(m, "RECORD_SIZE_NATIVE", PMT_MC_RECORD_NATIVE) < 0 ||
        PyModule_AddIntConstant(m, "FORMAT_VERSION", PMT_MC_VERSION) < 0) {
        Py_DECREF(m);
        return NULL;
    }
    return m;
}
