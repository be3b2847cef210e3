/* boot.c: the real allocator behind the interposed one, and the bootstrap arena.
 *
 * The real functions are found with dlsym(RTLD_NEXT) once, at load (or at
 * the first call, if that comes earlier).  dlsym may itself allocate: the
 * allocations made while it runs come from a static arena that is never
 * given back (free ignores its blocks; realloc copies out of it).
 */
#define _GNU_SOURCE 1     /* RTLD_NEXT, dl_iterate_phdr, execvpe, reallocarray */
#include <dlfcn.h>
#include <stdatomic.h>
#include <stddef.h>
#include <string.h>

#include "preload.h"

struct pmt_real real;
_Atomic int resolve_state;

_Alignas(64) unsigned char boot_arena[BOOT_SIZE];
static _Atomic size_t boot_used;

void *
boot_alloc(size_t n, size_t align)
{
    if (align < 16) {
        align = 16;
    }
    /* 16-byte header before each block holds its size (for realloc). */
    size_t old = atomic_load(&boot_used), start, end;
    do {
        start = (old + 16 + align - 1) & ~(align - 1);
        end = start + n;
        if (end > BOOT_SIZE || end < start) {
            return NULL;
        }
    } while (!atomic_compare_exchange_weak(&boot_used, &old, end));
    *(size_t *)(boot_arena + start - sizeof(size_t)) = n;
    return boot_arena + start;
}

size_t
boot_size(const void *p)
{
    return *(const size_t *)((const unsigned char *)p - sizeof(size_t));
}

void
resolve_real(void)
{
    int expected = 0;
    if (!atomic_compare_exchange_strong(&resolve_state, &expected, 1)) {
        return;     /* resolved, or being resolved (by us, re-entered) */
    }
    real.malloc = dlsym(RTLD_NEXT, "malloc");
    real.calloc = dlsym(RTLD_NEXT, "calloc");
    real.realloc = dlsym(RTLD_NEXT, "realloc");
    real.reallocarray = dlsym(RTLD_NEXT, "reallocarray");
    real.free = dlsym(RTLD_NEXT, "free");
    real.posix_memalign = dlsym(RTLD_NEXT, "posix_memalign");
    real.aligned_alloc = dlsym(RTLD_NEXT, "aligned_alloc");
    real.memalign = dlsym(RTLD_NEXT, "memalign");
    real.valloc = dlsym(RTLD_NEXT, "valloc");
    real.pvalloc = dlsym(RTLD_NEXT, "pvalloc");
    _Static_assert(sizeof(off_t) == 8, "64-bit off_t expected");
    real.mmap = dlsym(RTLD_NEXT, "mmap");
    real.mmap64 = dlsym(RTLD_NEXT, "mmap64");
    real.munmap = dlsym(RTLD_NEXT, "munmap");
    if (!real.mmap64) {
        real.mmap64 = real.mmap;
    }
    real.execve = dlsym(RTLD_NEXT, "execve");
    real.execv = dlsym(RTLD_NEXT, "execv");
    real.execvp = dlsym(RTLD_NEXT, "execvp");
    real.execvpe = dlsym(RTLD_NEXT, "execvpe");
    real.fexecve = dlsym(RTLD_NEXT, "fexecve");
    real.exit_ = dlsym(RTLD_NEXT, "_exit");
    real.Exit_ = dlsym(RTLD_NEXT, "_Exit");
    atomic_store(&resolve_state, 2);
}

/* Double an open-addressing table of the tracer's own (first size 4096),
 * from the real allocator: each used entry is copied to the slot that
 * place() finds for it in the new table. */
int
table_grow(void **table, size_t *cap, size_t esize, int (*used)(const void *entry),
           void *(*place)(void *table, size_t cap, const void *entry))
{
    size_t ocap = *cap, ncap = ocap ? ocap * 2 : 4096;
    unsigned char *old = *table;
    void *n = real.calloc(ncap, esize);
    if (!n) {
        return -1;
    }
    for (size_t i = 0; i < ocap; i++) {
        if (used(old + i * esize)) {
            memcpy(place(n, ncap, old + i * esize), old + i * esize, esize);
        }
    }
    *table = n;
    *cap = ncap;
    real.free(old);
    return 0;
}
