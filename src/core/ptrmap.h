/* ptrmap.h: an open-addressing hash table from pointers to small counters.
 *
 * Keys are non-zero pointer-sized integers (object or type addresses); each
 * entry carries one pointer-sized aux value and three int64 counters for the
 * caller.  Linear probing with backward-shift deletion (no tombstones), so a
 * table that sees as many removals as insertions does not decay.  The table
 * grows (doubling, at 3/4 full) only on insertion of a new key: lookups,
 * counter updates and removals never allocate.  No Python.h.
 */
#ifndef PMT_PTRMAP_H
#define PMT_PTRMAP_H

#include <stddef.h>
#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

typedef struct {
    uintptr_t key;      /* 0: empty slot */
    uintptr_t aux;
    int64_t n[3];
} pmt_ptrmap_entry;

typedef struct {
    pmt_ptrmap_entry *slots;
    size_t cap;         /* a power of two */
    size_t len;
} pmt_ptrmap;

/* Make an empty table able to hold cap_hint keys before growing.
 * Returns 0, or -1 (out of memory; m is then empty and safe to free). */
int pmt_ptrmap_init(pmt_ptrmap *m, size_t cap_hint);
void pmt_ptrmap_free(pmt_ptrmap *m);
/* Remove every key, keeping the capacity. */
void pmt_ptrmap_clear(pmt_ptrmap *m);

/* The entry of key, or NULL. */
pmt_ptrmap_entry *pmt_ptrmap_get(const pmt_ptrmap *m, uintptr_t key);
/* The entry of key, inserted zeroed if absent (*created set to 1, else 0).
 * NULL if key is 0 or the table could not grow (out of memory). */
pmt_ptrmap_entry *pmt_ptrmap_put(pmt_ptrmap *m, uintptr_t key, int *created);
/* Remove key; 1 if it was present (its entry copied to *out if out). */
int pmt_ptrmap_remove(pmt_ptrmap *m, uintptr_t key, pmt_ptrmap_entry *out);

#ifdef __cplusplus
}
#endif
#endif /* PMT_PTRMAP_H */
