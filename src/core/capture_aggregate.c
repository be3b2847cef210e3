/* capture_aggregate.c: replay a capture's events in order into a report
 * (see capture_aggregate.h).  The reading is capture_read.c's, the order
 * capture_merge.c's. */
#define _GNU_SOURCE 1
#include "capture_aggregate.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "capture_aggregate_impl.h"
#include "capture_checkpoint.h"
#include "capture_read.h"
#include "elfsym.h"
#include "grow.h"
#include "hashtab.h"
#include "regionset.h"

static uint64_t
site_hash(const void *key, void *ctx)
{
    (void)ctx;
    const site_key *k = key;
    return pmt_ht_hash_u64(k->ka ^ pmt_ht_hash_u64(k->kb));
}

static int
site_eq(const void *key, const void *entry, void *ctx)
{
    (void)ctx;
    const site_key *k = key, *e = entry;
    return k->ka == e->ka && k->kb == e->kb;
}

/* Index of the site with this key (created zeroed if new), or NO_SITE. */
static uint32_t
site_get(siteset *s, uint64_t ka, uint64_t kb, int *created)
{
    site_key k = {ka, kb, 0};
    site_key *e = pmt_ht_insert(&s->index, &k, created);
    if (!e) {
        return NO_SITE;
    }
    if (*created) {
        if (s->len >= NO_SITE - 1 ||
            pmt_grow((void **)&s->v, &s->cap, s->len + 1, sizeof(site_acc)) < 0) {
            pmt_ht_remove(&s->index, e);
            return NO_SITE;
        }
        memset(&s->v[s->len], 0, sizeof(site_acc));
        e->ka = ka;
        e->kb = kb;
        e->index = (uint32_t)s->len++;
    }
    return e->index;
}


static uint32_t
py_site_of(aggregator *ag, const pmt_mc_record *h)
{
    uint32_t file, name;
    int32_t line = h->line;
    uint32_t id = pmt_capture_event_code(&ag->cap, h);
    /* consecutive events mostly come from one code object: remember the last
     * (the table of codes does not change during the replay) */
    if (id != ag->last_code_id) {
        ag->last_code_id = id;
        ag->last_code = pmt_capture_code(&ag->cap, id);
    }
    const pmt_cap_code *code = ag->last_code;
    if (id == 0) {
        file = ag->no_frame_file;
        name = ag->no_frame_name;
        line = 0;
    }
    else if (code) {
        file = code->file;
        name = code->name;
    }
    else {
        file = ag->unknown_name;
        name = ag->unknown_name;
    }
    int created;
    uint32_t s = site_get(&ag->py, (uint64_t)file << 32 | name, (uint64_t)(uint32_t)line,
                          &created);
    if (s != NO_SITE && created) {
        ag->py.v[s].file = file;
        ag->py.v[s].name = name;
        ag->py.v[s].line = line;
    }
    return s;
}

static uint32_t
native_site_of(aggregator *ag, const pmt_mc_record *h)
{
    if (ag->cap.rs < PMT_MC_RECORD_NATIVE) {
        return NO_SITE;
    }
    int created;
    uint32_t s = site_get(&ag->nat, h->native, 0, &created);
    if (s != NO_SITE && created) {
        ag->nat.v[s].addr = h->native;
        ag->nat.v[s].line = -1;
    }
    return s;
}

static void
note_big(aggregator *ag, uint64_t size, uint64_t seq, uint64_t addr, unsigned kind,
         uint32_t py, uint32_t nat)
{
    size_t at;
    if (ag->n_big < PMT_MC_NBIG) {
        at = ag->n_big++;
    }
    else if (size <= ag->big[ag->big_min].size) {
        return;     /* the common case: not among the largest */
    }
    else {
        at = ag->big_min;
    }
    ag->big[at] = (pmt_mc_big){.size = size, .seq = seq, .kind = kind, .freed = 1,
                               .py_site = py, .native_site = nat};
    ag->big_addr[at] = addr;
    if (ag->n_big == PMT_MC_NBIG) {
        ag->big_min = 0;
        for (size_t i = 1; i < PMT_MC_NBIG; i++) {
            if (ag->big[i].size < ag->big[ag->big_min].size) {
                ag->big_min = i;
            }
        }
    }
}

