/* checkpoint.c: the totals of --aggregate written into the capture.
 *
 * Every CKPT_EVERY events the counting thread looks at a coarse clock (a
 * vDSO read, no system call); once --checkpoint seconds have passed since
 * the last checkpoint it writes one, under the table's lock, so it is one
 * consistent state: the header, the size and allocator tallies, the heap at
 * past checkpoints (at most CKPT_POINTS, halved when full) and every stack
 * that allocated.  It goes into the slot the header does not name (two
 * extents of the file, mapped MAP_SHARED: what is stored is in the page
 * cache at once), then the header names it (capfile.c ckpt_commit), so a
 * SIGKILL at any moment leaves the last whole checkpoint.  At exit and exec
 * the final checkpoint is written before the header's end fields, and the
 * other slot's blocks are given back (a finished capture holds one).
 *
 * No thread of our own: a traced program keeps its own threads, fork and
 * signals to itself.  The price: a program that allocates nothing for a
 * while writes no checkpoint meanwhile (nothing changed, except what its
 * last CKPT_EVERY events and the last interval did).
 */
#define _GNU_SOURCE 1
#include <string.h>
#include <time.h>

#include "preload.h"

uint64_t g_ckpt_interval_ns = 1000000000u;
static uint64_t g_ckpt_next_ns;         /* CLOCK_MONOTONIC_COARSE deadline */
static uint64_t g_ckpt_seq;             /* the last written */
static pmt_mc_ckpt_point g_points[CKPT_POINTS];
static uint32_t g_n_points;
static uint32_t g_point_stride = 1;     /* checkpoints per kept point */
static uint32_t g_point_skip;

static struct {
    uint64_t area_off;
    unsigned char *map;
    size_t bytes;
} g_slot[2];

static uint64_t
clock_ns(clockid_t id)
{
    struct timespec ts;
    if (clock_gettime(id, &ts) != 0) {
        return 0;
    }
    return (uint64_t)ts.tv_sec * 1000000000u + (uint64_t)ts.tv_nsec;
}

void
checkpoint_due(void)
{
    uint64_t now = clock_ns(CLOCK_MONOTONIC_COARSE);
    if (g_ckpt_next_ns == 0) {
        g_ckpt_next_ns = now + g_ckpt_interval_ns;     /* the first look: start the clock */
        return;
    }
    if (now < g_ckpt_next_ns) {
        return;
    }
    g_ckpt_next_ns = now + g_ckpt_interval_ns;
    checkpoint_write(0);
}

/* The highest heap since the last checkpoint among the past checkpoints'
 * (every g_point_stride-th kept). */
static void
add_point(uint64_t t)
{
    pmt_mc_ckpt_point p = {t, g_agg.events, g_agg.window, g_agg.peak};
    g_agg.window = g_agg.heap;
    if (g_point_skip++ % g_point_stride != 0 && g_n_points > 0) {
        pmt_mc_ckpt_point *last = &g_points[g_n_points - 1];
        if (p.heap > last->heap) {
            last->heap = p.heap;    /* a kept point holds the highest heap it stands for */
        }
        last->time_ns = t;
        last->events = p.events;
        last->peak = p.peak;
        return;
    }
    if (g_n_points == CKPT_POINTS) {
        for (uint32_t i = 0; i < CKPT_POINTS / 2; i++) {
            pmt_mc_ckpt_point a = g_points[2 * i], b = g_points[2 * i + 1];
            b.heap = a.heap > b.heap ? a.heap : b.heap;
            g_points[i] = b;
        }
        g_n_points = CKPT_POINTS / 2;
        g_point_stride *= 2;
        g_point_skip = 1;
    }
    g_points[g_n_points++] = p;
}

