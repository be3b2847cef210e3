/* cPyMemTrace.c: CPython bindings for the RSS profiler / tracer.
 *
 * Profile and Trace are context managers that attach a C profile function
 * (PyEval_SetProfile) or trace function (PyEval_SetTrace) to the calling
 * thread.  At every event the function decides whether RSS may have changed
 * (src/core/rssgate.h: counters fed by thin wrappers around the interpreter's
 * allocators, plus an event and a time bound), reads it only then, and writes
 * a NEXT: row (preceded by a PREV: row for the event before it) when RSS moved
 * by at least the trigger since the last row.  The text of the log is
 * src/core/cpmtlog.c; the writer is src/core/logwriter.c.  Nothing on the
 * per-event path allocates, except what the interpreter caches itself (the
 * UTF-8 form of a non-ASCII name, once).
 */
#define PY_SSIZE_T_CLEAN
#include <Python.h>
#include <frameobject.h>

#include <errno.h>
#include <limits.h>
#include <string.h>
#include <time.h>
#include <unistd.h>
#ifdef __GLIBC__
#include <malloc.h>
#endif

#include "compat.h"
#include "cpmtlog.h"
#include "logwriter.h"
#include "rss.h"
#include "rssgate.h"
#include "tickclock.h"

/* ======================================================================
 * Allocator wrappers: feed the gate counters, then call through.
 * ====================================================================== */

static PyMemAllocatorEx orig_raw, orig_mem, orig_obj;
static PyObjectArenaAllocator orig_arena;
static int installed_raw, installed_mem, installed_obj, installed_arena;
static long hook_users;
/* Freed sizes can be learned with malloc_usable_size() when the blocks the
 * raw domain hands out are malloc's own (no debug hooks below us). */
static int raw_free_usable;
/* The mem/obj domains send large blocks to the raw domain (pymalloc); if they
 * call malloc directly (PYTHONMALLOC=malloc) they are counted like raw.  With
 * mimalloc (3.13) they map their own memory: what they allocate is counted,
 * what they free cannot be sized (the event and time bounds see it). */
static int pym_direct;
static int pym_free_unsized;

static inline uint64_t
freed_size(void *p)
{
#ifdef __GLIBC__
    if (raw_free_usable) {
        return (uint64_t)malloc_usable_size(p);
    }
#endif
    (void)p;
    return PMT_GATE_LIMIT_BYTES;    /* unknown: make the next event read */
}

static void *
hook_raw_malloc(void *ctx, size_t n)
{
    (void)ctx;
    pmt_gate_add_bytes(n);
    return orig_raw.malloc(orig_raw.ctx, n);
}

static void *
hook_raw_calloc(void *ctx, size_t nelem, size_t elsize)
{
    (void)ctx;
    pmt_gate_add_bytes((uint64_t)nelem * (uint64_t)elsize);
    return orig_raw.calloc(orig_raw.ctx, nelem, elsize);
}

static void *
hook_raw_realloc(void *ctx, void *p, size_t n)
{
    (void)ctx;
    pmt_gate_add_bytes(n + (p ? freed_size(p) : 0));
    return orig_raw.realloc(orig_raw.ctx, p, n);
}

static void
hook_raw_free(void *ctx, void *p)
{
    (void)ctx;
    if (p != NULL) {
        pmt_gate_add_bytes(freed_size(p));
    }
    orig_raw.free(orig_raw.ctx, p);
}

/* mem and obj domains (the GIL is held): count live blocks. */
#define PYM_HOOKS(NAME, ORIG)                                                   \
    static void *                                                               \
    hook_##NAME##_malloc(void *ctx, size_t n)                                   \
    {                                                                           \
        (void)ctx;                                                              \
        pmt_gate_add_blocks(1);                                                 \
        if (pym_direct) {                                                       \
            pmt_gate_add_bytes(n);                                              \
        }                                                                       \
        return ORIG.malloc(ORIG.ctx, n);                                        \
    }                                                                           \
    static void *                                                               \
    hook_##NAME##_calloc(void *ctx, size_t nelem, size_t elsize)                \
    {                                                                           \
        (void)ctx;                                                              \
        pmt_gate_add_blocks(1);                                                 \
        if (pym_direct) {                                                       \
            pmt_gate_add_bytes((uint64_t)nelem * (uint64_t)elsize);             \
        }                                                                       \
        return ORIG.calloc(ORIG.ctx, nelem, elsize);                            \
    }                                                                           \
    static void *                                                               \
    hook_##NAME##_realloc(void *ctx, void *p, size_t n)                         \
    {                                                                           \
        (void)ctx;                                                              \
        if (p == NULL) {                                                        \
            pmt_gate_add_blocks(1);                                             \
        }                                                                       \
        if (pym_direct) {                                                       \
            pmt_gate_add_bytes(n + (p && !pym_free_unsized ? freed_size(p) : 0));   \
        }                                                                       \
        return ORIG.realloc(ORIG.ctx, p, n);                                    \
    }                                                                           \
    static void                                                                 \
    hook_##NAME##_free(void *ctx, void *p)                                      \
    {                                                                           \
        (void)ctx;                                                              \
        if (p != NULL) {                                                        \
            pmt_gate_add_blocks(-1);                                            \
            if (pym_direct && !pym_free_unsized) {                              \
                pmt_gate_add_bytes(freed_size(p));                              \
            }                                                                   \
        }                                                                       \
        ORIG.free(ORIG.ctx, p);                                                 \
    }

PYM_HOOKS(mem, orig_mem)
PYM_HOOKS(obj, orig_obj)

static void *
hook_arena_alloc(void *ctx, size_t size)
{
    (void)ctx;
    pmt_gate_add_bytes(size);
    return orig_arena.alloc(orig_arena.ctx, size);
}

static void
hook_arena_free(void *ctx, void *ptr, size_t size)
{
    (void)ctx;
    pmt_gate_add_bytes(size);
    orig_arena.free(orig_arena.ctx, ptr, size);
}

/* Is our raw (mem, obj) hook still somewhere in the chain?  Someone may have
 * wrapped it (tracemalloc started after us) or removed it (tracemalloc
 * stopped, restoring what it saw before).  A probe allocation tells. */