static void
account(site_acc *s, uint64_t size, int is_mmap)
{
    s->bytes += size;
    s->count++;
    if (is_mmap) {
        s->mmap_bytes += size;
        s->mmap_count++;
    }
    else {
        s->malloc_bytes += size;
        s->malloc_count++;
    }
}

static void
add_live(aggregator *ag, uint32_t py, uint32_t nat, uint64_t size)
{
    ag->py.v[py].live_bytes += size;
    ag->py.v[py].live_count++;
    if (nat != NO_SITE) {
        ag->nat.v[nat].live_bytes += size;
        ag->nat.v[nat].live_count++;
    }
}

/* Replay the events in order (it: the iterator, closed by the caller). */
static int
replay_events(aggregator *ag, pmt_capture_iter *it)
{
    pmt_mc_report *r = ag->r;
    uint64_t cur = 0, cur_malloc = 0, cur_mmap = 0;
    pmt_mc_record h;
    int got;
    uint64_t first = 0, last = 0;
    while ((got = pmt_capture_iter_next(it, &h)) == 1) {
        unsigned kind = (unsigned)(h.seq_kind & 0xff);
        uint64_t seq = h.seq_kind >> 8;
        first = r->events++ ? first : seq;
        last = seq;
        if (kind == PMT_MC_MMAP) {
            uint64_t gone;
            if (pmt_regionset_release(&ag->maps, h.a, h.b, &gone) < 0) {
                return fail(r, "out of memory");
            }
            cur -= gone;
            cur_mmap -= gone;
            pmt_region g = {.start = h.a, .len = h.b, .seq = seq,
                        .py = py_site_of(ag, &h), .nat = native_site_of(ag, &h)};
            if (g.py == NO_SITE || pmt_regionset_add(&ag->maps, &g) < 0) {
                return fail(r, "out of memory");
            }
            account(&ag->py.v[g.py], h.b, 1);
            if (g.nat != NO_SITE) {
                account(&ag->nat.v[g.nat], h.b, 1);
            }
            r->mmap_bytes += h.b;
            r->mmap_count++;
            cur += h.b;
            cur_mmap += h.b;
            note_big(ag, h.b, seq, h.a, kind, g.py, g.nat);
        }
        else if (pmt_mc_is_alloc(kind)) {
            int created;
            live_block *b = pmt_ht_insert(&ag->live, &h.a, &created);
            if (!b) {
                return fail(r, "out of memory");
            }
            if (!created) {
                /* its release was lost: count it released now */
                cur -= b->size;
                cur_malloc -= b->size;
            }
            b->addr = h.a;
            b->size = h.b;
            b->seq = seq;
            b->kind = kind;
            b->py = py_site_of(ag, &h);
            b->nat = native_site_of(ag, &h);
            if (b->py == NO_SITE) {
                return fail(r, "out of memory");
            }
            account(&ag->py.v[b->py], h.b, 0);
            if (b->nat != NO_SITE) {
                account(&ag->nat.v[b->nat], h.b, 0);
            }
            r->malloc_bytes += h.b;
            r->malloc_count++;
            cur += h.b;
            cur_malloc += h.b;
            note_big(ag, h.b, seq, h.a, kind, b->py, b->nat);
        }
        else if (kind == PMT_MC_MUNMAP) {
            uint64_t gone;
            if (pmt_regionset_release(&ag->maps, h.a, h.b, &gone) < 0) {
                return fail(r, "out of memory");
            }
            cur -= gone;
            cur_mmap -= gone;
        }
        else {
            live_block *b = pmt_ht_find(&ag->live, &h.a);
            if (!b) {
                r->unknown_frees++;
                continue;
            }
            cur -= b->size;
            cur_malloc -= b->size;
            pmt_ht_remove(&ag->live, b);
        }
        if (cur > r->peak_bytes) {
            r->peak_bytes = cur;
        }
        if (cur_malloc > r->peak_malloc_bytes) {
            r->peak_malloc_bytes = cur_malloc;
        }
        if (cur_mmap > r->peak_mmap_bytes) {
            r->peak_mmap_bytes = cur_mmap;
        }
    }
    if (got < 0) {
        return fail(r, "out of memory");
    }
    /* the numbers never seen (counted here: the capture was opened without
     * its counting pass) */
    r->seq_gaps = r->events ? last - first + 1 - r->events : 0;
    r->total_bytes = r->malloc_bytes + r->mmap_bytes;
    r->total_count = r->malloc_count + r->mmap_count;
    /* what is still live: leak candidates */
    size_t pos = 0;
    for (live_block *b; (b = pmt_ht_next(&ag->live, &pos)) != NULL;) {
        add_live(ag, b->py, b->nat, b->size);
        r->live_malloc_bytes += b->size;
        r->live_count++;
    }
    for (size_t i = 0; i < ag->maps.len; i++) {
        const pmt_region *g = &ag->maps.v[i];
        add_live(ag, g->py, g->nat, g->len);
        r->live_mmap_bytes += g->len;
        r->live_count++;
    }
    r->live_bytes = r->live_malloc_bytes + r->live_mmap_bytes;
    for (size_t i = 0; i < ag->n_big; i++) {
        uint64_t a = ag->big_addr[i];
        if (ag->big[i].kind == PMT_MC_MMAP) {
            size_t k = pmt_regionset_lower(&ag->maps, a);
            ag->big[i].freed = !(k < ag->maps.len && ag->maps.v[k].seq == ag->big[i].seq);
        }
        else {
            const live_block *b = pmt_ht_find(&ag->live, &a);
            ag->big[i].freed = !(b && b->seq == ag->big[i].seq);
        }
    }
    return 0;
}

