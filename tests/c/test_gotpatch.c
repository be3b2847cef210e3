/* test_gotpatch.c: GOT entries are redirected, found again in objects loaded
 * later, and put back; someone else's rewrite is left alone. */
#define _GNU_SOURCE
#include "ctest.h"
#include "gotpatch.h"

#include <dlfcn.h>
#include <errno.h>
#include <stdint.h>
#include <sys/mman.h>
#include <unistd.h>

static void *(*real_malloc)(size_t);
static void (*real_free)(void *);
static long mallocs, frees;

static void *counting_malloc(size_t n)
{
    __atomic_add_fetch(&mallocs, 1, __ATOMIC_RELAXED);
    return real_malloc(n);
}

static void counting_free(void *q)
{
    __atomic_add_fetch(&frees, 1, __ATOMIC_RELAXED);
    real_free(q);
}

/* One malloc and one free through this executable's own GOT, not elided. */
__attribute__((noinline)) static void alloc_once(void)
{
    char *q = malloc(100);
    __asm__ volatile("" : : "r"(q) : "memory");
    if (q != NULL) {
        q[0] = 1;
    }
    free(q);
}

static void *other_value(void *q)
{
    (void)q;
    return NULL;
}

int main(void)
{
    real_malloc = (void *(*)(size_t))dlsym(RTLD_NEXT, "malloc");
    real_free = (void (*)(void *))dlsym(RTLD_NEXT, "free");
    CHECK(real_malloc != NULL && real_free != NULL);

    pmt_got_patch p;
    errno = 0;
    CHECK_EQ_INT(pmt_got_init(&p, NULL, 0, NULL), -1);
    CHECK_EQ_INT(errno, EINVAL);
    pmt_got_hook bad[] = {{"malloc", NULL}};
    CHECK_EQ_INT(pmt_got_init(&p, bad, 1, NULL), -1);
    int on_stack = 0;
    CHECK_EQ_INT(pmt_got_init(&p, bad, 1, &on_stack), -1);   /* not in an object either */

    static const pmt_got_hook hooks[] = {
        {"malloc", (void *)counting_malloc},
        {"free", (void *)counting_free},
    };
    CHECK_EQ_INT(pmt_got_init(&p, hooks, 2, NULL), 0);

    alloc_once();
    CHECK_EQ_INT(mallocs, 0);

    long n = pmt_got_apply(&p);
    CHECK(n >= 2);                       /* this executable's malloc and free, and libc's */
    CHECK_EQ_INT((long)p.nslots, n);
    int any_relro = 0;
    for (size_t i = 0; i < p.nslots; i++) {
        any_relro |= (int)p.slots[i].relro;
    }
    CHECK(any_relro);                    /* libc is linked with full RELRO: opened and closed again */

    alloc_once();
    CHECK(mallocs >= 1 && frees >= 1);
    CHECK_EQ_INT(pmt_got_apply(&p), 0);  /* nothing new: idempotent */

    /* an object loaded later is patched by applying again */
    void *z = dlopen("libz.so.1", RTLD_NOW | RTLD_LOCAL);
    if (z != NULL) {
        long more = pmt_got_apply(&p);
        CHECK(more >= 1);
        CHECK_EQ_INT((long)p.nslots, n + more);
        n += more;
    } else {
        printf("test_gotpatch: libz.so.1 not found, the dlopen case is not checked\n");
    }

    /* someone else rewrites one entry after us: restore leaves it alone */
    pmt_got_slot *victim = NULL;
    for (size_t i = 0; i < p.nslots && victim == NULL; i++) {
        if (!p.slots[i].relro) {
            victim = &p.slots[i];
        }
    }
    void **vaddr = victim ? victim->addr : NULL;
    void *vold = victim ? victim->old : NULL;
    if (vaddr != NULL) {
        *vaddr = (void *)other_value;
    }

    long left = -1;
    long restored = pmt_got_restore(&p, &left);
    CHECK_EQ_INT(left, vaddr != NULL ? 1 : 0);
    CHECK_EQ_INT(restored + left, n);
    CHECK_EQ_INT((long)p.nslots, 0);
    if (vaddr != NULL) {
        CHECK(*vaddr == (void *)other_value);
        *vaddr = vold;                   /* put it back by hand for the rest of the test */
    }

    long before = mallocs;
    alloc_once();
    CHECK_EQ_INT(mallocs, before);       /* restored: no longer counted */
    CHECK_EQ_INT(pmt_got_restore(&p, NULL), 0);

    /* skipping the object that holds the replacements: this executable is left alone */
    CHECK_EQ_INT(pmt_got_init(&p, hooks, 2, (const void *)counting_malloc), 0);
    CHECK(pmt_got_apply(&p) >= 1);       /* libc's entries still */
    before = mallocs;
    alloc_once();
    CHECK_EQ_INT(mallocs, before);
    CHECK(pmt_got_restore(&p, NULL) >= 1);
    pmt_got_free(&p);
    if (z != NULL) {
        CHECK_EQ_INT(dlclose(z), 0);
    }
    CTEST_MAIN_END();
}
