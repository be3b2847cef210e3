/* allochooks.c: thin wrappers around the interpreter's allocators that feed
 * the gate counters (src/core/rssgate.h), then call through.  Installed while
 * a Profile/Trace (not in exact mode) is active, put back if someone (such as
 * tracemalloc) took them out, removed when the last user goes. */
#include "cpmt.h"

#include <string.h>
#ifdef __GLIBC__
#include <malloc.h>
#endif

#include "rss.h"


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

/* n bytes allocated: live bytes rise; a large block is malloc's own mapping. */
static inline void
count_alloc(uint64_t n)
{
    if (n >= PMT_GATE_LARGE) {
        pmt_gate_add_large();
    }
    pmt_gate_add_bytes((int64_t)n);
}

/* The block at p is about to be freed. */
static inline void
count_free(void *p)
{
#ifdef __GLIBC__
    if (raw_free_usable) {
        size_t u = malloc_usable_size(p);
        if (u >= PMT_GATE_LARGE) {
            pmt_gate_add_large();
        }
        pmt_gate_add_bytes(-(int64_t)u);
        return;
    }
#endif
    (void)p;
    pmt_gate_add_large();   /* size unknown: make the next event read */
}

static void *
hook_raw_malloc(void *ctx, size_t n)
{
    (void)ctx;
    count_alloc(n);
    return orig_raw.malloc(orig_raw.ctx, n);
}

static void *
hook_raw_calloc(void *ctx, size_t nelem, size_t elsize)
{
    (void)ctx;
    count_alloc((uint64_t)nelem * (uint64_t)elsize);
    return orig_raw.calloc(orig_raw.ctx, nelem, elsize);
}

static void *
hook_raw_realloc(void *ctx, void *p, size_t n)
{
    (void)ctx;
    if (p != NULL) {
        count_free(p);
    }
    count_alloc(n);
    return orig_raw.realloc(orig_raw.ctx, p, n);
}

static void
hook_raw_free(void *ctx, void *p)
{
    (void)ctx;
    if (p != NULL) {
        count_free(p);
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
            count_alloc(n);                                                     \
        }                                                                       \
        return ORIG.malloc(ORIG.ctx, n);                                        \
    }                                                                           \
    static void *                                                               \
    hook_##NAME##_calloc(void *ctx, size_t nelem, size_t elsize)                \
    {                                                                           \
        (void)ctx;                                                              \
        pmt_gate_add_blocks(1);                                                 \
        if (pym_direct) {                                                       \
            count_alloc((uint64_t)nelem * (uint64_t)elsize);                    \
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
            if (p != NULL && !pym_free_unsized) {                               \
                count_free(p);                                                  \
            }                                                                   \
            count_alloc(n);                                                     \
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
                count_free(p);                                                  \
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
    (void)size;
    pmt_gate_add_large();
    return orig_arena.alloc(orig_arena.ctx, size);
}

static void
hook_arena_free(void *ctx, void *ptr, size_t size)
{
    (void)ctx;
    pmt_gate_add_large();
    orig_arena.free(orig_arena.ctx, ptr, size);
}

/* Is our raw (mem, obj) hook still somewhere in the chain?  Someone may have
 * wrapped it (tracemalloc started after us) or removed it (tracemalloc
 * stopped, restoring what it saw before).  A probe allocation tells. */
static int
raw_hook_in_chain(void)
{
    int64_t before = atomic_load(&pmt_gate_bytes);
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
    uint64_t before = atomic_load(&pmt_gate_large);
    size_t size = (size_t)pmt_page_size();
    void *p = cur.alloc(cur.ctx, size);
    int seen = atomic_load(&pmt_gate_large) != before;
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
void
cpmt_hooks_ensure(void)
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

void
cpmt_hooks_acquire(void)
{
    if (hook_users++ == 0 && !installed_raw && !installed_mem && !installed_obj
            && !installed_arena) {
        decide_free_accounting();
    }
    cpmt_hooks_ensure();
}

/* When the last user goes, take each wrapper out if it is still on top (if
 * someone wrapped it, it stays: it is cheap, and their saved copy points at it). */
void
cpmt_hooks_release(void)
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