static int
raw_hook_in_chain(void)
{
    uint64_t before = atomic_load(&pmt_gate_bytes);
    void *p = PyMem_RawMalloc(1);
    int seen = atomic_load(&pmt_gate_bytes) != before;
    PyMem_RawFree(p);
    return seen;
}

static int
block_hook_in_chain(PyMemAllocatorDomain d)
{
    int64_t before = atomic_load(&pmt_gate_blocks);
    void *p = d == PYMEM_DOMAIN_MEM ? PyMem_Malloc(1) : PyObject_Malloc(1);
    int seen = atomic_load(&pmt_gate_blocks) != before;
    if (d == PYMEM_DOMAIN_MEM) {
        PyMem_Free(p);
    }
    else {
        PyObject_Free(p);
    }
    return seen;
}

static int
arena_hook_in_chain(void)
{
    PyObjectArenaAllocator cur;
    PyObject_GetArenaAllocator(&cur);
    if (cur.alloc == hook_arena_alloc) {
        return 1;
    }
    uint64_t before = atomic_load(&pmt_gate_bytes);
    size_t size = (size_t)pmt_page_size();
    void *p = cur.alloc(cur.ctx, size);
    int seen = atomic_load(&pmt_gate_bytes) != before;
    if (p != NULL) {
        cur.free(cur.ctx, p, size);
    }
    return seen;
}

static void
decide_free_accounting(void)
{
    const char *name = pmt_cpmt_allocator_name();
    /* NULL: someone hooked the allocators (tracemalloc?): look at the flags. */
    int debug;
    if (name != NULL) {
        debug = strstr(name, "debug") != NULL;
        pym_free_unsized = strncmp(name, "mimalloc", 8) == 0;
        pym_direct = strncmp(name, "malloc", 6) == 0 || pym_free_unsized;
    }
    else {
        const char *env = getenv("PYTHONMALLOC");
        debug = (env != NULL && strstr(env, "debug") != NULL);
#ifdef Py_DEBUG
        debug = 1;
#endif
        PyObject *flags = PySys_GetObject("flags");     /* borrowed */
        if (flags != NULL) {
            PyObject *dev = PyObject_GetAttrString(flags, "dev_mode");
            if (dev == NULL) {
                PyErr_Clear();
            }
            else {
                debug |= PyObject_IsTrue(dev) == 1;
                Py_DECREF(dev);
            }
        }
        pym_direct = env != NULL && strncmp(env, "malloc", 6) == 0;
    }
    raw_free_usable = !debug;
    if (name == NULL && raw_free_usable) {
        /* Hooks we cannot name.  tracemalloc's hand out malloc's own pointers;
         * anyone else's might not, so then a free is not sized (it just
         * makes the next event read RSS). */
        int tracing = 0;
        PyObject *tm = PyImport_ImportModule("_tracemalloc");
        PyObject *r = tm ? PyObject_CallMethod(tm, "is_tracing", NULL) : NULL;
        if (r != NULL) {
            tracing = PyObject_IsTrue(r) == 1;
        }
        else {
            PyErr_Clear();
        }
        Py_XDECREF(r);
        Py_XDECREF(tm);
        raw_free_usable = tracing;
    }
}

/* Make sure each wrapper is in its domain's chain: install it if it never
 * was, or if someone took it out (tracemalloc.stop() restores what it saw
 * before it started, which may predate us).  Cheap when ours is on top. */
static void
hooks_ensure(void)
{
    PyMemAllocatorEx cur;
    PyMem_GetAllocator(PYMEM_DOMAIN_RAW, &cur);
    if (cur.malloc != hook_raw_malloc && (!installed_raw || !raw_hook_in_chain())) {
        orig_raw = cur;
        /* Our ctx is the original's: a thread that reads the domain while it
         * is being replaced (raw calls need no GIL) sees a consistent pair. */
        cur = (PyMemAllocatorEx){orig_raw.ctx, hook_raw_malloc, hook_raw_calloc,
                                 hook_raw_realloc, hook_raw_free};
        PyMem_SetAllocator(PYMEM_DOMAIN_RAW, &cur);
        installed_raw = 1;
    }
    PyMem_GetAllocator(PYMEM_DOMAIN_MEM, &cur);
    if (cur.malloc != hook_mem_malloc
            && (!installed_mem || !block_hook_in_chain(PYMEM_DOMAIN_MEM))) {
        orig_mem = cur;
        cur = (PyMemAllocatorEx){orig_mem.ctx, hook_mem_malloc, hook_mem_calloc,
                                 hook_mem_realloc, hook_mem_free};
        PyMem_SetAllocator(PYMEM_DOMAIN_MEM, &cur);
        installed_mem = 1;
    }
    PyMem_GetAllocator(PYMEM_DOMAIN_OBJ, &cur);
    if (cur.malloc != hook_obj_malloc
            && (!installed_obj || !block_hook_in_chain(PYMEM_DOMAIN_OBJ))) {
        orig_obj = cur;
        cur = (PyMemAllocatorEx){orig_obj.ctx, hook_obj_malloc, hook_obj_calloc,
                                 hook_obj_realloc, hook_obj_free};
        PyMem_SetAllocator(PYMEM_DOMAIN_OBJ, &cur);
        installed_obj = 1;
    }
    PyObjectArenaAllocator a;
    PyObject_GetArenaAllocator(&a);
    if (a.alloc != hook_arena_alloc && (!installed_arena || !arena_hook_in_chain())) {
        orig_arena = a;
        a = (PyObjectArenaAllocator){orig_arena.ctx, hook_arena_alloc, hook_arena_free};
        PyObject_SetArenaAllocator(&a);
        installed_arena = 1;
    }
}

static void
hooks_acquire(void)
{
    if (hook_users++ == 0 && !installed_raw && !installed_mem && !installed_obj
            && !installed_arena) {
        decide_free_accounting();
    }
    hooks_ensure();
}

/* When the last user goes, take each wrapper out if it is still on top (if
 * someone wrapped it, it stays: it is cheap, and their saved copy points at it). */
