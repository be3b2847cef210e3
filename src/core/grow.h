/* grow.h: make room in a growing array (capacity doubles), the one way
 * src/core's readers grow their vectors.  Header only. */
#ifndef PMT_GROW_H
#define PMT_GROW_H

#include <stdint.h>
#include <stdlib.h>

/* Make *p (of *cap elements of elem bytes) hold at least need elements.
 * Returns 0, or -1 (nothing changed) when out of memory or too large. */
static inline int
pmt_grow(void **p, size_t *cap, size_t need, size_t elem)
{
    if (need <= *cap) {
        return 0;
    }
    size_t n = *cap ? *cap : 16;
    while (n < need) {
        if (n > SIZE_MAX / 2) {
            return -1;
        }
        n *= 2;
    }
    if (n > SIZE_MAX / elem) {
        return -1;
    }
    void *q = realloc(*p, n * elem);
    if (!q) {
        return -1;
    }
    *p = q;
    *cap = n;
    return 0;
}

#endif
