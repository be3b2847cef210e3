/* rssgate.h: decide when RSS may have changed, so it is read only then.
 *
 * Reading RSS is a syscall (a pread of /proc/self/statm).  A tracer that runs
 * at every call and return cannot afford one per event, and most events change
 * nothing: RSS moves when pages are mapped, first touched or unmapped, which
 * follows allocation, and an allocator that reuses what was freed (glibc's
 * malloc, pymalloc's pools) does not move it at all.  So the allocators feed
 * process-wide counters (relaxed atomics: plain loads and stores on the hot
 * path, lost updates between threads are harmless because the counters only
 * have to move):
 *
 *   pmt_gate_bytes       live bytes from the C allocator (allocations minus
 *                        frees), and pmt_gate_bytes_max, its highest value,
 *   pmt_gate_blocks      live small blocks, and pmt_gate_blocks_max,
 *   pmt_gate_large       a count of large blocks (>= PMT_GATE_LARGE bytes,
 *                        mapped and unmapped by malloc itself), arenas of the
 *                        small-object allocator, and frees of unknown size.
 *
 * A tracer keeps a pmt_gate: the counters at its last RSS read, the highest
 * live bytes and blocks it has seen RSS follow (the high-water marks), and
 * the time of that read (in the caller's unit: nanoseconds or tickclock
 * stamps).  pmt_gate_due() says "read again" when, since that read, a large
 * block or arena came or went, or the live bytes rose above their high-water
 * mark by limit_bytes (new memory, not reuse), or fell by PMT_GATE_DROP_BYTES
 * (malloc may give memory back), or the live small blocks rose above theirs
 * by limit_blocks, or limit_events events passed, or limit_t time passed (the
 * catch-all for memory the counters cannot see: C code calling malloc or mmap
 * directly, thread stacks, file mappings, and heap growth from fragmentation
 * under the high-water mark).  When a read shows RSS fell, the marks restart
 * from the current counters (what was given back will be new memory again).
 *
 * The cheap form, for a tracer that checks at every event: an attached gate
 * (pmt_gate_attach) has its byte and block limits folded into process-wide
 * trip levels (the lowest of every attached gate's), and the allocators'
 * counting functions themselves bump pmt_gate_large when the live bytes or
 * blocks reach a trip level (or the bytes fall to the drop level).  Then
 * pmt_gate_due_attached() is one load and two compares: did pmt_gate_large
 * move, is the event budget spent, has the time come.  Callers serialise
 * init / attach / mark / detach (cPyMemTrace: the GIL); the counting
 * functions may run on any thread.
 */
#ifndef PMT_RSSGATE_H
#define PMT_RSSGATE_H

#include <stdatomic.h>
#include <stdint.h>
#include <time.h>

