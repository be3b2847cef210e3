/* regionset.h: a sorted set of disjoint address ranges (live mappings).
 *
 * The capture aggregator keeps the live anonymous mappings here: munmap may
 * release any part of one (its front, its end, or a hole in the middle that
 * leaves two), so ranges are kept sorted by start and cut as they go.  Each
 * range carries the sequence number and sites of the mmap that made it.
 * No Python.h.
 */
#ifndef PMT_REGIONSET_H
#define PMT_REGIONSET_H

#include <stddef.h>
#include <stdint.h>

typedef struct {
    uint64_t start, len, seq;
    uint32_t py, nat;
} pmt_region;

typedef struct {
    pmt_region *v;          /* sorted by start, disjoint */
    size_t len, cap;
} pmt_regionset;

/* Index of the first range starting at or after addr. */
size_t pmt_regionset_lower(const pmt_regionset *rs, uint64_t addr);

/* A range's py when it has none. */
#define PMT_REGION_NO_PY UINT32_MAX

/* Remove [a, a+len) from the set; *released: the bytes that were in it.
 * Returns 0, or -1 when out of memory (splitting a range). */
int pmt_regionset_release(pmt_regionset *rs, uint64_t a, uint64_t len, uint64_t *released);

/* The same, and *released_py: those of the bytes that were in ranges whose
 * py is not PMT_REGION_NO_PY. */
int pmt_regionset_release_py(pmt_regionset *rs, uint64_t a, uint64_t len, uint64_t *released,
                             uint64_t *released_py);

/* Add a range (the caller releases what it overlaps first).  0 or -1. */
int pmt_regionset_add(pmt_regionset *rs, const pmt_region *g);

void pmt_regionset_free(pmt_regionset *rs);

#endif
