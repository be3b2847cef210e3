/* regionset.c: a sorted set of disjoint address ranges (see regionset.h). */
#include "regionset.h"

#include <stdlib.h>
#include <string.h>

#include "grow.h"

size_t
pmt_regionset_lower(const pmt_regionset *rs, uint64_t addr)
{
    size_t lo = 0, hi = rs->len;
    while (lo < hi) {
        size_t mid = (lo + hi) / 2;
        if (rs->v[mid].start < addr) {
            lo = mid + 1;
        }
        else {
            hi = mid;
        }
    }
    return lo;
}

int
pmt_regionset_release(pmt_regionset *rs, uint64_t a, uint64_t len, uint64_t *released)
{
    uint64_t with_py;
    return pmt_regionset_release_py(rs, a, len, released, &with_py);
}

int
pmt_regionset_release_py(pmt_regionset *rs, uint64_t a, uint64_t len, uint64_t *released,
                         uint64_t *released_py)
{
    uint64_t e = a + len;
    *released = 0;
    *released_py = 0;
    size_t i = pmt_regionset_lower(rs, a);
    if (i > 0 && rs->v[i - 1].start + rs->v[i - 1].len > a) {
        i--;
    }
    while (i < rs->len && rs->v[i].start < e) {
        pmt_region *g = &rs->v[i];
        uint64_t gs = g->start, ge = g->start + g->len;
        uint64_t os = gs > a ? gs : a, oe = ge < e ? ge : e;
        if (oe <= os) {
            i++;
            continue;
        }
        *released += oe - os;
        if (g->py != PMT_REGION_NO_PY) {
            *released_py += oe - os;
        }
        if (os == gs && oe == ge) {
            memmove(g, g + 1, (rs->len - i - 1) * sizeof(pmt_region));
            rs->len--;
            continue;
        }
        if (os == gs) {
            g->start = oe;
            g->len = ge - oe;
        }
        else if (oe == ge) {
            g->len = os - gs;
        }
        else {
            /* a hole in the middle: split in two */
            if (pmt_grow((void **)&rs->v, &rs->cap, rs->len + 1, sizeof(pmt_region)) < 0) {
                return -1;
            }
            g = &rs->v[i];
            memmove(g + 2, g + 1, (rs->len - i - 1) * sizeof(pmt_region));
            rs->len++;
            g[1] = g[0];
            g[0].len = os - gs;
            g[1].start = oe;
            g[1].len = ge - oe;
            i++;
        }
        i++;
    }
    return 0;
}

int
pmt_regionset_add(pmt_regionset *rs, const pmt_region *g)
{
    if (pmt_grow((void **)&rs->v, &rs->cap, rs->len + 1, sizeof(pmt_region)) < 0) {
        return -1;
    }
    size_t i = pmt_regionset_lower(rs, g->start);
    memmove(&rs->v[i + 1], &rs->v[i], (rs->len - i) * sizeof(pmt_region));
    rs->v[i] = *g;
    rs->len++;
    return 0;
}

void
pmt_regionset_free(pmt_regionset *rs)
{
    free(rs->v);
    rs->v = NULL;
    rs->len = rs->cap = 0;
}
