/* ring.h: the records a logging-mode sampler has taken and not yet handed
 * over, as two buffers of fixed slots: the sampler fills one while the
 * other (a batch) is being delivered, and they are swapped when the batch is
 * done.  A record's text lives in its slot; a longer one (a long label) in a
 * heap buffer the slot owns.  Not thread-safe: the sampler locks around it.
 * Full means dropped (and counted), never blocked: the sampler keeps time. */
#ifndef PMT_RING_H
#define PMT_RING_H

#include <stddef.h>
#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

#define PMT_SLOT_TEXT 560       /* a record without a long label fits */

typedef struct pmt_slot {
    double created;             /* when sampled, seconds since the epoch */
    int kind;                   /* PMT_KIND_* (sampler.h) */
    uint32_t len;
    char *heap;                 /* the text, when longer than PMT_SLOT_TEXT */
    char text[PMT_SLOT_TEXT];
} pmt_slot;

typedef struct pmt_ring {
    pmt_slot *fill;             /* the sampler's */
    pmt_slot *spare;            /* the batch being delivered */
    size_t cap;
    size_t nfill;               /* records in fill */
    size_t nbatch;              /* records in spare */
    uint64_t dropped;           /* records dropped because fill was full */
} pmt_ring;

static inline const char *
pmt_slot_text(const pmt_slot *s)
{
    return s->heap ? s->heap : s->text;
}

/* Slots for about two seconds of samples, at least four latencies, within
 * [64, 16384]. */
size_t pmt_ring_capacity(double interval, double latency);

/* Allocate both buffers.  Returns 0, or -1 with errno ENOMEM. */
int pmt_ring_init(pmt_ring *r, size_t cap);
/* Free the buffers and every record in them (idempotent). */
void pmt_ring_free(pmt_ring *r);

/* Store a record: text[0:len] is copied, or heap (allocated with malloc,
 * holding the text) is adopted.  Returns 0, or -1 if fill is full: the
 * record is dropped (heap freed) and counted. */
int pmt_ring_put(pmt_ring *r, double created, int kind, const char *text,
                 size_t len, char *heap);

/* True when fill should be handed over: its oldest record is `latency`
 * seconds old at `now` (same clock as `created`), or it is half full. */
int pmt_ring_due(const pmt_ring *r, double now, double latency);

/* Make fill the batch (spare must be empty) and start an empty fill.
 * Returns the records in the batch. */
size_t pmt_ring_swap(pmt_ring *r);

/* Free the batch's records; the batch is empty afterwards. */
void pmt_ring_clear_batch(pmt_ring *r);

#ifdef __cplusplus
}
#endif
#endif /* PMT_RING_H */