int
checkpoint_write(int final)
{
    if (!capture_open() || g_stop_err) {
        return -1;
    }
    uint64_t t = clock_ns(CLOCK_REALTIME);
    add_point(t);
    uint64_t n_stacks = g_agg.n_used;
    size_t tallies = sizeof(g_agg.sizes) + sizeof(g_agg.kinds);
    size_t points = g_n_points * sizeof(pmt_mc_ckpt_point);
    size_t payload = tallies + points + n_stacks * sizeof(pmt_mc_ckpt_stack);
    size_t need = sizeof(pmt_mc_ckpt_head) + payload;
    uint64_t seq = g_ckpt_seq + 1;
    unsigned s = (unsigned)(seq & 1);
    if (g_slot[s].bytes < need) {
        uint64_t off;
        unsigned char *map;
        size_t bytes = need + need / 2 + 4096;
        if (ckpt_extent(bytes, &off, &map) < 0) {
            return -1;
        }
        if (g_slot[s].map) {
            ckpt_extent_drop(g_slot[s].area_off, g_slot[s].map, g_slot[s].bytes, 1);
        }
        size_t len = (bytes + CHUNK_BYTES - 1) / CHUNK_BYTES * CHUNK_BYTES;
        g_slot[s].area_off = off;
        g_slot[s].map = map;
        g_slot[s].bytes = len;
    }
    pmt_mc_ckpt_head *h = (pmt_mc_ckpt_head *)g_slot[s].map;
    h->seq = 0;     /* not a checkpoint while it is written */
    unsigned char *p = g_slot[s].map + sizeof(*h), *start = p;
    memcpy(p, g_agg.sizes, sizeof(g_agg.sizes));
    p += sizeof(g_agg.sizes);
    memcpy(p, g_agg.kinds, sizeof(g_agg.kinds));
    p += sizeof(g_agg.kinds);
    memcpy(p, g_points, points);
    p += points;
    pmt_mc_ckpt_stack *out = (pmt_mc_ckpt_stack *)p;
    uint64_t k = 0;
    for (size_t i = 0; i < g_agg.stacks_cap && k < n_stacks; i++) {
        const agg_stack *a = &g_agg.stacks[i];
        if (a->alloc_count == 0) {
            continue;
        }
        int at_peak = a->seen == g_agg.epoch;
        out[k++] = (pmt_mc_ckpt_stack){
            .node = (uint32_t)i,
            .alloc_bytes = a->alloc_bytes, .alloc_count = a->alloc_count,
            .live_bytes = a->live_bytes, .live_count = a->live_count,
            .peak_bytes = at_peak ? a->peak_bytes : a->live_bytes,
            .peak_count = at_peak ? a->peak_count : a->live_count};
    }
    payload = tallies + points + k * sizeof(pmt_mc_ckpt_stack);
    h->len = payload;
    h->sum = pmt_mc_ckpt_sum(start, payload);
    h->time_ns = t;
    h->final = (uint32_t)final;
    h->n_points = g_n_points;
    h->n_stacks = k;
    h->events = g_agg.events;
    h->heap = g_agg.heap;
    h->peak = g_agg.peak;
    h->peak_events = g_agg.peak_events;
    h->unknown = g_agg.unknown;
    h->dropped = g_agg.dropped;
    atomic_thread_fence(memory_order_release);
    h->seq = seq;
    ckpt_commit(s, g_slot[s].area_off, seq);
    g_ckpt_seq = seq;
    if (final && g_slot[s ^ 1].map) {
        /* the older checkpoint is not needed any more: its blocks go back */
        ckpt_extent_drop(g_slot[s ^ 1].area_off, g_slot[s ^ 1].map, g_slot[s ^ 1].bytes, 1);
        g_slot[s ^ 1].map = NULL;
        g_slot[s ^ 1].bytes = 0;
    }
    return 0;
}

/* A forked child: the slots are mappings of the parent's file. */
void
checkpoint_forget(void)
{
    for (int s = 0; s < 2; s++) {
        if (g_slot[s].map) {
            ckpt_extent_drop(0, g_slot[s].map, g_slot[s].bytes, 0);
        }
        g_slot[s].map = NULL;
        g_slot[s].bytes = 0;
        g_slot[s].area_off = 0;
    }
    g_ckpt_seq = 0;
    g_ckpt_next_ns = 0;
    g_n_points = 0;
    g_point_stride = 1;
    g_point_skip = 0;
}
