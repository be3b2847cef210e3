/* interpose.c: the allocator entry points of the malloc tracer.
 *
 * Interposes the allocator entry points glibc exports (malloc, calloc,
 * realloc, reallocarray, free, posix_memalign, aligned_alloc, memalign,
 * valloc, pvalloc) and anonymous mmap/munmap, and records one fixed-size
 * event per call in the capture format of src/core/capture_format.h.  Before the
 * real allocator is known (dlsym may allocate) calls are served from the
 * bootstrap arena (boot.c).
 */
#define _GNU_SOURCE 1     /* RTLD_NEXT, dl_iterate_phdr, execvpe, reallocarray */
#include <errno.h>
#include <string.h>
#include <sys/mman.h>

#include "preload.h"

/* ---- recording ------------------------------------------------------------- */

/* Record an allocation that has just been made (its number is taken now,
 * after the allocator handed the block out). */
static void
trace_alloc(unsigned kind, const void *p, uint64_t size, const void *ret)
{
    tbuf *tb = get_tbuf();
    if (UNLIKELY(!tb)) {
        atomic_fetch_add(&g_dropped, 1);
        return;
    }
    tb_lock(tb);
    uint32_t code = 0;
    int32_t line = -1;
    if (g_native) {
        native_stack_site(tb, &code, &line);
    }
    else if (g_py_on) {
        if (g_stacks) {
            py_stack_site(tb, &code, &line);
        }
        else {
            py_site(tb, &code, &line);
        }
    }
    if (g_aggregate) {
        tb_unlock(tb);
        agg_alloc(kind, p, size, code);
        return;
    }
    put_event(tb, next_seq(), kind, p, size, code, line, ret);
    tb_unlock(tb);
}

/* Record a release with a number taken before the memory goes back. */
static void
trace_release_seq(unsigned kind, uint64_t seq, const void *p, uint64_t len, const void *ret)
{
    if (g_aggregate) {
        agg_release(kind, p, len);
        return;
    }
    tbuf *tb = get_tbuf();
    if (UNLIKELY(!tb)) {
        atomic_fetch_add(&g_dropped, 1);
        return;
    }
    tb_lock(tb);
    put_event(tb, seq, kind, p, len, 0, -1, ret);
    tb_unlock(tb);
}

/* A release's number (none in aggregate mode: no events). */
static inline uint64_t
release_seq(void)
{
    return g_aggregate ? 0 : next_seq();
}

#define ENTER_OR(passthrough) \
    if (UNLIKELY(t_guard) || !atomic_load_explicit(&g_on, memory_order_relaxed)) { \
        passthrough; \
    } \
    t_guard++

#define LEAVE() t_guard--

/* ---- the interposed entry points ----------------------------------------- */

EXPORT void *
malloc(size_t n)
{
    if (UNLIKELY(!real.malloc)) {
        if (resolving()) {
            return boot_alloc(n, 16);
        }
        resolve_real();
    }
    ENTER_OR(return real.malloc(n));
    void *p = real.malloc(n);
    if (p) {
        trace_alloc(PMT_MC_MALLOC, p, n, __builtin_return_address(0));
    }
    LEAVE();
    return p;
}

EXPORT void *
calloc(size_t n, size_t m)
{
    if (UNLIKELY(!real.calloc)) {
        if (resolving()) {
            size_t t;
            if (__builtin_mul_overflow(n, m, &t)) {
                return NULL;
            }
            return boot_alloc(t, 16);   /* the arena is zero and never reused */
        }
        resolve_real();
    }
    ENTER_OR(return real.calloc(n, m));
    void *p = real.calloc(n, m);
    if (p) {
        trace_alloc(PMT_MC_CALLOC, p, (uint64_t)n * m, __builtin_return_address(0));
    }
    LEAVE();
    return p;
}

EXPORT void
free(void *p)
{
    if (p == NULL || UNLIKELY(in_boot(p))) {
        return;
    }
    if (UNLIKELY(!real.free)) {
        if (resolving()) {
            return;     /* cannot free yet: leak it */
        }
        resolve_real();
    }
    ENTER_OR(real.free(p); return);
    trace_release_seq(PMT_MC_FREE, release_seq(), p, 0, __builtin_return_address(0));
    real.free(p);
    LEAVE();
}

/* --aggregate: the old block is counted out before the real call. */
static void *
realloc_aggregate(void *old, size_t n, const void *ret)
{
    agg_taken t;
    int had = old ? agg_take(old, &t) : 0;
    void *p = real.realloc(old, n);
    if (had && p == NULL && n != 0) {
        agg_put_back(old, &t);      /* it failed: the old block is still there */
    }
    if (p) {
        trace_alloc(PMT_MC_REALLOC, p, n, ret);
    }
    return p;
}

static void *
realloc_common(void *old, size_t n, const void *ret)
{
    if (g_aggregate) {
        return realloc_aggregate(old, n, ret);
    }
    uint64_t seq_free = old ? next_seq() : 0;
    void *p = real.realloc(old, n);
    if (old && (p || n == 0)) {
        trace_release_seq(PMT_MC_REALLOC_FREE, seq_free, old, 0, ret);
    }
    if (p) {
        trace_alloc(PMT_MC_REALLOC, p, n, ret);
    }
    return p;
}

EXPORT void *
realloc(void *old, size_t n)
{
    if (UNLIKELY(!real.realloc || in_boot(old))) {
        if (!real.realloc) {
            if (resolving()) {
                void *p = boot_alloc(n, 16);
                if (p && old) {
                    size_t o = boot_size(old);
                    memcpy(p, old, o < n ? o : n);
                }
                return p;
            }
            resolve_real();
        }
        if (in_boot(old)) {
            void *p = malloc(n);
            if (p) {
                size_t o = boot_size(old);
                memcpy(p, old, o < n ? o : n);
            }
            return p;
        }
    }
    ENTER_OR(return real.realloc(old, n));
    void *p = realloc_common(old, n, __builtin_return_address(0));
    LEAVE();
    return p;
}

