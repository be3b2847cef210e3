/* aggregate.c: the bounded mode of the malloc tracer (--aggregate).
 *
 * Instead of writing every event, the library keeps per distinct stack (the
 * innermost node of the stack tree, pystack.c / nativestack.c, whose ids are
 * dense) the bytes and count ever allocated, live now and live at the
 * high-water mark, and the live blocks (address -> node, size) so a release
 * is charged to the stack that allocated it.  checkpoint.c writes the table
 * into the capture.  Memory grows with distinct stacks and live blocks,
 * never with events.
 *
 * Live at the peak, O(1) per event: `epoch` counts new high-water marks.
 * A stack's live values at the latest peak are its live values now unless it
 * changed since; so before a stack's first change after a new peak its live
 * values are copied into peak_* (and seen = epoch); an allocation that makes
 * a new peak takes its stack's values after the change.  Reading: peak_* if
 * seen == epoch, else live_*.
 *
 * Threads: one spin lock over the table.  The peak is a property of one order
 * of every event of the process (the event mode gets it from a global
 * sequence number and a sort after the run); here the order is decided as
 * the events happen, so they are counted one at a time.  Python allocates
 * under its GIL, so the lock is rarely contended there.  Both tables are
 * mmap'd and grow by doubling (mremap for the stacks, a rehash for the
 * blocks) inside the event that fills them: amortised O(1), no allocation
 * from the allocator being traced.
 */
#define _GNU_SOURCE 1     /* mremap */
#include <string.h>
#include <sys/mman.h>

#include "preload.h"

int g_aggregate;
atomic_flag g_agg_lock = ATOMIC_FLAG_INIT;
agg_state g_agg;

typedef struct {
    uint64_t addr;          /* 0: empty */
    uint64_t size;
    uint32_t node;
    uint32_t kind;
} agg_block;

static agg_block *g_blocks;
static size_t g_blocks_cap, g_blocks_len;

static inline size_t
block_slot(uint64_t addr, size_t cap)
{
    uint64_t h = (addr >> 4) * 0x9E3779B97F4A7C15ull;
    return (size_t)(h >> 20) & (cap - 1);
}

static void *
map_zero(size_t bytes)
{
    void *m = real.mmap(NULL, bytes, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS,
                        -1, 0);
    return m == MAP_FAILED ? NULL : m;
}

/* Room for one more live block (the table doubles at 70%). */
static int
blocks_room(void)
{
    if ((g_blocks_len + 1) * 10 < g_blocks_cap * 7) {
        return 0;
    }
    size_t ncap = g_blocks_cap ? g_blocks_cap * 2 : 1u << 14;
    agg_block *n = map_zero(ncap * sizeof(agg_block));
    if (n == NULL) {
        return -1;
    }
    for (size_t i = 0; i < g_blocks_cap; i++) {
        if (g_blocks[i].addr) {
            size_t j = block_slot(g_blocks[i].addr, ncap);
            while (n[j].addr) {
                j = (j + 1) & (ncap - 1);
            }
            n[j] = g_blocks[i];
        }
    }
    if (g_blocks) {
        real.munmap(g_blocks, g_blocks_cap * sizeof(agg_block));
    }
    g_blocks = n;
    g_blocks_cap = ncap;
    return 0;
}

/* The entry of addr, or the empty one where it would go (the table not empty). */
static inline agg_block *
block_probe(uint64_t addr)
{
    size_t i = block_slot(addr, g_blocks_cap);
    while (g_blocks[i].addr != addr && g_blocks[i].addr != 0) {
        i = (i + 1) & (g_blocks_cap - 1);
    }
    return &g_blocks[i];
}

static agg_block *
block_find(uint64_t addr)
{
    if (g_blocks_cap == 0) {
        return NULL;
    }
    agg_block *b = block_probe(addr);
    return b->addr ? b : NULL;
}

/* Put a block where block_probe says (room made first). */
static inline void
block_put(agg_block *at, const agg_block *b)
{
    *at = *b;
    g_blocks_len++;
}

/* Remove b (linear probing: the entries after it move back, no tombstones). */
static void
block_remove(agg_block *b)
{
    size_t mask = g_blocks_cap - 1;
    size_t i = (size_t)(b - g_blocks), j = i;
    for (;;) {
        j = (j + 1) & mask;
        if (g_blocks[j].addr == 0) {
            break;
        }
        size_t k = block_slot(g_blocks[j].addr, g_blocks_cap);
        /* j's entry may move to i unless its home k lies cyclically in (i, j] */
        if ((i <= j) ? (i < k && k <= j) : (i < k || k <= j)) {
            continue;
        }
        g_blocks[i] = g_blocks[j];
        i = j;
    }
    g_blocks[i].addr = 0;
    g_blocks_len--;
}

/* The stack entry of node (the table grows to hold it); NULL: no memory. */
static agg_stack *
stack_of(uint32_t node)
{
    if (LIKELY(node < g_agg.stacks_cap)) {
        return &g_agg.stacks[node];
    }
    size_t ncap = g_agg.stacks_cap ? g_agg.stacks_cap : 1u << 12;
    while (ncap <= node) {
        ncap *= 2;
    }
    void *m;
    if (g_agg.stacks == NULL) {
        m = map_zero(ncap * sizeof(agg_stack));
    }
    else {
        m = mremap(g_agg.stacks, g_agg.stacks_cap * sizeof(agg_stack),
                   ncap * sizeof(agg_stack), MREMAP_MAYMOVE);
        m = m == MAP_FAILED ? NULL : m;
    }
    if (m == NULL) {
        return NULL;
    }
    g_agg.stacks = m;
    g_agg.stacks_cap = ncap;
    return &g_agg.stacks[node];
}

