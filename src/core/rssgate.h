/* rssgate.h: decide when RSS may have changed, so it is read only then.
 *
 * Reading RSS is a syscall (a pread of /proc/self/statm).  A tracer that runs
 * at every call and return cannot afford one per event, and most events change
 * nothing: RSS moves when pages are mapped, first touched or unmapped, which
 * follows allocation.  So the allocators feed two process-wide counters
 * (relaxed atomics: plain loads and stores on the hot path, lost updates
 * between threads are harmless because the counters only have to move):
 *
 *   pmt_gate_bytes   bytes requested from / returned to the C allocator and
 *                    the small-object allocator's arenas (large blocks),
 *   pmt_gate_blocks  live small blocks (allocations minus frees).
 *
 * A tracer keeps a pmt_gate: the counters and the time at its last RSS read
 * (in the caller's time unit: nanoseconds or tickclock stamps).
 * pmt_gate_due() says "read again" when, since that read, the bytes moved by
 * at least limit_bytes, or the live small blocks rose by at least
 * limit_blocks, or limit_events events passed, or limit_t time passed
 * (the catch-all for memory the counters cannot see: C code calling malloc or
 * mmap directly, thread stacks, file mappings).
 */
#ifndef PMT_RSSGATE_H
#define PMT_RSSGATE_H

#include <stdatomic.h>
#include <stdint.h>
#include <time.h>

#ifdef __cplusplus
extern "C" {
#endif

extern _Atomic uint64_t pmt_gate_bytes;
extern _Atomic int64_t pmt_gate_blocks;

/* The defaults (documented in the README). */
#define PMT_GATE_LIMIT_BYTES 4096
#define PMT_GATE_LIMIT_BLOCKS 64
#define PMT_GATE_LIMIT_EVENTS 1024
#define PMT_GATE_LIMIT_NS 1000000

static inline void
pmt_gate_add_bytes(uint64_t n)
{
    atomic_store_explicit(&pmt_gate_bytes,
                          atomic_load_explicit(&pmt_gate_bytes, memory_order_relaxed) + n,
                          memory_order_relaxed);
}

static inline void
pmt_gate_add_blocks(int64_t d)
{
    atomic_store_explicit(&pmt_gate_blocks,
                          atomic_load_explicit(&pmt_gate_blocks, memory_order_relaxed) + d,
                          memory_order_relaxed);
}

typedef struct pmt_gate {
    uint64_t bytes;         /* pmt_gate_bytes at the last read */
    int64_t blocks;         /* pmt_gate_blocks at the last read */
    uint64_t t;             /* time of the last read */
    uint32_t events;        /* events since the last read */
    uint64_t limit_bytes;
    int64_t limit_blocks;
    uint32_t limit_events;  /* 0: no event bound */
    uint64_t limit_t;       /* 0: no time bound */
} pmt_gate;

/* Set the limits (0 for limit_events / limit_t switches that bound off) and
 * mark a read at time now. */
void pmt_gate_init(pmt_gate *g, uint64_t limit_bytes, int64_t limit_blocks,
                   uint32_t limit_events, uint64_t limit_t, uint64_t now);

/* Record that RSS was read at time now. */
static inline void
pmt_gate_mark(pmt_gate *g, uint64_t now)
{
    g->bytes = atomic_load_explicit(&pmt_gate_bytes, memory_order_relaxed);
    g->blocks = atomic_load_explicit(&pmt_gate_blocks, memory_order_relaxed);
    g->t = now;
    g->events = 0;
}

/* Count one event at time now; 1 if RSS should be read at it. */
static inline int
pmt_gate_due(pmt_gate *g, uint64_t now)
{
    if (atomic_load_explicit(&pmt_gate_bytes, memory_order_relaxed) - g->bytes
            >= g->limit_bytes) {
        return 1;
    }
    if (atomic_load_explicit(&pmt_gate_blocks, memory_order_relaxed) - g->blocks
            >= g->limit_blocks) {
        return 1;
    }
    if (++g->events >= g->limit_events && g->limit_events) {
        return 1;
    }
    return g->limit_t && now - g->t >= g->limit_t;
}

/* CLOCK_MONOTONIC in nanoseconds (a vDSO call on Linux, no syscall). */
static inline int64_t
pmt_monotonic_ns(void)
{
    struct timespec ts;
    (void)clock_gettime(CLOCK_MONOTONIC, &ts);  /* cannot fail for this clock */
    return (int64_t)ts.tv_sec * 1000000000 + ts.tv_nsec;
}

#ifdef __cplusplus
}
#endif
#endif /* PMT_RSSGATE_H */