EXPORT void *
reallocarray(void *old, size_t n, size_t m)
{
    size_t t;
    if (__builtin_mul_overflow(n, m, &t)) {
        errno = ENOMEM;
        return NULL;
    }
    if (UNLIKELY(!real.realloc || in_boot(old))) {
        return realloc(old, t);
    }
    ENTER_OR(return real.reallocarray(old, n, m));
    void *p = realloc_common(old, t, __builtin_return_address(0));
    LEAVE();
    return p;
}

EXPORT int
posix_memalign(void **out, size_t align, size_t n)
{
    if (UNLIKELY(!real.posix_memalign)) {
        if (resolving()) {
            *out = boot_alloc(n, align);
            return *out ? 0 : ENOMEM;
        }
        resolve_real();
    }
    ENTER_OR(return real.posix_memalign(out, align, n));
    int r = real.posix_memalign(out, align, n);
    if (r == 0) {
        trace_alloc(PMT_MC_MEMALIGN, *out, n, __builtin_return_address(0));
    }
    LEAVE();
    return r;
}

#define ALIGNED_ENTRY(name, params, args, bootexpr, size) \
    EXPORT void * \
    name params \
    { \
        if (UNLIKELY(!real.name)) { \
            if (resolving()) { \
                return bootexpr; \
            } \
            resolve_real(); \
        } \
        ENTER_OR(return real.name args); \
        void *p = real.name args; \
        if (p) { \
            trace_alloc(PMT_MC_MEMALIGN, p, (size), __builtin_return_address(0)); \
        } \
        LEAVE(); \
        return p; \
    }

ALIGNED_ENTRY(aligned_alloc, (size_t align, size_t n), (align, n), boot_alloc(n, align), n)
ALIGNED_ENTRY(memalign, (size_t align, size_t n), (align, n), boot_alloc(n, align), n)
ALIGNED_ENTRY(valloc, (size_t n), (n), boot_alloc(n, 4096), n)
ALIGNED_ENTRY(pvalloc, (size_t n), (n), boot_alloc(n, 4096), n)

static void *
mmap_common(void *(*fn)(void *, size_t, int, int, int, off_t), void *addr, size_t len,
            int prot, int flags, int fd, off_t off, const void *ret)
{
    void *p = fn(addr, len, prot, flags, fd, off);
    if (p != MAP_FAILED && (flags & MAP_ANONYMOUS)) {
        trace_alloc(PMT_MC_MMAP, p, len, ret);
    }
    return p;
}

/* With 64-bit file offsets (meson and Python.h ask for them) <sys/mman.h> renames mmap to
 * mmap64: the two entry points are defined under explicit symbol names. */
EXPORT void *pmt_mmap(void *, size_t, int, int, int, off_t) __asm__("mmap");
EXPORT void *pmt_mmap64(void *, size_t, int, int, int, off_t) __asm__("mmap64");

#define MMAP_ENTRY(name, fn) \
    EXPORT void * \
    name(void *addr, size_t len, int prot, int flags, int fd, off_t off) \
    { \
        if (UNLIKELY(!real.fn)) { \
            resolve_real(); \
            if (!real.fn) { \
                errno = ENOMEM; \
                return MAP_FAILED; \
            } \
        } \
        ENTER_OR(return real.fn(addr, len, prot, flags, fd, off)); \
        void *p = mmap_common(real.fn, addr, len, prot, flags, fd, off, \
                              __builtin_return_address(0)); \
        LEAVE(); \
        return p; \
    }

MMAP_ENTRY(pmt_mmap, mmap)
MMAP_ENTRY(pmt_mmap64, mmap64)

EXPORT int
munmap(void *addr, size_t len)
{
    if (UNLIKELY(!real.munmap)) {
        resolve_real();
        if (!real.munmap) {
            errno = ENOSYS;
            return -1;
        }
    }
    ENTER_OR(return real.munmap(addr, len));
    trace_release_seq(PMT_MC_MUNMAP, release_seq(), addr, len, __builtin_return_address(0));
    int r = real.munmap(addr, len);
    LEAVE();
    return r;
}

/* Hidden aliases: where the in-process mode (inproc.c) sends the slots. */
HIDDEN_ALIASES_BEGIN
HIDDEN_ALIAS(pmt_h_malloc, malloc);
HIDDEN_ALIAS(pmt_h_calloc, calloc);
HIDDEN_ALIAS(pmt_h_realloc, realloc);
HIDDEN_ALIAS(pmt_h_reallocarray, reallocarray);
HIDDEN_ALIAS(pmt_h_free, free);
HIDDEN_ALIAS(pmt_h_posix_memalign, posix_memalign);
HIDDEN_ALIAS(pmt_h_aligned_alloc, aligned_alloc);
HIDDEN_ALIAS(pmt_h_memalign, memalign);
HIDDEN_ALIAS(pmt_h_valloc, valloc);
HIDDEN_ALIAS(pmt_h_pvalloc, pvalloc);
extern __typeof(pmt_mmap) pmt_h_mmap __attribute__((alias("mmap"), visibility("hidden")));
extern __typeof(pmt_mmap64) pmt_h_mmap64 __attribute__((alias("mmap64"), visibility("hidden")));
HIDDEN_ALIAS(pmt_h_munmap, munmap);
