/* capture_stacks.c: a capture aggregated by whole stack (see
 * capture_stacks.h).  The first replay follows the heap (live blocks by
 * address, live mappings by range) to find the high-water mark and sample
 * the heap over the events; the second replays to the end of the range,
 * taking the live blocks made in the range at the high-water mark and at the
 * end, charged to their stacks.  An aggregated capture's numbers come from
 * its checkpoint instead (capture_stacks_checkpoint.c); the accumulators
 * become the report in capture_stacks_report.c. */
#define _GNU_SOURCE 1
#include "capture_stacks_impl.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "capture_timeline.h"
#include "grow.h"

static int
fail(pmt_st_report *r, const char *what)
{
    snprintf(r->error, sizeof(r->error), "%s", what);
    return -1;
}

/* ---- stacks: accumulators in a vector, found by (id, line, thread) ------- */

static uint64_t
stack_hash(const void *key, void *ctx)
{
    (void)ctx;
    const stack_key *k = key;
    return pmt_ht_hash_u64((uint64_t)k->id << 32 ^ (uint64_t)k->thread << 16 ^
                           (uint32_t)k->line);
}

static int
stack_eq(const void *key, const void *entry, void *ctx)
{
    (void)ctx;
    const stack_key *k = key, *e = entry;
    return k->id == e->id && k->line == e->line && k->thread == e->thread;
}

uint32_t
pmt_st_stack_get(st_ctx *s, uint32_t id, int32_t line, uint32_t thread)
{
    stack_key k = {id, thread, line, 0};
    int created;
    stack_key *e = pmt_ht_insert(&s->stack_ix, &k, &created);
    if (!e) {
        return PMT_ST_NONE;
    }
    if (created) {
        if (s->n_stacks >= PMT_ST_NONE - 1 ||
            pmt_grow((void **)&s->stacks, &s->stacks_cap, s->n_stacks + 1,
                     sizeof(stack_acc)) < 0) {
            pmt_ht_remove(&s->stack_ix, e);
            return PMT_ST_NONE;
        }
        s->stacks[s->n_stacks] = (stack_acc){.id = id, .thread = thread, .line = line};
        k.index = (uint32_t)s->n_stacks++;
        *e = k;
    }
    return e->index;
}

static pmt_st_cell *
cell_get(st_ctx *s, uint32_t stack, uint64_t at)
{
    uint32_t slice = (uint32_t)((at - s->lo) * s->r->slices / (s->hi - s->lo));
    struct {
        uint32_t stack, slice;  /* the first 8 bytes of a pmt_st_cell: its key */
    } k = {stack, slice};
    int created;
    pmt_st_cell *c = pmt_ht_insert(&s->cells, &k, &created);
    if (c && created) {
        c->stack = stack;
        c->slice = slice;
    }
    return c;
}

static unsigned
size_class(uint64_t size)
{
    return size <= 1 ? 0 : (unsigned)(64 - __builtin_clzll(size - 1));
}

pmt_st_thread *
pmt_st_thread_at(st_ctx *s, uint32_t t)
{
    if (t >= s->n_threads) {
        if (t > (1u << 24) ||
            pmt_grow((void **)&s->threads, &s->threads_cap, (size_t)t + 1,
                     sizeof(pmt_st_thread)) < 0) {
            return NULL;
        }
        for (size_t i = s->n_threads; i <= t; i++) {
            const char *name;
            uint64_t id = pmt_capture_thread_id(&s->cap, (uint32_t)i, &name);
            s->threads[i] = (pmt_st_thread){.id = id, .name = NULL};
        }
        s->n_threads = (size_t)t + 1;
    }
    return &s->threads[t];
}

/* The stack an allocation at position i is charged to (PMT_ST_NONE: none),
 * with the range's totals; -1 when out of memory. */
