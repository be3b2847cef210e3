/* hashtab.c: the one hash table of src/core (see hashtab.h). */
#include "hashtab.h"

#include <stdlib.h>
#include <string.h>

void
pmt_ht_init(pmt_hashtab *t, size_t entry_size, pmt_ht_hash_fn hash, pmt_ht_eq_fn eq, void *ctx)
{
    memset(t, 0, sizeof(*t));
    t->entry_size = entry_size;
    t->stride = sizeof(uint64_t) + (entry_size + 7) / 8 * 8;
    t->hash = hash;
    t->eq = eq;
    t->ctx = ctx;
}

void
pmt_ht_free(pmt_hashtab *t)
{
    free(t->slots);
    t->slots = NULL;
    t->cap = t->len = 0;
}

int
pmt_ht_resize_(pmt_hashtab *t, size_t ncap)
{
    if (ncap > SIZE_MAX / t->stride) {
        return -1;
    }
    unsigned char *n = calloc(ncap, t->stride);
    if (!n) {
        return -1;
    }
    for (size_t i = 0; i < t->cap; i++) {
        uint64_t h = pmt_ht_slot_hash_(t, i);
        if (!h) {
            continue;
        }
        size_t j = h & (ncap - 1);
        uint64_t used;
        while (memcpy(&used, n + j * t->stride, sizeof(used)), used != 0) {
            j = (j + 1) & (ncap - 1);
        }
        memcpy(n + j * t->stride, t->slots + i * t->stride, t->stride);
    }
    free(t->slots);
    t->slots = n;
    t->cap = ncap;
    return 0;
}

void
pmt_ht_remove(pmt_hashtab *t, void *entry)
{
    size_t mask = t->cap - 1;
    size_t i = (size_t)((unsigned char *)entry - sizeof(uint64_t) - t->slots) / t->stride;
    size_t j = i;
    t->len--;
    for (;;) {
        j = (j + 1) & mask;
        uint64_t h = pmt_ht_slot_hash_(t, j);
        if (h == 0) {
            break;
        }
        size_t home = h & mask;
        /* the entry at j stays if its home lies cyclically in (i, j] */
        if (i <= j ? (home > i && home <= j) : (home > i || home <= j)) {
            continue;
        }
        memcpy(t->slots + i * t->stride, t->slots + j * t->stride, t->stride);
        i = j;
    }
    memset(t->slots + i * t->stride, 0, t->stride);
}

void *
pmt_ht_next(const pmt_hashtab *t, size_t *pos)
{
    while (*pos < t->cap) {
        size_t i = (*pos)++;
        if (pmt_ht_slot_hash_(t, i)) {
            return t->slots + i * t->stride + sizeof(uint64_t);
        }
    }
    return NULL;
}

uint64_t
pmt_ht_hash_bytes(const void *p, size_t n)
{
    const unsigned char *s = p;
    uint64_t h = 1469598103934665603ull;    /* FNV-1a */
    for (size_t i = 0; i < n; i++) {
        h = (h ^ s[i]) * 1099511628211ull;
    }
    return pmt_ht_hash_u64(h);
}

uint64_t
pmt_ht_u64_hash(const void *key, void *ctx)
{
    (void)ctx;
    uint64_t k;
    memcpy(&k, key, sizeof(k));
    return pmt_ht_hash_u64(k);
}

int
pmt_ht_u64_eq(const void *key, const void *entry, void *ctx)
{
    (void)ctx;
    return memcmp(key, entry, sizeof(uint64_t)) == 0;
}

uint64_t
pmt_ht_u32_hash(const void *key, void *ctx)
{
    (void)ctx;
    uint32_t k;
    memcpy(&k, key, sizeof(k));
    return pmt_ht_hash_u64(k);
}

int
pmt_ht_u32_eq(const void *key, const void *entry, void *ctx)
{
    (void)ctx;
    return memcmp(key, entry, sizeof(uint32_t)) == 0;
}
