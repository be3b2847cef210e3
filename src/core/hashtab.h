/* hashtab.h: the one hash table of src/core (open addressing, entries inline).
 *
 * After the idea of CPython's Python/hashtable.c: the table is told how to
 * hash a key and how to compare a key with an entry, and it stores each
 * entry's hash beside it, so growing never hashes again and a lookup compares
 * keys only when the hashes agree.  Unlike it, entries live inline in one
 * array (linear probing, power-of-two capacity, at most half full) and a
 * removal shifts the following entries back instead of leaving a tombstone.
 *
 * An entry is entry_size bytes the caller lays out (usually a struct that
 * holds its key); a new entry is zeroed and the caller writes its key into
 * it.  Pointers to entries stay valid until the next insert (which may grow
 * the table) or remove (which may move entries).  No Python.h.
 */
#ifndef PMT_HASHTAB_H
#define PMT_HASHTAB_H

#include <stddef.h>
#include <stdint.h>
#include <string.h>

#ifdef __cplusplus
extern "C" {
#endif

/* hash(key, ctx): any 64-bit value (the table maps 0 to 1 internally). */
typedef uint64_t (*pmt_ht_hash_fn)(const void *key, void *ctx);
/* eq(key, entry, ctx): nonzero if entry holds key. */
typedef int (*pmt_ht_eq_fn)(const void *key, const void *entry, void *ctx);

typedef struct {
    unsigned char *slots;   /* cap slots of `stride` bytes: uint64 hash (0: empty), entry */
    size_t cap, len;
    size_t entry_size, stride;
    pmt_ht_hash_fn hash;
    pmt_ht_eq_fn eq;
    void *ctx;
} pmt_hashtab;

/* Set up an empty table (no memory until the first insert). */
void pmt_ht_init(pmt_hashtab *t, size_t entry_size, pmt_ht_hash_fn hash, pmt_ht_eq_fn eq,
                 void *ctx);
void pmt_ht_free(pmt_hashtab *t);

/* The entry holding key, or NULL. */
static inline void *pmt_ht_find(const pmt_hashtab *t, const void *key);

/* The entry holding key; if there was none, a new zeroed one (*created = 1)
 * in which the caller stores the key.  NULL when out of memory. */
static inline void *pmt_ht_insert(pmt_hashtab *t, const void *key, int *created);

/* Remove an entry returned by find or insert. */
void pmt_ht_remove(pmt_hashtab *t, void *entry);

/* Iterate: start with *pos = 0; returns the next entry or NULL at the end. */
void *pmt_ht_next(const pmt_hashtab *t, size_t *pos);

/* Hashes for common keys: a 64-bit finalizer (all bits mix into the low
 * ones the table uses), and FNV-1a then the same for bytes. */
static inline uint64_t
pmt_ht_hash_u64(uint64_t x)
{
    x ^= x >> 33;
    x *= 0xff51afd7ed558ccdull;
    x ^= x >> 33;
    x *= 0xc4ceb9fe1a85ec53ull;
    x ^= x >> 33;
    return x;
}

uint64_t pmt_ht_hash_bytes(const void *p, size_t n);

/* For tables whose entries start with their key, a uint64_t or a uint32_t:
 * hash(key) and eq(key, entry) to pass to pmt_ht_init. */
uint64_t pmt_ht_u64_hash(const void *key, void *ctx);
int pmt_ht_u64_eq(const void *key, const void *entry, void *ctx);
uint64_t pmt_ht_u32_hash(const void *key, void *ctx);
int pmt_ht_u32_eq(const void *key, const void *entry, void *ctx);

/* ---- inline: lookups run once per event in the capture reader ---------- */

#define PMT_HT_MIN_CAP 16

int pmt_ht_resize_(pmt_hashtab *t, size_t ncap);

static inline uint64_t
pmt_ht_slot_hash_(const pmt_hashtab *t, size_t i)
{
    uint64_t h;
    memcpy(&h, t->slots + i * t->stride, sizeof(h));
    return h;
}

/* Index of the slot holding key, or of the empty slot where it would go. */
static inline size_t
pmt_ht_probe_(const pmt_hashtab *t, const void *key, uint64_t h, int *found)
{
    size_t mask = t->cap - 1;
    for (size_t i = h & mask;; i = (i + 1) & mask) {
        uint64_t sh = pmt_ht_slot_hash_(t, i);
        if (sh == 0) {
            *found = 0;
            return i;
        }
        if (sh == h && t->eq(key, t->slots + i * t->stride + sizeof(uint64_t), t->ctx)) {
            *found = 1;
            return i;
        }
    }
}

static inline uint64_t
pmt_ht_key_hash_(const pmt_hashtab *t, const void *key)
{
    uint64_t h = t->hash(key, t->ctx);
    return h ? h : 1;   /* 0 marks an empty slot */
}

static inline void *
pmt_ht_find(const pmt_hashtab *t, const void *key)
{
    if (t->len == 0) {
        return NULL;
    }
    int found;
    size_t i = pmt_ht_probe_(t, key, pmt_ht_key_hash_(t, key), &found);
    return found ? t->slots + i * t->stride + sizeof(uint64_t) : NULL;
}

static inline void *
pmt_ht_insert(pmt_hashtab *t, const void *key, int *created)
{
    *created = 0;
    if ((t->len + 1) * 2 > t->cap &&
        pmt_ht_resize_(t, t->cap ? t->cap * 2 : PMT_HT_MIN_CAP) < 0) {
        return NULL;
    }
    uint64_t h = pmt_ht_key_hash_(t, key);
    int found;
    size_t i = pmt_ht_probe_(t, key, h, &found);
    if (!found) {
        /* empty slots are all zero (calloc, and remove clears them) */
        memcpy(t->slots + i * t->stride, &h, sizeof(h));
        t->len++;
        *created = 1;
    }
    return t->slots + i * t->stride + sizeof(uint64_t);
}

#ifdef __cplusplus
}
#endif
#endif