static int
charge(st_ctx *s, const pmt_mc_record *h, unsigned kind, uint64_t i, uint32_t *stack)
{
    *stack = PMT_ST_NONE;
    if (i < s->lo) {
        return 0;
    }
    uint32_t t = pmt_capture_event_thread(&s->cap, h);
    pmt_st_thread *th = pmt_st_thread_at(s, t);
    if (!th) {
        return -1;
    }
    th->alloc_bytes += h->b;
    th->alloc_count++;
    if (s->o->thread != PMT_ST_ALL_THREADS && th->id != s->o->thread) {
        return 0;
    }
    uint32_t k = pmt_st_stack_get(s, h->code, h->code == 0 ? 0 : h->line, t);
    if (k == PMT_ST_NONE) {
        return -1;
    }
    pmt_st_report *r = s->r;
    s->stacks[k].alloc_bytes += h->b;
    s->stacks[k].alloc_count++;
    r->alloc_bytes += h->b;
    r->alloc_count++;
    r->sizes[size_class(h->b)].count++;
    r->sizes[size_class(h->b)].bytes += h->b;
    r->kinds[kind].count++;
    r->kinds[kind].bytes += h->b;
    if (r->slices) {
        pmt_st_cell *c = cell_get(s, k, i);
        if (!c) {
            return -1;
        }
        c->alloc_bytes += h->b;
        c->alloc_count++;
    }
    *stack = k;
    return 0;
}

/* The first replay's mark of an allocation at position i: 0 (a stack index
 * that replay never reads) when it is made in the range by the selected
 * thread, else PMT_ST_NONE; -1 when out of memory. */
static int
mark(st_ctx *s, const pmt_mc_record *h, uint64_t i, uint32_t *k)
{
    *k = PMT_ST_NONE;
    if (s->o->thread == PMT_ST_ALL_THREADS || i < s->lo) {
        return 0;
    }
    pmt_st_thread *th = pmt_st_thread_at(s, pmt_capture_event_thread(&s->cap, h));
    if (!th) {
        return -1;
    }
    *k = th->id == s->o->thread ? 0 : PMT_ST_NONE;
    return 0;
}

_Static_assert(PMT_ST_NONE == PMT_REGION_NO_PY, "a mapping's py is its stack");

/* One event at position i: the heap follows it, and s->sel the blocks
 * charged (marked); in the second replay (stacks) allocations are charged.
 * -1 when out of memory. */
static int
step(st_ctx *s, const pmt_mc_record *e, uint64_t i, int stacks)
{
    pmt_mc_record h = *e;
    unsigned kind = (unsigned)(h.seq_kind & 0xff);
    if ((pmt_mc_is_alloc(kind) || kind == PMT_MC_MUNMAP) && h.b > PMT_ST_MAX_SIZE) {
        s->r->impossible += !stacks;    /* counted once, in the first replay */
        return 0;
    }
    uint64_t gone, gone_sel;
    uint32_t k = PMT_ST_NONE;
    if (kind == PMT_MC_MMAP || kind == PMT_MC_MUNMAP) {
        if (pmt_regionset_release_py(&s->maps, h.a, h.b, &gone, &gone_sel) < 0) {
            return -1;
        }
        s->cur -= gone;
        s->sel -= gone_sel;
        if (kind == PMT_MC_MUNMAP) {
            return 0;
        }
        if ((stacks ? charge(s, &h, kind, i, &k) : mark(s, &h, i, &k)) < 0) {
            return -1;
        }
        pmt_region g = {.start = h.a, .len = h.b, .seq = i, .py = k, .nat = 0};
        if (pmt_regionset_add(&s->maps, &g) < 0) {
            return -1;
        }
        s->cur += h.b;
        s->sel += k != PMT_ST_NONE ? h.b : 0;
    }
    else if (pmt_mc_is_alloc(kind)) {
        int created;
        live_block *b = pmt_ht_insert(&s->live, &h.a, &created);
        if (!b) {
            return -1;
        }
        if (!created) {
            s->cur -= b->size;      /* its release was lost: released now */
            s->sel -= b->stack != PMT_ST_NONE ? b->size : 0;
        }
        if ((stacks ? charge(s, &h, kind, i, &k) : mark(s, &h, i, &k)) < 0) {
            return -1;
        }
        *b = (live_block){.addr = h.a, .size = h.b, .at = i, .stack = k};
        s->cur += h.b;
        s->sel += k != PMT_ST_NONE ? h.b : 0;
    }
    else {
        live_block *b = pmt_ht_find(&s->live, &h.a);
        if (b) {
            s->cur -= b->size;
            s->sel -= b->stack != PMT_ST_NONE ? b->size : 0;
            pmt_ht_remove(&s->live, b);
        }
    }
    return 0;
}

/* Charge what is live now to its stacks: at the peak (end = 0) or at the
 * end of the range (end = 1). */