static void
hooks_release(void)
{
    if (hook_users <= 0 || --hook_users > 0) {
        return;
    }
    PyMemAllocatorEx cur;
    PyMem_GetAllocator(PYMEM_DOMAIN_RAW, &cur);
    if (installed_raw && cur.malloc == hook_raw_malloc) {
        PyMem_SetAllocator(PYMEM_DOMAIN_RAW, &orig_raw);
        installed_raw = 0;
    }
    PyMem_GetAllocator(PYMEM_DOMAIN_MEM, &cur);
    if (installed_mem && cur.malloc == hook_mem_malloc) {
        PyMem_SetAllocator(PYMEM_DOMAIN_MEM, &orig_mem);
        installed_mem = 0;
    }
    PyMem_GetAllocator(PYMEM_DOMAIN_OBJ, &cur);
    if (installed_obj && cur.malloc == hook_obj_malloc) {
        PyMem_SetAllocator(PYMEM_DOMAIN_OBJ, &orig_obj);
        installed_obj = 0;
    }
    PyObjectArenaAllocator a;
    PyObject_GetArenaAllocator(&a);
    if (installed_arena && a.alloc == hook_arena_alloc) {
        PyObject_SetArenaAllocator(&orig_arena);
        installed_arena = 0;
    }
}

/* ======================================================================
 * Module state (single-phase init: one interpreter).
 * ====================================================================== */

static pmt_tickclock tclock;            /* event stamps (tickclock.h) */
static int64_t origin_ns;               /* the Clock column's zero */
static uint64_t anchor_every;           /* ticks between clock anchors in exact mode */
static char py_version[32];             /* "3.11.7" */
static int exact_rss;                   /* read RSS at every event */
static uint64_t gate_limit_bytes = PMT_GATE_LIMIT_BYTES;
static int64_t gate_limit_blocks = PMT_GATE_LIMIT_BLOCKS;
static uint32_t gate_limit_events = PMT_GATE_LIMIT_EVENTS;
static int64_t gate_limit_ns = PMT_GATE_LIMIT_NS;

enum { ST_NEW = 0, ST_ACTIVE = 1, ST_DONE = 2 };

typedef struct CpmtTracer {
    PyObject_HEAD
    char kind;                  /* 'P' (profile) or 'T' (trace) */
    int state;
    int depth;
    int exact;
    int failed;                 /* the writer failed: stop logging */
    int64_t trigger;
    PyObject *message;          /* str or NULL */
    PyObject *filepath;         /* str or bytes (os.fspath) or NULL */
    PyObject *path;             /* str: the log's path once opened */
    PyObject *path_bytes;       /* bytes: the same, file-system encoded */
    pmt_logwriter *w;
    PyThreadState *tstate;
    Py_tracefunc prev_func;     /* what this one displaced on its thread */
    PyObject *prev_obj;
    /* event state */
    int64_t event;              /* number of the next event */
    int64_t last_event;         /* EVENT of the last NEXT row */
    int64_t last_rss;           /* RSS of the last NEXT row */
    int64_t rss;                /* last RSS read */
    int64_t rss_reads;          /* how many times RSS was read */
    int64_t last_clock;         /* Clock of the last row: rows never go back in time */
    pmt_cpmt_fmtcache fmt;
    pmt_gate gate;
    /* the previous event, for a PREV row */
    int have_prev;
    int prev_logged;
    int prev_what;
    int prev_line;
    int64_t prev_event;
    uint64_t prev_ticks;
    int64_t prev_rss;
    PyCodeObject *prev_code;    /* strong */
    PyObject *prev_cfunc;       /* strong: the C function of a C_* event */
    PyCodeObject *fmt_code;     /* strong: the owners of the names the row */
    PyObject *fmt_cfunc;        /*   formatter's cache points at (cpmtlog.h) */
    struct CpmtTracer *reg_next;
    struct CpmtTracer *reg_prev;
} CpmtTracer;

static PyTypeObject ProfileType;
static PyTypeObject TraceType;

#define IS_TRACER(o) (Py_IS_TYPE((o), &ProfileType) || Py_IS_TYPE((o), &TraceType))

/* Active tracers of every thread, for flushing at interpreter exit. */
static CpmtTracer *registry;

static void
registry_add(CpmtTracer *t)
{
    t->reg_prev = NULL;
    t->reg_next = registry;
    if (registry) {
        registry->reg_prev = t;
    }
    registry = t;
}

static void
registry_remove(CpmtTracer *t)
{
    if (t->reg_prev) {
        t->reg_prev->reg_next = t->reg_next;
    }
    else if (registry == t) {
        registry = t->reg_next;
    }
    if (t->reg_next) {
        t->reg_next->reg_prev = t->reg_prev;
    }
    t->reg_next = t->reg_prev = NULL;
}

static inline int64_t
clock_now(void)
{
    return pmt_monotonic_ns() - origin_ns;
}

static inline int64_t
clock_of(uint64_t ticks)
{
    return pmt_tickclock_ns(&tclock, ticks) - origin_ns;
}

/* ======================================================================
 * The per-event function.
 * ====================================================================== */

static void
names_of(PyCodeObject *code, int what, PyObject *cfunc, pmt_cpmt_row *row)
{
    row->file = NULL;
    row->file_len = 0;
    row->function = NULL;
    row->function_len = 0;
    if (code != NULL) {
        Py_ssize_t n;
        const char *s = PyUnicode_AsUTF8AndSize(code->co_filename, &n);
        if (s == NULL) {
            PyErr_Clear();
        }
        else {
            row->file = s;
            row->file_len = (size_t)n;
        }
    }
    if (what == PyTrace_C_CALL || what == PyTrace_C_RETURN || what == PyTrace_C_EXCEPTION) {
        if (cfunc != NULL && PyCFunction_Check(cfunc)) {
            row->function = ((PyCFunctionObject *)cfunc)->m_ml->ml_name;
        }
        else if (cfunc != NULL) {
            row->function = Py_TYPE(cfunc)->tp_name;
        }
        if (row->function) {
            row->function_len = strlen(row->function);
        }
    }
    else if (code != NULL) {
        Py_ssize_t n;
        const char *s = PyUnicode_AsUTF8AndSize(code->co_name, &n);
        if (s == NULL) {
            PyErr_Clear();
        }
        else {
            row->function = s;
            row->function_len = (size_t)n;
        }
    }
}

