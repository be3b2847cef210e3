/* capture_stacks_report.c: the by-stack accumulators of a replay or a
 * checkpoint (capture_stacks_impl.h) turned into the report: stacks sorted
 * (peak, then allocated, then end bytes) with their frames, cells renumbered
 * and sorted, functions summed, the strings and threads handed over. */
#define _GNU_SOURCE 1
#include <stdlib.h>
#include <string.h>

#include "capture_frames.h"
#include "capture_stacks_impl.h"

/* ---- the report ---------------------------------------------------------- */

static int
cmp_stack(const void *a, const void *b, void *ctx)
{
    const stack_acc *v = ctx;
    uint32_t i = *(const uint32_t *)a, j = *(const uint32_t *)b;
    const stack_acc *x = &v[i], *y = &v[j];
    if (x->peak_bytes != y->peak_bytes) {
        return x->peak_bytes < y->peak_bytes ? 1 : -1;
    }
    if (x->alloc_bytes != y->alloc_bytes) {
        return x->alloc_bytes < y->alloc_bytes ? 1 : -1;
    }
    if (x->end_bytes != y->end_bytes) {
        return x->end_bytes < y->end_bytes ? 1 : -1;
    }
    return i < j ? -1 : i > j;
}

static int
cmp_cell(const void *a, const void *b)
{
    const pmt_st_cell *x = a, *y = b;
    if (x->stack != y->stack) {
        return x->stack < y->stack ? -1 : 1;
    }
    return x->slice < y->slice ? -1 : x->slice > y->slice;
}

/* Sorted stacks with their frames; cells renumbered. */
static int
make_stacks(st_ctx *s, pmt_frames *fr)
{
    pmt_st_report *r = s->r;
    size_t n = s->n_stacks;
    uint32_t *order = malloc((n + 1) * sizeof(uint32_t));
    uint32_t *pos = malloc((n + 1) * sizeof(uint32_t));
    r->stacks = calloc(n + 1, sizeof(pmt_st_stack));
    r->cells = calloc(s->cells.len + 1, sizeof(pmt_st_cell));
    int rc = -1;
    if (!order || !pos || !r->stacks || !r->cells) {
        goto done;
    }
    for (size_t i = 0; i < n; i++) {
        stack_acc *a = &s->stacks[i];
        a->frame = pmt_frames_of(fr, a->id, a->line);
        if (a->frame == PMT_ST_NONE) {
            goto done;
        }
        order[i] = (uint32_t)i;
    }
    qsort_r(order, n, sizeof(uint32_t), cmp_stack, s->stacks);
    for (size_t i = 0; i < n; i++) {
        const stack_acc *a = &s->stacks[order[i]];
        pos[order[i]] = (uint32_t)i;
        r->stacks[i] = (pmt_st_stack){
            .frame = a->frame, .thread = a->thread,
            .alloc_bytes = a->alloc_bytes, .alloc_count = a->alloc_count,
            .peak_bytes = a->peak_bytes, .peak_count = a->peak_count,
            .end_bytes = a->end_bytes, .end_count = a->end_count};
    }
    r->n_stacks = n;
    size_t at = 0;
    for (const pmt_st_cell *c; (c = pmt_ht_next(&s->cells, &at)) != NULL;) {
        pmt_st_cell *o = &r->cells[r->n_cells++];
        *o = *c;
        o->stack = pos[c->stack];
    }
    qsort(r->cells, r->n_cells, sizeof(pmt_st_cell), cmp_cell);
    rc = 0;
done:
    free(order);
    free(pos);
    return rc;
}

int
pmt_st_finish(st_ctx *s)
{
    pmt_st_report *r = s->r;
    pmt_frames fr;
    int rc = -1;
    uint32_t *names = NULL;
    if (pmt_frames_init(&fr, &s->cap) < 0 || make_stacks(s, &fr) < 0) {
        goto done;
    }
    r->n_funcs = fr.n_funcs;
    r->funcs = calloc(fr.n_funcs + 1, sizeof(pmt_st_func));
    names = calloc(s->n_threads + 1, sizeof(uint32_t));
    if (!r->funcs || !names) {
        goto done;
    }
    for (size_t i = 0; i < s->n_threads; i++) {
        const char *name;
        pmt_capture_thread_id(&s->cap, (uint32_t)i, &name);
        int64_t o = pmt_strpool_intern(&s->cap.strs, name, strlen(name));
        if (o < 0) {
            goto done;
        }
        names[i] = (uint32_t)o;
    }
    /* the strings no longer move: the report owns them */
    size_t slen;
    r->strings = pmt_strpool_release(&s->cap.strs, &slen);
    if (!r->strings) {
        goto done;
    }
    for (size_t i = 0; i < fr.n_funcs; i++) {
        r->funcs[i].file = r->strings + fr.funcs[i].file;
        r->funcs[i].name = r->strings + fr.funcs[i].name;
    }
    r->frames = fr.frames;
    r->n_frames = fr.n_frames;
    fr.frames = NULL;
    for (size_t i = 0; i < s->n_threads; i++) {
        s->threads[i].name = r->strings + names[i];
    }
    r->threads = s->threads;
    r->n_threads = s->n_threads;
    s->threads = NULL;
    rc = pmt_st_sum_functions(r);
done:
    free(names);
    pmt_frames_free(&fr);
    return rc;
}
