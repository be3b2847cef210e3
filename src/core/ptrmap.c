/* ptrmap.c: open-addressing pointer -> counters table (see ptrmap.h). */
#include "ptrmap.h"

#include <stdlib.h>
#include <string.h>

static size_t
slot_of(uintptr_t key, size_t cap)
{
    /* Addresses are aligned: drop the low bits, then Fibonacci hashing. */
    uint64_t h = (uint64_t)(key >> 4) * UINT64_C(0x9E3779B97F4A7C15);
    return (size_t)(h >> 32) & (cap - 1);
}

int
pmt_ptrmap_init(pmt_ptrmap *m, size_t cap_hint)
{
    size_t cap = 16;
    while (cap / 4 * 3 < cap_hint) {
        cap *= 2;
    }
    m->len = 0;
    m->slots = calloc(cap, sizeof(pmt_ptrmap_entry));
    m->cap = m->slots ? cap : 0;
    return m->slots ? 0 : -1;
}

void
pmt_ptrmap_free(pmt_ptrmap *m)
{
    free(m->slots);
    m->slots = NULL;
    m->cap = 0;
    m->len = 0;
}

void
pmt_ptrmap_clear(pmt_ptrmap *m)
{
    if (m->slots) {
        memset(m->slots, 0, m->cap * sizeof(pmt_ptrmap_entry));
    }
    m->len = 0;
}

pmt_ptrmap_entry *
pmt_ptrmap_get(const pmt_ptrmap *m, uintptr_t key)
{
    if (key == 0 || m->cap == 0) {
        return NULL;
    }
    for (size_t i = slot_of(key, m->cap);; i = (i + 1) & (m->cap - 1)) {
        if (m->slots[i].key == key) {
            return &m->slots[i];
        }
        if (m->slots[i].key == 0) {
            return NULL;
        }
    }
}

static int
grow(pmt_ptrmap *m)
{
    size_t cap = m->cap ? m->cap * 2 : 16;
    pmt_ptrmap_entry *slots = calloc(cap, sizeof(pmt_ptrmap_entry));
    if (slots == NULL) {
        return -1;
    }
    for (size_t j = 0; j < m->cap; j++) {
        if (m->slots[j].key) {
            size_t i = slot_of(m->slots[j].key, cap);
            while (slots[i].key) {
                i = (i + 1) & (cap - 1);
            }
            slots[i] = m->slots[j];
        }
    }
    free(m->slots);
    m->slots = slots;
    m->cap = cap;
    return 0;
}

pmt_ptrmap_entry *
pmt_ptrmap_put(pmt_ptrmap *m, uintptr_t key, int *created)
{
    *created = 0;
    if (key == 0) {
        return NULL;
    }
    pmt_ptrmap_entry *e = pmt_ptrmap_get(m, key);
    if (e) {
        return e;
    }
    if ((m->len + 1) * 4 > m->cap * 3 && grow(m) < 0) {
        return NULL;
    }
    size_t i = slot_of(key, m->cap);
    while (m->slots[i].key) {
        i = (i + 1) & (m->cap - 1);
    }
    memset(&m->slots[i], 0, sizeof(m->slots[i]));
    m->slots[i].key = key;
    m->len++;
    *created = 1;
    return &m->slots[i];
}

int
pmt_ptrmap_remove(pmt_ptrmap *m, uintptr_t key, pmt_ptrmap_entry *out)
{
    pmt_ptrmap_entry *e = pmt_ptrmap_get(m, key);
    if (e == NULL) {
        return 0;
    }
    if (out) {
        *out = *e;
    }
    size_t mask = m->cap - 1;
    size_t hole = (size_t)(e - m->slots);
    /* Backward shift: move later entries of the run into the hole when their
     * home slot is not between the hole and their position. */
    for (size_t i = (hole + 1) & mask; m->slots[i].key; i = (i + 1) & mask) {
        size_t home = slot_of(m->slots[i].key, m->cap);
        if (((i - home) & mask) >= ((i - hole) & mask)) {
            m->slots[hole] = m->slots[i];
            hole = i;
        }
    }
    memset(&m->slots[hole], 0, sizeof(m->slots[hole]));
    m->len--;
    return 1;
}