/* Before a stack changes: its live values at the latest peak, kept. */
static inline void
before_change(agg_stack *s)
{
    if (s->seen != g_agg.epoch) {
        s->peak_bytes = s->live_bytes;
        s->peak_count = s->live_count;
        s->seen = g_agg.epoch;
    }
}

static inline unsigned
size_class(uint64_t size)
{
    return size <= 1 ? 0 : (unsigned)(64 - __builtin_clzll(size - 1));
}

/* Count a release of block b (then gone from the table).  g_agg_lock held. */
static void
release_block(agg_block *b, uint64_t bytes)
{
    agg_stack *s = &g_agg.stacks[b->node];  /* the stack was made at its allocation */
    before_change(s);
    s->live_bytes -= bytes;
    g_agg.heap -= bytes;
    if (bytes == b->size) {
        s->live_count--;
        block_remove(b);
    }
    else {  /* the head of a mapping: the rest stays live, one block still */
        b->size -= bytes;
    }
}

static inline void
counted(void)
{
    if (UNLIKELY((++g_agg.events & (CKPT_EVERY - 1)) == 0)) {
        checkpoint_due();
    }
}

void
agg_alloc(unsigned kind, const void *p, uint64_t size, uint32_t node)
{
    uint64_t addr = (uint64_t)(uintptr_t)p;
    agg_lock();
    agg_stack *s = stack_of(node);
    if (UNLIKELY(s == NULL || blocks_room() < 0)) {
        g_agg.dropped++;
        agg_unlock();
        return;
    }
    agg_block *at = block_probe(addr);
    if (UNLIKELY(at->addr != 0)) {  /* its release was not seen (munmap of part of it) */
        release_block(at, at->size);
        at = block_probe(addr);
        s = &g_agg.stacks[node];
    }
    if (s->alloc_count == 0) {
        g_agg.n_used++;
    }
    before_change(s);
    s->alloc_bytes += size;
    s->alloc_count++;
    s->live_bytes += size;
    s->live_count++;
    block_put(at, &(agg_block){addr, size, node, kind});
    unsigned c = size_class(size);
    g_agg.sizes[c].count++;
    g_agg.sizes[c].bytes += size;
    g_agg.kinds[kind].count++;
    g_agg.kinds[kind].bytes += size;
    g_agg.heap += size;
    if (g_agg.heap > g_agg.window) {
        g_agg.window = g_agg.heap;
    }
    if (g_agg.heap > g_agg.peak) {      /* a new high-water mark: this state */
        g_agg.peak = g_agg.heap;
        g_agg.peak_events = g_agg.events + 1;
        g_agg.epoch++;
        s->peak_bytes = s->live_bytes;
        s->peak_count = s->live_count;
        s->seen = g_agg.epoch;
    }
    counted();
    agg_unlock();
}

void
agg_release(unsigned kind, const void *p, uint64_t len)
{
    uint64_t addr = (uint64_t)(uintptr_t)p;
    agg_lock();
    agg_block *b = block_find(addr);
    if (b == NULL) {
        g_agg.unknown++;
    }
    else if (kind == PMT_MC_MUNMAP && len < b->size && b->kind == PMT_MC_MMAP) {
        release_block(b, len);      /* the head goes: the rest moves up */
        agg_block moved = *b;
        block_remove(b);
        moved.addr = addr + len;
        if (blocks_room() == 0) {
            block_put(block_probe(moved.addr), &moved);
        }
    }
    else {
        release_block(b, b->size);
    }
    counted();
    agg_unlock();
}

/* realloc: the old block is taken out before the real call (another thread
 * may get its address as soon as it is released), put back if it fails. */
int
agg_take(const void *p, agg_taken *t)
{
    uint64_t addr = (uint64_t)(uintptr_t)p;
    agg_lock();
    agg_block *b = block_find(addr);
    int found = b != NULL;
    if (found) {
        t->size = b->size;
        t->node = b->node;
        t->kind = b->kind;
        release_block(b, b->size);
    }
    else {
        g_agg.unknown++;
    }
    counted();
    agg_unlock();
    return found;
}

void
agg_put_back(const void *p, const agg_taken *t)
{
    uint64_t addr = (uint64_t)(uintptr_t)p;
    agg_lock();
    agg_stack *s = &g_agg.stacks[t->node];
    if (blocks_room() == 0 && block_probe(addr)->addr == 0) {
        before_change(s);
        s->live_bytes += t->size;
        s->live_count++;
        g_agg.heap += t->size;
        block_put(block_probe(addr), &(agg_block){addr, t->size, t->node, t->kind});
    }
    agg_unlock();
}

/* A forked child starts its own capture with nothing counted (its memory
 * is its parent's, allocated before it existed). */
void
agg_forget(void)
{
    if (g_blocks) {
        real.munmap(g_blocks, g_blocks_cap * sizeof(agg_block));
    }
    if (g_agg.stacks) {
        real.munmap(g_agg.stacks, g_agg.stacks_cap * sizeof(agg_stack));
    }
    g_blocks = NULL;
    g_blocks_cap = g_blocks_len = 0;
    memset(&g_agg, 0, sizeof(g_agg));
    agg_unlock();           /* held across fork by the thread that forked */
}
