/* ring.c: the double buffer of records awaiting delivery (see ring.h). */
#include "ring.h"

#include <errno.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>

size_t
pmt_ring_capacity(double interval, double latency)
{
    double span = latency * 4 > 2.0 ? latency * 4 : 2.0;
    double c = interval > 0 ? ceil(span / interval) : 16384;
    return c < 64 ? 64 : (c > 16384 ? 16384 : (size_t)c);
}

int
pmt_ring_init(pmt_ring *r, size_t cap)
{
    memset(r, 0, sizeof(*r));
    r->fill = calloc(cap, sizeof(pmt_slot));
    r->spare = calloc(cap, sizeof(pmt_slot));
    if (r->fill == NULL || r->spare == NULL) {
        free(r->fill);
        free(r->spare);
        r->fill = r->spare = NULL;
        errno = ENOMEM;
        return -1;
    }
    r->cap = cap;
    return 0;
}

static void
clear_slots(pmt_slot *s, size_t n)
{
    for (size_t i = 0; i < n; i++) {
        free(s[i].heap);
        s[i].heap = NULL;
    }
}

void
pmt_ring_free(pmt_ring *r)
{
    if (r->fill) {
        clear_slots(r->fill, r->nfill);
        free(r->fill);
    }
    if (r->spare) {
        clear_slots(r->spare, r->nbatch);
        free(r->spare);
    }
    r->fill = r->spare = NULL;
    r->nfill = r->nbatch = r->cap = 0;
}

int
pmt_ring_put(pmt_ring *r, double created, int kind, const char *text,
             size_t len, char *heap)
{
    if (r->nfill >= r->cap) {
        r->dropped++;
        free(heap);
        return -1;
    }
    pmt_slot *sl = &r->fill[r->nfill++];
    sl->created = created;
    sl->kind = kind;
    sl->len = (uint32_t)len;
    sl->heap = heap;
    if (heap == NULL) {
        memcpy(sl->text, text, len < PMT_SLOT_TEXT ? len : PMT_SLOT_TEXT);
    }
    return 0;
}

int
pmt_ring_due(const pmt_ring *r, double now, double latency)
{
    if (r->nfill == 0) {
        return 0;
    }
    return r->nfill * 2 >= r->cap || now - r->fill[0].created >= latency - 1e-4;
}

size_t
pmt_ring_swap(pmt_ring *r)
{
    pmt_slot *batch = r->fill;
    r->fill = r->spare;
    r->spare = batch;
    r->nbatch = r->nfill;
    r->nfill = 0;
    return r->nbatch;
}

void
pmt_ring_clear_batch(pmt_ring *r)
{
    clear_slots(r->spare, r->nbatch);
    r->nbatch = 0;
}
