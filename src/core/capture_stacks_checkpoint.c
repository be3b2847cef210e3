/* capture_stacks_checkpoint.c: the by-stack report (capture_stacks.h) of
 * an aggregated capture, which holds no events: every number from its last
 * whole checkpoint (capture_checkpoint.h), with no range and no slices. */
#include <stdlib.h>
#include <string.h>

#include "capture_checkpoint.h"
#include "capture_stacks_impl.h"

/* An aggregated capture: every number from its checkpoint (no events: no
 * range, no slices; the heap points are the checkpoints'). */
int
pmt_st_from_checkpoint(st_ctx *s)
{
    pmt_st_report *r = s->r;
    pmt_ckpt k;
    if (pmt_ckpt_find(&s->cap, &k, r->error, sizeof(r->error)) < 0) {
        return -2;
    }
    r->events = r->hi = k.head.events;
    r->lo = 0;
    r->slices = 0;
    r->peak_bytes = k.head.peak;
    r->peak_event = r->live_peak_event = k.head.peak_events;   /* the process's peak only */
    r->end_heap = k.head.heap;
    memcpy(r->sizes, k.sizes, sizeof(r->sizes));
    memcpy(r->kinds, k.kinds, sizeof(r->kinds));
    uint32_t np = k.head.n_points < PMT_ST_MAX_POINTS ? k.head.n_points : PMT_ST_MAX_POINTS;
    if (np && !(r->points = calloc(np, sizeof(pmt_st_point)))) {
        return -1;
    }
    for (uint32_t i = 0; i < np; i++) {
        uint64_t t = k.points[i].time_ns, t0 = s->cap.header.start_ns;
        r->points[i] = (pmt_st_point){.event = k.points[i].events, .heap = k.points[i].heap,
                                      .ns = t > t0 ? t - t0 : 0};
    }
    r->n_points = np;
    for (uint64_t i = 0; i < k.head.n_stacks; i++) {
        const pmt_mc_ckpt_stack *c = &k.stacks[i];
        const pmt_cap_node *n = c->node ? pmt_capture_node(&s->cap, c->node) : NULL;
        pmt_st_thread *th = pmt_st_thread_at(s, n ? n->thread : 0);
        if (!th) {
            return -1;
        }
        th->alloc_bytes += c->alloc_bytes;
        th->alloc_count += c->alloc_count;
        if (s->o->thread != PMT_ST_ALL_THREADS && th->id != s->o->thread) {
            continue;
        }
        uint32_t x = pmt_st_stack_get(s, c->node, pmt_ckpt_node_line(&s->cap, c->node),
                                      n ? n->thread : 0);
        if (x == PMT_ST_NONE) {
            return -1;
        }
        stack_acc *a = &s->stacks[x];
        a->alloc_bytes += c->alloc_bytes;
        a->alloc_count += c->alloc_count;
        a->peak_bytes += c->peak_bytes;
        a->peak_count += c->peak_count;
        a->end_bytes += c->live_bytes;
        a->end_count += c->live_count;
        r->alloc_bytes += c->alloc_bytes;
        r->alloc_count += c->alloc_count;
        r->peak_live_bytes += c->peak_bytes;
        r->peak_live_count += c->peak_count;
        r->end_bytes += c->live_bytes;
        r->end_count += c->live_count;
    }
    return 0;
}