static int
replay(aggregator *ag)
{
    pmt_capture_iter it;
    if (pmt_capture_iter_open(&it, &ag->cap) < 0) {
        return fail(ag->r, "out of memory");
    }
    int rc = replay_events(ag, &it);
    pmt_capture_iter_close(&it);
    return rc;
}

/* An aggregated capture: the sites from its checkpoint's stacks (each
 * charged to its innermost Python line); no largest allocations. */
static int
from_checkpoint(aggregator *ag)
{
    pmt_mc_report *r = ag->r;
    pmt_ckpt k;
    if (pmt_ckpt_find(&ag->cap, &k, r->error, sizeof(r->error)) < 0) {
        return -1;
    }
    r->aggregate = 1;
    r->ckpt_final = k.head.final != 0;
    r->ckpt_older = k.older;
    r->ckpt_seq = k.head.seq;
    r->ckpt_time_ns = k.head.time_ns;
    r->dropped += k.head.dropped;
    r->events = k.head.events;
    r->unknown_frees = k.head.unknown;
    r->peak_bytes = k.head.peak;
    r->mmap_bytes = k.kinds[PMT_MC_MMAP].bytes;
    r->mmap_count = k.kinds[PMT_MC_MMAP].count;
    for (unsigned i = PMT_MC_MALLOC; i < PMT_MC_MMAP; i++) {
        r->malloc_bytes += k.kinds[i].bytes;
        r->malloc_count += k.kinds[i].count;
    }
    r->total_bytes = r->malloc_bytes + r->mmap_bytes;
    r->total_count = r->malloc_count + r->mmap_count;
    for (uint64_t i = 0; i < k.head.n_stacks; i++) {
        const pmt_mc_ckpt_stack *c = &k.stacks[i];
        pmt_mc_record h = {.code = c->node, .line = pmt_ckpt_node_line(&ag->cap, c->node)};
        if (h.line < 0) {   /* a native innermost frame: its Python caller's line */
            const pmt_cap_node *n = pmt_capture_node(&ag->cap, c->node);
            while (n && n->kind == PMT_CAP_NODE_NATIVE && n->parent) {
                n = pmt_capture_node(&ag->cap, n->parent);
            }
            h.line = n && n->kind == PMT_CAP_NODE_PYTHON ? n->line : -1;
        }
        uint32_t site = py_site_of(ag, &h);
        if (site == NO_SITE) {
            return fail(r, "out of memory");
        }
        site_acc *a = &ag->py.v[site];
        a->bytes += c->alloc_bytes;
        a->count += c->alloc_count;
        a->malloc_bytes += c->alloc_bytes;  /* per stack, malloc and mmap are not told apart */
        a->malloc_count += c->alloc_count;
        a->live_bytes += c->live_bytes;
        a->live_count += c->live_count;
        r->live_bytes += c->live_bytes;
        r->live_count += c->live_count;
    }
    r->live_malloc_bytes = r->live_bytes;
    return 0;
}