/* References the callback gives up are dropped only when it is done with
 * its state: a destructor can run Python code (even one that exits this
 * tracer). */
typedef struct {
    PyObject *obj[4];
    int n;
} Drops;

static inline void
drop_later(Drops *d, PyObject *o)
{
    if (o != NULL) {
        d->obj[d->n++] = o;
    }
}

static inline void
drop_now(Drops *d)
{
    for (int i = 0; i < d->n; i++) {
        Py_DECREF(d->obj[i]);
    }
}

/* Keep alive what the formatter's name cache points into. */
static inline void
keep_names(CpmtTracer *self, PyCodeObject *code, PyObject *cfunc, Drops *d)
{
    if (code != self->fmt_code) {
        Py_XINCREF(code);
        drop_later(d, (PyObject *)self->fmt_code);
        self->fmt_code = code;
    }
    if (cfunc != NULL && cfunc != self->fmt_cfunc) {
        Py_INCREF(cfunc);
        drop_later(d, self->fmt_cfunc);
        self->fmt_cfunc = cfunc;
    }
}

/* The Clock of a row: the stamp in ns since the origin, never before the
 * previous row's (a refined TSC rate may move a conversion by a fraction of
 * a microsecond). */
static inline int64_t
row_clock(CpmtTracer *self, uint64_t ticks)
{
    int64_t c = clock_of(ticks);
    if (c < self->last_clock) {
        c = self->last_clock;
    }
    self->last_clock = c;
    return c;
}

static void
write_prev_row(CpmtTracer *self, Drops *drops)
{
    pmt_cpmt_row row;
    row.next = 0;
    row.event = self->prev_event;
    row.d_event = self->prev_event - self->last_event;
    row.clock_ns = row_clock(self, self->prev_ticks);
    row.what = self->prev_what;
    row.line = self->prev_line;
    row.rss = self->prev_rss;
    row.d_rss = self->prev_rss - self->last_rss;
    int c_event = self->prev_what == PyTrace_C_CALL || self->prev_what == PyTrace_C_RETURN
                  || self->prev_what == PyTrace_C_EXCEPTION;
    names_of(self->prev_code, self->prev_what, self->prev_cfunc, &row);
    keep_names(self, self->prev_code, c_event ? self->prev_cfunc : NULL, drops);
    pmt_cpmt_write_row(self->w, &row, &self->fmt);
}

static int
tracer_callback(PyObject *obj, PyFrameObject *frame, int what, PyObject *arg)
{
    CpmtTracer *self = (CpmtTracer *)obj;
    if (self->state != ST_ACTIVE || self->failed || what == PyTrace_OPCODE) {
        return 0;
    }
    int c_event = what == PyTrace_C_CALL || what == PyTrace_C_RETURN
                  || what == PyTrace_C_EXCEPTION;
    if (c_event && PyCFunction_Check(arg)) {
        PyObject *m_self = ((PyCFunctionObject *)arg)->m_self;
        if (m_self != NULL && IS_TRACER(m_self)) {
            return 0;   /* our own __exit__: not part of the traced code */
        }
    }
    uint64_t now = pmt_ticks(&tclock);
    int64_t rss = self->rss;
    if (self->exact || pmt_gate_due(&self->gate, now)) {
        if (!self->exact) {
            hooks_ensure();     /* someone may have taken the counters away */
            pmt_tickclock_anchor(&tclock);
        }
        else if (now - tclock.ta > anchor_every) {
            pmt_tickclock_anchor(&tclock);
        }
        int64_t v = pmt_rss_current();
        if (v >= 0) {
            rss = self->rss = v;
        }
        self->rss_reads++;
        pmt_gate_mark(&self->gate, now);
    }
    int64_t ev = self->event++;
    int64_t d = rss - self->last_rss;
    int line = frame != NULL ? PyFrame_GetLineNumber(frame) : 0;
    PyCodeObject *code = frame != NULL ? PyFrame_GetCode(frame) : NULL;
    int logged = 0;
    Drops drops = {{NULL, NULL, NULL, NULL}, 0};
    if (ev == 0 || d >= self->trigger || -d >= self->trigger) {
        if (self->have_prev && !self->prev_logged) {
            write_prev_row(self, &drops);
        }
        pmt_cpmt_row row;
        row.next = 1;
        row.event = ev;
        row.d_event = ev - self->last_event;
        row.clock_ns = row_clock(self, now);
        row.what = what;
        row.line = line;
        row.rss = rss;
        row.d_rss = d;
        names_of(code, what, c_event ? arg : NULL, &row);
        keep_names(self, code, c_event ? arg : NULL, &drops);
        pmt_cpmt_write_row(self->w, &row, &self->fmt);
        self->last_event = ev;
        self->last_rss = rss;
        logged = 1;
        if (pmt_lw_error(self->w)) {
            self->failed = 1;   /* reported at __exit__ */
        }
    }
    self->have_prev = 1;
    self->prev_logged = logged;
    self->prev_what = what;
    self->prev_line = line;
    self->prev_event = ev;
    self->prev_ticks = now;
    self->prev_rss = rss;
    PyObject *gone_cfunc = NULL, *gone_code = NULL;
    if (c_event && arg != self->prev_cfunc) {
        Py_XINCREF(arg);
        gone_cfunc = self->prev_cfunc;
        self->prev_cfunc = arg;
    }
    if (code == self->prev_code) {
        gone_code = (PyObject *)code;   /* the reference PyFrame_GetCode gave */
    }
    else {
        gone_code = (PyObject *)self->prev_code;
        self->prev_code = code;
    }
    /* Last: these may run destructors. */
    drop_now(&drops);
    Py_XDECREF(gone_cfunc);
    Py_XDECREF(gone_code);
    return 0;
}

/* ======================================================================
 * Profile / Trace objects.
 * ====================================================================== */

