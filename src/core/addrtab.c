/* addrtab.c: address-keyed entries over hashtab (see addrtab.h): the hash
 * and the key comparison the table is set up with. */
#include "addrtab.h"

#include <stddef.h>

static uint64_t
addr_hash(const void *key, void *ctx)
{
    (void)ctx;
    return pmt_ht_hash_u64((uint64_t)*(const uintptr_t *)key);
}

static int
addr_eq(const void *key, const void *entry, void *ctx)
{
    (void)ctx;
    return ((const pmt_addr_entry *)entry)->key == *(const uintptr_t *)key;
}

void
pmt_at_init(pmt_hashtab *t)
{
    pmt_ht_init(t, sizeof(pmt_addr_entry), addr_hash, addr_eq, NULL);
}