static int
intern_fixed(aggregator *ag)
{
    int64_t a = pmt_strpool_intern(&ag->cap.strs, "<no Python frame>", 17);
    int64_t b = pmt_strpool_intern(&ag->cap.strs, "", 0);
    int64_t c = pmt_strpool_intern(&ag->cap.strs, "<unknown code>", 14);
    if (a < 0 || b < 0 || c < 0) {
        return fail(ag->r, "out of memory");
    }
    ag->no_frame_file = (uint32_t)a;
    ag->no_frame_name = (uint32_t)b;
    ag->unknown_name = (uint32_t)c;
    return 0;
}

static int
read_capture(const uint8_t *data, size_t len, int mapped, pmt_mc_report *r)
{
    memset(r, 0, sizeof(*r));
    aggregator *ag = calloc(1, sizeof(*ag));
    if (!ag) {
        return fail(r, "out of memory");
    }
    ag->r = r;
    pmt_ht_init(&ag->py.index, sizeof(site_key), site_hash, site_eq, NULL);
    pmt_ht_init(&ag->nat.index, sizeof(site_key), site_hash, site_eq, NULL);
    pmt_ht_init(&ag->live, sizeof(live_block), pmt_ht_u64_hash, pmt_ht_u64_eq, NULL);
    int rc = -1;
    if (pmt_capture_open_mapped(&ag->cap, data, len,
                                (mapped ? PMT_CAP_MAPPED : 0) | PMT_CAP_NO_COUNT) < 0) {
        snprintf(r->error, sizeof(r->error), "%s", ag->cap.error);
        goto done;
    }
    const pmt_mc_header *h = &ag->cap.header;
    r->version = h->version;
    r->flags = h->flags;
    r->pid = h->pid;
    r->ppid = h->ppid;
    r->record_size = h->record_size;
    r->start_ns = h->start_ns;
    r->python_hex = ag->cap.python_hex;
    r->python_status = ag->cap.python_status;
    r->complete = ag->cap.complete;
    r->ended_by_exec = ag->cap.ended_by_exec;
    r->dropped = ag->cap.dropped;
    r->stop_events = ag->cap.stop_events;
    r->stop_errno = ag->cap.stop_errno;
    r->trailing_bytes = ag->cap.trailing_bytes;
    if (intern_fixed(ag) < 0 ||
        (ag->cap.aggregate ? from_checkpoint(ag) : replay(ag)) < 0 || pmt_agg_finish(ag) < 0) {
        goto done;
    }
    rc = 0;
done:
    pmt_capture_close(&ag->cap);
    free(ag->py.v);
    free(ag->nat.v);
    pmt_ht_free(&ag->py.index);
    pmt_ht_free(&ag->nat.index);
    pmt_ht_free(&ag->live);
    pmt_regionset_free(&ag->maps);
    free(ag);
    return rc;
}

int
pmt_mc_read_buffer(const uint8_t *data, size_t len, pmt_mc_report *r)
{
    return read_capture(data, len, 0, r);
}

int
pmt_mc_read(const char *path, pmt_mc_report *r)
{
    memset(r, 0, sizeof(*r));
    pmt_capture_file f;
    if (pmt_capture_file_load(path, &f, r->error, sizeof(r->error)) < 0) {
        return -1;
    }
    int rc = read_capture(f.data, f.len, f.mapped, r);
    pmt_capture_file_unload(&f);
    return rc;
}

void
pmt_mc_report_free(pmt_mc_report *r)
{
    free(r->py_sites);
    free(r->native_sites);
    free(r->strings);
    r->py_sites = NULL;
    r->native_sites = NULL;
    r->strings = NULL;
}