static PyObject *
tracer_new(PyTypeObject *type, PyObject *args, PyObject *kwds)
{
    static char *kwlist[] = {"d_rss_trigger", "message", "filepath", NULL};
    PyObject *trigger_obj = NULL, *message = Py_None, *filepath = Py_None;
    const char *tname = type == &ProfileType ? "Profile" : "Trace";
    if (!PyArg_ParseTupleAndKeywords(args, kwds, "|OOO", kwlist, &trigger_obj, &message,
                                     &filepath)) {
        return NULL;
    }
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
    self->kind = type == &ProfileType ? 'P' : 'T';
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
tracer_clear_refs(CpmtTracer *self)
{
    Py_CLEAR(self->prev_code);
    Py_CLEAR(self->prev_cfunc);
    Py_CLEAR(self->fmt_code);
    Py_CLEAR(self->fmt_cfunc);
}

static void
tracer_dealloc(CpmtTracer *self)
{
    if (self->state == ST_ACTIVE) {
        /* Abandoned while attached (its thread ended): keep what it logged. */
        registry_remove(self);
        if (!self->exact) {
            hooks_release();
        }
        self->state = ST_DONE;
    }
    if (self->w != NULL) {
        (void)pmt_lw_close(self->w);
        PyMem_RawFree(self->w);
        self->w = NULL;
    }
    tracer_clear_refs(self);
    Py_CLEAR(self->prev_obj);
    Py_CLEAR(self->message);
    Py_CLEAR(self->filepath);
    Py_CLEAR(self->path);
    Py_CLEAR(self->path_bytes);
    Py_TYPE(self)->tp_free((PyObject *)self);
}

static int
set_hook(CpmtTracer *self, Py_tracefunc func, PyObject *obj)
{
    return pmt_cpmt_set_hook(self->kind == 'P', func, obj);
}

static const char *
path_cstr(CpmtTracer *self)
{
    return self->path_bytes ? PyBytes_AS_STRING(self->path_bytes) : "?";
}

/* Open the log: filepath, or a new default-named file in the cwd.  Sets
 * self->path / path_bytes.  Returns 0, or -1 with OSError set. */
static int
open_log(CpmtTracer *self)
{
    self->w = PyMem_RawMalloc(sizeof(pmt_logwriter));
    if (self->w == NULL) {
        PyErr_NoMemory();
        return -1;
    }
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
        if (pmt_lw_open(self->w, PyBytes_AS_STRING(b), 0) != 0) {
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
                              self->kind, self->depth, py_version) != 0) {
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

static void
discard_log(CpmtTracer *self)
{
    if (self->w != NULL) {
        (void)pmt_lw_close(self->w);
        PyMem_RawFree(self->w);
        self->w = NULL;
    }
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
    Py_tracefunc pf = PMT_CPMT_TS_FUNC(ts, self->kind == 'P');
    PyObject *po = PMT_CPMT_TS_OBJ(ts, self->kind == 'P');
    CpmtTracer *outer = NULL;
    if (pf == tracer_callback && po != NULL && Py_IS_TYPE(po, Py_TYPE(self))
            && ((CpmtTracer *)po)->state == ST_ACTIVE) {
        outer = (CpmtTracer *)po;
    }
    self->depth = outer ? outer->depth + 1 : 1;
    if (open_log(self) != 0) {
        discard_log(self);
        Py_CLEAR(self->path);
        Py_CLEAR(self->path_bytes);
        return NULL;
    }
    if (self->message != NULL) {
        Py_ssize_t n;
        const char *s = PyUnicode_AsUTF8AndSize(self->message, &n);
        if (s == NULL) {
            discard_log(self);
            return NULL;
        }
        pmt_cpmt_write_start(self->w, s, (size_t)n);
    }
    else {
        pmt_cpmt_write_start(self->w, NULL, 0);
    }
    self->exact = exact_rss;
    if (!self->exact) {
        hooks_acquire();
    }
    int64_t v = pmt_rss_current();
    self->rss = v >= 0 ? v : 0;
    pmt_tickclock_anchor(&tclock);
    pmt_gate_init(&self->gate, gate_limit_bytes, gate_limit_blocks, gate_limit_events,
                  pmt_tickclock_ticks_in(&tclock, gate_limit_ns), pmt_ticks(&tclock));
    self->event = 0;
    self->rss_reads = 0;
    self->last_clock = 0;
    memset(&self->fmt, 0, sizeof self->fmt);
    self->last_event = 0;
    self->last_rss = 0;
    self->have_prev = 0;
    self->failed = 0;
    Py_XINCREF(po);     /* the set call below drops the thread's reference */
    if (outer != NULL) {
        pmt_cpmt_write_detach(outer->w, outer->event, clock_now(), self->depth, path_cstr(self));
    }
    self->state = ST_ACTIVE;
    if (set_hook(self, tracer_callback, (PyObject *)self) < 0) {
        self->state = ST_NEW;
        if (outer != NULL) {
            pmt_cpmt_write_resume(outer->w, outer->event, clock_now());
        }
        Py_XDECREF(po);
        if (!self->exact) {
            hooks_release();
        }
        discard_log(self);
        return NULL;
    }
    self->prev_func = pf;
    self->prev_obj = po;
    self->tstate = ts;
    registry_add(self);
    Py_INCREF(self);
    return (PyObject *)self;
}

/* Take this tracer off its thread, give the thread back what it displaced,
 * write the END line and close.  Returns 0, or -1 with errno set if the log
 * could not be written completely. */
static int
tracer_finish(CpmtTracer *self, const char *why)
{
    PyThreadState *ts = PyThreadState_Get();
    Py_tracefunc pf = self->prev_func;
    PyObject *po = self->prev_obj;
    /* A displaced tracer that has ended meanwhile (exits out of order) is skipped. */
    while (pf == tracer_callback && po != NULL && IS_TRACER(po)
           && ((CpmtTracer *)po)->state == ST_DONE) {
        pf = ((CpmtTracer *)po)->prev_func;
        po = ((CpmtTracer *)po)->prev_obj;
    }
    self->state = ST_DONE;
    if (ts == self->tstate) {
        PyObject *cur = PMT_CPMT_TS_OBJ(ts, self->kind == 'P');
        if (cur == (PyObject *)self) {
            if (set_hook(self, pf, po) < 0) {
                /* An audit hook refused: detach at least (state DONE: no-op). */
                PyErr_WriteUnraisable((PyObject *)self);
            }
            else if (pf == tracer_callback && po != NULL && IS_TRACER(po)
                     && ((CpmtTracer *)po)->state == ST_ACTIVE) {
                CpmtTracer *outer = (CpmtTracer *)po;
                pmt_cpmt_write_resume(outer->w, outer->event, clock_now());
            }
        }
    }
    registry_remove(self);
    if (!self->exact) {
        hooks_release();
    }
    int64_t rss = pmt_rss_current();
    pmt_cpmt_write_end(self->w, self->event, clock_now(), rss >= 0 ? rss : self->rss,
                       pmt_rss_peak(), why);
    int rc = pmt_lw_close(self->w);
    int e = errno;
    PyMem_RawFree(self->w);
    self->w = NULL;
    tracer_clear_refs(self);
    errno = e;
    return rc;
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
    if (tracer_finish(self, why) != 0) {
        PyErr_SetFromErrnoWithFilenameObject(PyExc_OSError, self->path);
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
    return PyLong_FromLongLong((long long)self->event);
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

static PyMethodDef tracer_methods[] = {
    {"__enter__", (PyCFunction)tracer_enter, METH_NOARGS,
     "Attach to the calling thread and open the log."},
    {"__exit__", (PyCFunction)tracer_exit, METH_VARARGS,
     "Detach, give the thread back what was attached before, and close the log.\n"
     "Raises OSError if the log could not be written completely."},
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
"YYYYMMDD_HHMMSS_PID_P_n_PY<version>.log is created in the current directory.");

PyDoc_STRVAR(trace_doc,
"Trace(d_rss_trigger=-1, message=None, filepath=None)\n\n"
"Context manager: as Profile, but attached as a trace function, so the log\n"
"has LINE events (every line executed) and no C_CALL/C_RETURN events.\n"
"By default a new file YYYYMMDD_HHMMSS_PID_T_n_PY<version>.log is created.");

#define TRACER_TYPE(VAR, NAME, DOC)                                                     \
    static PyTypeObject VAR = {                                                         \
        PyVarObject_HEAD_INIT(NULL, 0)                                                  \
        .tp_name = "pymemtrace.cPyMemTrace." NAME,                                      \
        .tp_basicsize = sizeof(CpmtTracer),                                             \
        .tp_dealloc = (destructor)tracer_dealloc,                                       \
        .tp_repr = (reprfunc)tracer_repr,                                               \
        .tp_flags = Py_TPFLAGS_DEFAULT,                                                 \
        .tp_doc = DOC,                                                                  \
        .tp_methods = tracer_methods,                                                   \
        .tp_getset = tracer_getset,                                                     \
        .tp_new = tracer_new,                                                           \
    };

TRACER_TYPE(ProfileType, "Profile", profile_doc)
TRACER_TYPE(TraceType, "Trace", trace_doc)

/* ======================================================================
 * Module functions.
 * ====================================================================== */

static CpmtTracer *
current(char kind)
{
    PyThreadState *ts = PyThreadState_Get();
    Py_tracefunc f = PMT_CPMT_TS_FUNC(ts, kind == 'P');
    PyObject *o = PMT_CPMT_TS_OBJ(ts, kind == 'P');
    if (f == tracer_callback && o != NULL && IS_TRACER(o)
            && ((CpmtTracer *)o)->state == ST_ACTIVE) {
        return (CpmtTracer *)o;
    }
    return NULL;
}

static PyObject *
cpmt_rss(PyObject *Py_UNUSED(module), PyObject *Py_UNUSED(args))
{
    int64_t v = pmt_rss_current();
    if (v < 0) {
        return PyErr_SetFromErrnoWithFilename(PyExc_OSError, "/proc/self/statm");
    }
    return PyLong_FromLongLong((long long)v);
}

static PyObject *
cpmt_rss_peak(PyObject *Py_UNUSED(module), PyObject *Py_UNUSED(args))
{
    int64_t v = pmt_rss_peak();
    if (v < 0) {
        return PyErr_SetFromErrno(PyExc_OSError);
    }
    return PyLong_FromLongLong((long long)v);
}

static PyObject *
depth_of(char kind)
{
    CpmtTracer *t = current(kind);
    return PyLong_FromLong(t ? t->depth : 0);
}

static PyObject *
log_path_of(char kind)
{
    CpmtTracer *t = current(kind);
    if (t == NULL || t->path == NULL) {
        Py_RETURN_NONE;
    }
    Py_INCREF(t->path);
    return t->path;
}

static PyObject *
write_message_of(char kind, PyObject *msg, const char *fname)
{
    if (!PyUnicode_Check(msg)) {
        PyErr_Format(PyExc_TypeError, "%s(): msg must be a str, not %.100s", fname,
                     Py_TYPE(msg)->tp_name);
        return NULL;
    }
    CpmtTracer *t = current(kind);
    if (t == NULL) {
        PyErr_Format(PyExc_RuntimeError, "%s(): no cPyMemTrace.%s is active on this thread",
                     fname, kind == 'P' ? "Profile" : "Trace");
        return NULL;
    }
    Py_ssize_t n;
    const char *s = PyUnicode_AsUTF8AndSize(msg, &n);
    if (s == NULL) {
        return NULL;
    }
    pmt_cpmt_write_message(t->w, s, (size_t)n);
    Py_RETURN_NONE;
}

static PyObject *
cpmt_profile_wrapper_depth(PyObject *Py_UNUSED(m), PyObject *Py_UNUSED(a))
{
    return depth_of('P');
}

static PyObject *
cpmt_trace_wrapper_depth(PyObject *Py_UNUSED(m), PyObject *Py_UNUSED(a))
{
    return depth_of('T');
}

static PyObject *
cpmt_profile_log_path(PyObject *Py_UNUSED(m), PyObject *Py_UNUSED(a))
{
    return log_path_of('P');
}

static PyObject *
cpmt_trace_log_path(PyObject *Py_UNUSED(m), PyObject *Py_UNUSED(a))
{
    return log_path_of('T');
}

static PyObject *
cpmt_profile_write_message_to_log(PyObject *Py_UNUSED(m), PyObject *msg)
{
    return write_message_of('P', msg, "profile_write_message_to_log");
}

static PyObject *
cpmt_trace_write_message_to_log(PyObject *Py_UNUSED(m), PyObject *msg)
{
    return write_message_of('T', msg, "trace_write_message_to_log");
}

static PyObject *
cpmt_set_exact_rss(PyObject *Py_UNUSED(m), PyObject *flag)
{
    int v = PyObject_IsTrue(flag);
    if (v < 0) {
        return NULL;
    }
    int old = exact_rss;
    exact_rss = v;
    return PyBool_FromLong(old);
}

static PyObject *
cpmt_get_gate_limits(PyObject *Py_UNUSED(m), PyObject *Py_UNUSED(a))
{
    return Py_BuildValue("{s:K,s:L,s:k,s:d}", "bytes", (unsigned long long)gate_limit_bytes,
                         "blocks", (long long)gate_limit_blocks, "events",
                         (unsigned long)gate_limit_events, "seconds",
                         (double)gate_limit_ns / 1e9);
}

static PyObject *
cpmt_set_gate_limits(PyObject *m, PyObject *args, PyObject *kwds)
{
    static char *kwlist[] = {"bytes", "blocks", "events", "seconds", NULL};
    long long bytes = (long long)gate_limit_bytes, blocks = gate_limit_blocks;
    long long events = gate_limit_events;
    double seconds = (double)gate_limit_ns / 1e9;
    if (!PyArg_ParseTupleAndKeywords(args, kwds, "|$LLLd:set_gate_limits", kwlist, &bytes,
                                     &blocks, &events, &seconds)) {
        return NULL;
    }
    if (bytes < 1 || blocks < 1 || events < 0 || events > UINT32_MAX || seconds < 0
            || seconds > 3600) {
        PyErr_SetString(PyExc_ValueError, "set_gate_limits(): bytes and blocks must be >= 1, "
                        "events in 0..2**32-1 (0: no bound), seconds in 0..3600 (0: no bound)");
        return NULL;
    }
    PyObject *old = cpmt_get_gate_limits(m, NULL);
    if (old == NULL) {
        return NULL;
    }
    gate_limit_bytes = (uint64_t)bytes;
    gate_limit_blocks = blocks;
    gate_limit_events = (uint32_t)events;
    gate_limit_ns = (int64_t)(seconds * 1e9);
    return old;
}

static PyObject *
cpmt_flush_all(PyObject *Py_UNUSED(m), PyObject *Py_UNUSED(a))
{
    for (CpmtTracer *t = registry; t != NULL; t = t->reg_next) {
        if (t->w != NULL) {
            (void)pmt_lw_flush(t->w);
        }
    }
    Py_RETURN_NONE;
}

/* Reference points for bench/bench_cpymemtrace.py: a profile function that
 * does nothing, and one that does exactly one RSS read (pread) per event. */
static int
floor_noop(PyObject *obj, PyFrameObject *frame, int what, PyObject *arg)
{
    (void)obj;
    (void)frame;
    (void)what;
    (void)arg;
    return 0;
}

static volatile int64_t floor_sink;

static int
floor_pread(PyObject *obj, PyFrameObject *frame, int what, PyObject *arg)
{
    (void)obj;
    (void)frame;
    (void)what;
    (void)arg;
    floor_sink = pmt_rss_current();
    return 0;
}

static PyObject *
cpmt_bench_floor(PyObject *Py_UNUSED(m), PyObject *arg)
{
    const char *mode = PyUnicode_Check(arg) ? PyUnicode_AsUTF8(arg) : NULL;
    Py_tracefunc f = NULL;
    if (mode != NULL && strcmp(mode, "noop") == 0) {
        f = floor_noop;
    }
    else if (mode != NULL && strcmp(mode, "pread") == 0) {
        f = floor_pread;
    }
    else if (arg != Py_None) {
        PyErr_SetString(PyExc_ValueError, "_bench_floor(mode): mode is 'noop', 'pread' or None");
        return NULL;
    }
    if (pmt_cpmt_set_hook(1, f, NULL) < 0) {
        return NULL;
    }
    Py_RETURN_NONE;
}

static PyObject *
cpmt_getattr(PyObject *Py_UNUSED(m), PyObject *name)
{
    if (PyUnicode_Check(name) && (PyUnicode_CompareWithASCIIString(name, "profile") == 0
                                  || PyUnicode_CompareWithASCIIString(name, "trace") == 0)) {
        PyObject *mod = PyImport_ImportModule("pymemtrace._cpmt_decorators");
        if (mod == NULL) {
            return NULL;
        }
        PyObject *r = PyObject_GetAttr(mod, name);
        Py_DECREF(mod);
        return r;
    }
    PyErr_Format(PyExc_AttributeError, "module 'pymemtrace.cPyMemTrace' has no attribute %R",
                 name);
    return NULL;
}

/* dir(cPyMemTrace) lists the decorators that __getattr__ provides. */
static PyObject *
cpmt_dir(PyObject *m, PyObject *Py_UNUSED(a))
{
    PyObject *d = PyModule_GetDict(m);     /* borrowed */
    PyObject *names = d ? PyDict_Keys(d) : NULL;
    if (names == NULL) {
        return NULL;
    }
    static const char *const extra[] = {"profile", "trace"};
    for (size_t i = 0; i < 2; i++) {
        PyObject *n = PyUnicode_FromString(extra[i]);
        if (n == NULL || PyList_Append(names, n) < 0) {
            Py_XDECREF(n);
            Py_DECREF(names);
            return NULL;
        }
        Py_DECREF(n);
    }
    if (PyList_Sort(names) < 0) {
        Py_DECREF(names);
        return NULL;
    }
    return names;
}

static PyMethodDef cpmt_methods[] = {
    {"rss", cpmt_rss, METH_NOARGS, "rss() -> int\n\nCurrent resident set size in bytes."},
    {"rss_peak", cpmt_rss_peak, METH_NOARGS,
     "rss_peak() -> int\n\nPeak resident set size in bytes."},
    {"profile_wrapper_depth", cpmt_profile_wrapper_depth, METH_NOARGS,
     "profile_wrapper_depth() -> int\n\nHow many Profile contexts are stacked on this thread "
     "(0: none)."},
    {"trace_wrapper_depth", cpmt_trace_wrapper_depth, METH_NOARGS,
     "trace_wrapper_depth() -> int\n\nHow many Trace contexts are stacked on this thread "
     "(0: none)."},
    {"profile_log_path", cpmt_profile_log_path, METH_NOARGS,
     "profile_log_path() -> str | None\n\nPath of the log of this thread's active Profile."},
    {"trace_log_path", cpmt_trace_log_path, METH_NOARGS,
     "trace_log_path() -> str | None\n\nPath of the log of this thread's active Trace."},
    {"profile_write_message_to_log", cpmt_profile_write_message_to_log, METH_O,
     "profile_write_message_to_log(msg)\n\nWrite msg (verbatim, newline added if missing) into "
     "the log of this thread's active Profile.  RuntimeError if there is none."},
    {"trace_write_message_to_log", cpmt_trace_write_message_to_log, METH_O,
     "trace_write_message_to_log(msg)\n\nWrite msg into the log of this thread's active Trace."},
    {"set_exact_rss", cpmt_set_exact_rss, METH_O,
     "set_exact_rss(flag) -> bool\n\nTrue: Profile/Trace entered from now on read RSS at every "
     "event (one pread each).\nFalse (default): read it only when the allocators moved, or\n"
     "after GATE_EVENTS events or GATE_SECONDS seconds.  Returns the previous setting."},
    {"get_gate_limits", cpmt_get_gate_limits, METH_NOARGS,
     "get_gate_limits() -> dict\n\nWhen RSS is read again in the default mode: "
     "bytes, blocks, events, seconds."},
    {"set_gate_limits", (PyCFunction)(void (*)(void))cpmt_set_gate_limits,
     METH_VARARGS | METH_KEYWORDS,
     "set_gate_limits(*, bytes, blocks, events, seconds) -> dict\n\nChange the limits for "
     "Profile/Trace entered from now on; returns the previous ones.\nevents=0 or seconds=0 "
     "switches that bound off."},
    {"_flush_all", cpmt_flush_all, METH_NOARGS, "Flush every open log (run at exit)."},
    {"_bench_floor", cpmt_bench_floor, METH_O,
     "_bench_floor(mode): attach a reference profile function to this thread: 'noop' does\n"
     "nothing, 'pread' reads RSS once per event; None detaches.  For the benchmarks."},
    {"__getattr__", cpmt_getattr, METH_O, NULL},
    {"__dir__", cpmt_dir, METH_NOARGS, NULL},
    {NULL, NULL, 0, NULL},
};

static struct PyModuleDef cpmt_module = {
    PyModuleDef_HEAD_INIT, "cPyMemTrace",
    "Log the RSS of this process at Python and C calls and returns (Profile), or at\n"
    "every line (Trace), written by C.  Decorators: profile(...) and trace(...).",
    -1, cpmt_methods, NULL, NULL, NULL, NULL,
};

PyMODINIT_FUNC
PyInit_cPyMemTrace(void)
{
    if (PyType_Ready(&ProfileType) < 0 || PyType_Ready(&TraceType) < 0) {
        return NULL;
    }
    pmt_tickclock_init(&tclock, 200000, getenv("PYMEMTRACE_NO_TSC") != NULL);
    origin_ns = tclock.ns0;
    anchor_every = pmt_tickclock_ticks_in(&tclock, 1000000);
    const char *v = Py_GetVersion();
    size_t n = strcspn(v, " ");
    if (n >= sizeof py_version) {
        n = sizeof py_version - 1;
    }
    memcpy(py_version, v, n);
    py_version[n] = '\0';
    PyObject *m = PyModule_Create(&cpmt_module);
    if (m == NULL) {
        return NULL;
    }
    Py_INCREF(&ProfileType);
    Py_INCREF(&TraceType);
    if (PyModule_AddObject(m, "Profile", (PyObject *)&ProfileType) < 0
            || PyModule_AddObject(m, "Trace", (PyObject *)&TraceType) < 0
            || PyModule_AddIntConstant(m, "GATE_BYTES", PMT_GATE_LIMIT_BYTES) < 0
            || PyModule_AddIntConstant(m, "GATE_BLOCKS", PMT_GATE_LIMIT_BLOCKS) < 0
            || PyModule_AddIntConstant(m, "GATE_EVENTS", PMT_GATE_LIMIT_EVENTS) < 0
            || PyModule_AddObject(m, "GATE_SECONDS",
                                  PyFloat_FromDouble(PMT_GATE_LIMIT_NS / 1e9)) < 0) {
        Py_DECREF(m);
        return NULL;
    }
    /* Flush whatever is still open when the interpreter exits, and before a
     * fork (so the parent's rows are on disk and the child starts with an
     * empty copy of the buffer, which it never writes anyway). */
    PyObject *atexit = PyImport_ImportModule("atexit");
    PyObject *os = PyImport_ImportModule("os");
    PyObject *flush = PyObject_GetAttrString(m, "_flush_all");
    PyObject *r = (atexit && flush) ? PyObject_CallMethod(atexit, "register", "O", flush) : NULL;
    PyObject *r2 = NULL;
    if (r != NULL && os != NULL) {
        PyObject *reg = PyObject_GetAttrString(os, "register_at_fork");
        if (reg == NULL) {
            PyErr_Clear();      /* no fork on this platform */
            r2 = Py_None;
            Py_INCREF(r2);
        }
        else {
            PyObject *kw = Py_BuildValue("{s:O}", "before", flush);
            PyObject *noargs = PyTuple_New(0);
            r2 = (kw && noargs) ? PyObject_Call(reg, noargs, kw) : NULL;
            Py_XDECREF(kw);
            Py_XDECREF(noargs);
            Py_DECREF(reg);
        }
    }
    Py_XDECREF(atexit);
    Py_XDECREF(os);
    Py_XDECREF(flush);
    if (r == NULL || r2 == NULL) {
        Py_XDECREF(r);
        Py_XDECREF(r2);
        Py_DECREF(m);
        return NULL;
    }
    Py_DECREF(r);
    Py_DECREF(r2);
    return m;
}