static int
snapshot(st_ctx *s, int end)
{
    pmt_st_report *r = s->r;
    size_t pos = 0;
    size_t nmaps = s->maps.len;
    const live_block *b = pmt_ht_next(&s->live, &pos);
    for (size_t m = 0; b || m < nmaps;) {
        uint32_t k;
        uint64_t size, at;
        if (b) {
            k = b->stack;
            size = b->size;
            at = b->at;
            b = pmt_ht_next(&s->live, &pos);
        }
        else {
            k = s->maps.v[m].py;
            size = s->maps.v[m].len;
            at = s->maps.v[m].seq;
            m++;
        }
        if (k == PMT_ST_NONE) {
            continue;
        }
        stack_acc *a = &s->stacks[k];
        if (end) {
            a->end_bytes += size;
            a->end_count++;
            r->end_bytes += size;
            r->end_count++;
            if (r->slices) {
                pmt_st_cell *c = cell_get(s, k, at);
                if (!c) {
                    return -1;
                }
                c->end_bytes += size;
            }
        }
        else {
            a->peak_bytes += size;
            a->peak_count++;
            r->peak_live_bytes += size;
            r->peak_live_count++;
        }
    }
    return 0;
}

static void
reset_heap(st_ctx *s)
{
    pmt_ht_free(&s->live);
    pmt_ht_init(&s->live, sizeof(live_block), pmt_ht_u64_hash, pmt_ht_u64_eq, NULL);
    pmt_regionset_free(&s->maps);
    memset(&s->maps, 0, sizeof(s->maps));
    s->cur = s->sel = 0;
}

/* First replay: every event; the peak within [lo, hi), the heap samples. */
static int
follow_heap(st_ctx *s)
{
    pmt_st_report *r = s->r;
    uint64_t n = r->events;
    pmt_tl_sampler sp = {.n = n, .end_ns = n ? pmt_tl_max_ns(&s->cap) : 0};
    uint64_t np = sp.end_ns || s->o->points < n ? s->o->points : n;
    np = np > PMT_ST_MAX_POINTS ? PMT_ST_MAX_POINTS : n ? np : 0;
    if (np && !(r->points = calloc(np, sizeof(pmt_st_point)))) {
        return -1;
    }
    r->n_points = sp.np = np;
    sp.p_end = np ? n / np : 0;
    r->peak_event = r->live_peak_event = s->lo;
    uint64_t sel_peak = 0;      /* nothing is marked before lo */
    pmt_capture_iter it;
    pmt_mc_record e;
    pmt_tl_clock w = {0, 0, 0, 0};
    if (pmt_capture_iter_open(&it, &s->cap) < 0) {
        return -1;
    }
    for (uint64_t i = 0; i < n; i++) {
        if (np) {
            pmt_tl_sample_before(&s->cap, r, &sp, &w, i, s->cur);
        }
        pmt_tl_clock_to(&s->cap, r, &w, i);
        if (i == s->lo) {
            r->peak_bytes = s->cur;
            r->peak_ns = r->lo_ns = r->live_peak_ns = w.ns;
        }
        if (pmt_capture_iter_next(&it, &e) != 1 || step(s, &e, i, 0) < 0) {
            pmt_capture_iter_close(&it);
            return -1;
        }
        if (i >= s->lo && i < s->hi && s->cur > r->peak_bytes) {
            r->peak_bytes = s->cur;
            r->peak_event = i + 1;
            r->peak_ns = w.ns;
        }
        if (i >= s->lo && i < s->hi && s->sel > sel_peak) {     /* the selected thread's */
            sel_peak = s->sel;
            r->live_peak_event = i + 1;
            r->live_peak_ns = w.ns;
        }
        if (i + 1 == s->hi) {
            r->end_heap = s->cur;
            r->hi_ns = w.ns;
        }
        if (np && sp.p < np) {
            pmt_tl_sample_after(r, &sp, &w, i, s->cur);
        }
    }
    pmt_capture_iter_close(&it);
    pmt_tl_clock_to(&s->cap, r, &w, n);
    while (sp.p < np) {
        pmt_tl_close_point(r, &sp, &w, n, s->cur);
    }
    r->end_ns = w.ns;
    if (s->lo == n) {
        r->peak_bytes = r->end_heap = s->cur;
        r->peak_ns = r->lo_ns = r->live_peak_ns = w.ns;
    }
    r->live_peak_of_thread = s->o->thread != PMT_ST_ALL_THREADS;
    if (!r->live_peak_of_thread) {
        r->live_peak_event = r->peak_event;
        r->live_peak_ns = r->peak_ns;
    }
    if (s->hi == n) {
        r->hi_ns = w.ns;
    }
    return 0;
}