#ifdef __cplusplus
extern "C" {
#endif

/* Each shared object that links src/core has its own counters: hidden, so
 * that the allocator wrappers and the per-event check load them directly
 * rather than through the GOT (one instruction less per access). */
#if defined(__GNUC__) && defined(__ELF__)
#define PMT_GATE_HIDDEN __attribute__((visibility("hidden")))
#else
#define PMT_GATE_HIDDEN
#endif
extern _Atomic int64_t pmt_gate_bytes PMT_GATE_HIDDEN;
extern _Atomic int64_t pmt_gate_bytes_max PMT_GATE_HIDDEN;
extern _Atomic int64_t pmt_gate_blocks PMT_GATE_HIDDEN;
extern _Atomic int64_t pmt_gate_blocks_max PMT_GATE_HIDDEN;
extern _Atomic uint64_t pmt_gate_large PMT_GATE_HIDDEN;
/* Trip levels of the attached gates (none attached: never reached). */
extern _Atomic int64_t pmt_gate_trip_bytes PMT_GATE_HIDDEN;
extern _Atomic int64_t pmt_gate_trip_drop PMT_GATE_HIDDEN;
extern _Atomic int64_t pmt_gate_trip_blocks PMT_GATE_HIDDEN;

/* The defaults (documented in the README). */
#define PMT_GATE_LIMIT_BYTES 4096
#define PMT_GATE_LIMIT_BLOCKS 64
#define PMT_GATE_LIMIT_EVENTS 1024
#define PMT_GATE_LIMIT_NS 1000000
/* A block this large is malloc's own mapping (its default mmap threshold is
 * 128 KiB; a program may lower it): its coming and going moves RSS. */
#define PMT_GATE_LARGE (64 * 1024)
/* Live bytes falling this much may let malloc trim its heap. */
#define PMT_GATE_DROP_BYTES (64 * 1024)

#define PMT_GATE_LOAD(x) atomic_load_explicit(&(x), memory_order_relaxed)
#define PMT_GATE_STORE(x, v) atomic_store_explicit(&(x), (v), memory_order_relaxed)

/* A large block or an arena came or went, or a free's size is unknown, or
 * a trip level was reached: the next event of every gate reads. */
static inline void
pmt_gate_add_large(void)
{
    PMT_GATE_STORE(pmt_gate_large, PMT_GATE_LOAD(pmt_gate_large) + 1);
}

/* n bytes allocated (n > 0) or freed (n < 0) through the C allocator. */
static inline void
pmt_gate_add_bytes(int64_t n)
{
    int64_t v = PMT_GATE_LOAD(pmt_gate_bytes) + n;
    PMT_GATE_STORE(pmt_gate_bytes, v);
    if (v > PMT_GATE_LOAD(pmt_gate_bytes_max)) {
        PMT_GATE_STORE(pmt_gate_bytes_max, v);
        if (v >= PMT_GATE_LOAD(pmt_gate_trip_bytes)) {
            pmt_gate_add_large();
        }
    }
    else if (v <= PMT_GATE_LOAD(pmt_gate_trip_drop)) {
        pmt_gate_add_large();
    }
}

static inline void
pmt_gate_add_blocks(int64_t d)
{
    int64_t v = PMT_GATE_LOAD(pmt_gate_blocks) + d;
    PMT_GATE_STORE(pmt_gate_blocks, v);
    if (v > PMT_GATE_LOAD(pmt_gate_blocks_max)) {
        PMT_GATE_STORE(pmt_gate_blocks_max, v);
        if (v >= PMT_GATE_LOAD(pmt_gate_trip_blocks)) {
            pmt_gate_add_large();
        }
    }
}

typedef struct pmt_gate {
    int64_t bytes;          /* pmt_gate_bytes at the last read */
    int64_t blocks;         /* pmt_gate_blocks at the last read */
    uint64_t large;         /* pmt_gate_large at the last read */
    int64_t hw_bytes;       /* high-water marks of live bytes and blocks */
    int64_t hw_blocks;
    int64_t rss;            /* RSS at the last read (-1: unknown) */
    uint64_t t;             /* time of the last read */
    uint32_t events;        /* events since the last read */
    uint64_t limit_bytes;
    int64_t limit_blocks;
    uint32_t limit_events;  /* 0: no event bound */
    uint64_t limit_t;       /* 0: no time bound */
    uint64_t left;          /* events before the event bound (attached form) */
    uint64_t deadline;      /* t + limit_t, or UINT64_MAX (attached form) */
    int attached;
    struct pmt_gate *next;  /* the attached gates */
} pmt_gate;

/* Set the limits (0 for limit_events / limit_t switches that bound off) and
 * mark a read at time now. */
void pmt_gate_init(pmt_gate *g, uint64_t limit_bytes, int64_t limit_blocks,
                   uint32_t limit_events, uint64_t limit_t, uint64_t now);

/* Fold g's limits into the trip levels, and take them out again.  A gate
 * is detached before its memory goes and before pmt_gate_init() is used
 * on it again (init forgets that it was attached). */
void pmt_gate_attach(pmt_gate *g);
void pmt_gate_detach(pmt_gate *g);
/* Recompute the trip levels from the attached gates (after a mark). */
void pmt_gate_retrip(void);

/* Record that RSS was read at time now. */
static inline void
pmt_gate_mark(pmt_gate *g, uint64_t now)
{
    g->bytes = PMT_GATE_LOAD(pmt_gate_bytes);
    g->blocks = PMT_GATE_LOAD(pmt_gate_blocks);
    g->large = PMT_GATE_LOAD(pmt_gate_large);
    int64_t mb = PMT_GATE_LOAD(pmt_gate_bytes_max), mk = PMT_GATE_LOAD(pmt_gate_blocks_max);
    if (mb > g->hw_bytes) {
        g->hw_bytes = mb;
    }
    if (mk > g->hw_blocks) {
        g->hw_blocks = mk;
    }
    g->t = now;
    g->events = 0;
    g->left = g->limit_events ? g->limit_events : UINT64_MAX;
    g->deadline = g->limit_t && now + g->limit_t > now ? now + g->limit_t : UINT64_MAX;
    if (g->attached) {
        pmt_gate_retrip();
    }
}

/* Record that RSS was read at time now and was rss: if it fell, memory went
 * back to the kernel, and the high-water marks restart from here. */
static inline void
pmt_gate_mark_rss(pmt_gate *g, uint64_t now, int64_t rss)
{
    if (rss >= 0 && g->rss >= 0 && rss < g->rss) {
        g->hw_bytes = PMT_GATE_LOAD(pmt_gate_bytes);
        g->hw_blocks = PMT_GATE_LOAD(pmt_gate_blocks);
        PMT_GATE_STORE(pmt_gate_bytes_max, g->hw_bytes);
        PMT_GATE_STORE(pmt_gate_blocks_max, g->hw_blocks);
    }
    if (rss >= 0) {
        g->rss = rss;
    }
    pmt_gate_mark(g, now);
}

/* Count one event at time now; 1 if RSS should be read at it. */
static inline int
pmt_gate_due(pmt_gate *g, uint64_t now)
{
    if (PMT_GATE_LOAD(pmt_gate_large) != g->large) {
        return 1;
    }
    if (PMT_GATE_LOAD(pmt_gate_bytes_max) - g->hw_bytes >= (int64_t)g->limit_bytes
            || g->bytes - PMT_GATE_LOAD(pmt_gate_bytes) >= PMT_GATE_DROP_BYTES) {
        return 1;
    }
    if (PMT_GATE_LOAD(pmt_gate_blocks_max) - g->hw_blocks >= g->limit_blocks) {
        return 1;
    }
    if (++g->events >= g->limit_events && g->limit_events) {
        return 1;
    }
    return g->limit_t && now - g->t >= g->limit_t;
}

/* The same decision for an attached gate, at the cost of three compares:
 * the counting functions did the byte and block comparisons already. */
static inline int
pmt_gate_due_attached(pmt_gate *g, uint64_t now)
{
    int moved = PMT_GATE_LOAD(pmt_gate_large) != g->large;
    int spent = --g->left == 0;     /* counted at every event: no short cut */
    int late = now >= g->deadline;
    return moved | spent | late;
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
