/* addrtab.h: a table keyed by an address (a pointer as an integer), each
 * entry an aux word and three counters, over the shared hash table
 * (hashtab.h).  ReferenceTracing keeps three: the objects it saw created
 * (aux: their type), the types (n: live, created, destroyed; aux: whether
 * the filters log them) and the objects it caused itself.  Entries move when
 * the table grows: a pointer to one is valid until the next put.  No Python.h.
 */
#ifndef PMT_ADDRTAB_H
#define PMT_ADDRTAB_H

#include <stdint.h>

#include "hashtab.h"

#ifdef __cplusplus
extern "C" {
#endif

typedef struct {
    uintptr_t key;
    uintptr_t aux;
    int64_t n[3];
} pmt_addr_entry;

void pmt_at_init(pmt_hashtab *t);

/* The entry of key, or NULL.  (Inline: ReferenceTracing looks up at every
 * object creation and destruction.) */
static inline pmt_addr_entry *
pmt_at_get(pmt_hashtab *t, uintptr_t key)
{
    return (pmt_addr_entry *)pmt_ht_find(t, &key);
}

/* The entry of key, inserted zeroed if absent (*created says which); NULL
 * when out of memory. */
static inline pmt_addr_entry *
pmt_at_put(pmt_hashtab *t, uintptr_t key, int *created)
{
    pmt_addr_entry *e = (pmt_addr_entry *)pmt_ht_insert(t, &key, created);
    if (e && *created) {
        e->key = key;
    }
    return e;
}

/* Remove key; 1 if it was there (its entry copied to *out when out is not
 * NULL), else 0. */
static inline int
pmt_at_remove(pmt_hashtab *t, uintptr_t key, pmt_addr_entry *out)
{
    pmt_addr_entry *e = (pmt_addr_entry *)pmt_ht_find(t, &key);
    if (e == NULL) {
        return 0;
    }
    if (out) {
        *out = *e;
    }
    pmt_ht_remove(t, e);
    return 1;
}

#ifdef __cplusplus
}
#endif
#endif /* PMT_ADDRTAB_H */