/* Second replay: up to the end of the range, charging stacks. */
static int
charge_stacks(st_ctx *s)
{
    pmt_st_report *r = s->r;
    reset_heap(s);
    if (r->live_peak_event == 0 && snapshot(s, 0) < 0) {
        return -1;
    }
    pmt_capture_iter it;
    pmt_mc_record e;
    if (pmt_capture_iter_open(&it, &s->cap) < 0) {
        return -1;
    }
    int rc = 0;
    for (uint64_t i = 0; i < s->hi && rc == 0; i++) {
        if (pmt_capture_iter_next(&it, &e) != 1 || step(s, &e, i, 1) < 0 ||
            (i + 1 == r->live_peak_event && snapshot(s, 0) < 0)) {
            rc = -1;
        }
    }
    pmt_capture_iter_close(&it);
    return rc < 0 ? -1 : snapshot(s, 1);
}

static int
read_capture(const uint8_t *data, size_t len, int mapped, const pmt_st_options *o,
             pmt_st_report *r)
{
    memset(r, 0, sizeof(*r));
    st_ctx *s = calloc(1, sizeof(*s));
    if (!s) {
        return fail(r, "out of memory");
    }
    s->o = o;
    s->r = r;
    pmt_ht_init(&s->stack_ix, sizeof(stack_key), stack_hash, stack_eq, NULL);
    pmt_ht_init(&s->live, sizeof(live_block), pmt_ht_u64_hash, pmt_ht_u64_eq, NULL);
    pmt_ht_init(&s->cells, sizeof(pmt_st_cell), pmt_ht_u64_hash, pmt_ht_u64_eq, NULL);
    int rc = -1;
    if (pmt_capture_open_mapped(&s->cap, data, len, mapped) < 0) {
        snprintf(r->error, sizeof(r->error), "%s", s->cap.error);
        goto done;
    }
    r->events = s->cap.n_ev;
    r->stacks_recorded = s->cap.stacks;
    if (s->cap.aggregate) {
        int e = pmt_st_from_checkpoint(s);
        if (e < 0 || pmt_st_finish(s) < 0) {
            if (e != -2) {
                fail(r, "out of memory");
            }
            goto done;
        }
        rc = 0;
        goto done;
    }
    r->has_clock = s->cap.n_times > 0;
    uint64_t lo = o->lo, hi = o->hi;
    if (o->by_time) {
        lo = pmt_tl_event_at_ns(&s->cap, o->lo_ns);
        hi = o->hi_ns == UINT64_MAX ? UINT64_MAX : pmt_tl_event_at_ns(&s->cap, o->hi_ns);
    }
    s->hi = hi > r->events ? r->events : hi;
    s->lo = lo > s->hi ? s->hi : lo;
    r->lo = s->lo;
    r->hi = s->hi;
    r->slices = s->hi > s->lo ? (o->slices < PMT_ST_MAX_SLICES ? o->slices : PMT_ST_MAX_SLICES)
                              : 0;
    if (follow_heap(s) < 0 || charge_stacks(s) < 0 || pmt_st_finish(s) < 0) {
        fail(r, "out of memory");
        goto done;
    }
    rc = 0;
done:
    pmt_capture_close(&s->cap);
    free(s->stacks);
    free(s->threads);
    pmt_ht_free(&s->stack_ix);
    pmt_ht_free(&s->live);
    pmt_ht_free(&s->cells);
    pmt_regionset_free(&s->maps);
    free(s);
    return rc;
}

int
pmt_st_read_buffer(const uint8_t *data, size_t len, const pmt_st_options *o, pmt_st_report *r)
{
    return read_capture(data, len, 0, o, r);
}

int
pmt_st_read(const char *path, const pmt_st_options *o, pmt_st_report *r)
{
    memset(r, 0, sizeof(*r));
    pmt_capture_file f;
    if (pmt_capture_file_load(path, &f, r->error, sizeof(r->error)) < 0) {
        return -1;
    }
    int rc = read_capture(f.data, f.len, f.mapped, o, r);
    pmt_capture_file_unload(&f);
    return rc;
}

void
pmt_st_report_free(pmt_st_report *r)
{
    free(r->funcs);
    free(r->frames);
    free(r->stacks);
    free(r->threads);
    free(r->points);
    free(r->cells);
    free(r->strings);
    memset(r, 0, sizeof(*r));
}
