/* capture_aggregate_report.c: the accumulators of a replay (see
 * capture_aggregate_impl.h) turned into the report: sites sorted, native
 * sites symbolised, the largest allocations pointing at sorted sites. */
#define _GNU_SOURCE 1
#include <stdlib.h>
#include <string.h>

#include "capture_aggregate_impl.h"
#include "elfsym.h"

/* ---- the report: sorted sites, the largest allocations --------------------- */

static int
cmp_site(const void *a, const void *b)
{
    const pmt_mc_site *x = a, *y = b;
    if (x->bytes != y->bytes) {
        return x->bytes < y->bytes ? 1 : -1;
    }
    if (x->count != y->count) {
        return x->count < y->count ? 1 : -1;
    }
    if (x->line != y->line) {
        return x->line < y->line ? -1 : 1;
    }
    /* while sorting, addr holds the original index: ties keep their order */
    return x->addr < y->addr ? -1 : x->addr > y->addr;
}

static int
cmp_big(const void *a, const void *b)
{
    const pmt_mc_big *x = a, *y = b;
    if (x->size != y->size) {
        return x->size < y->size ? 1 : -1;
    }
    return x->seq < y->seq ? -1 : x->seq > y->seq;
}

static void
copy_totals(pmt_mc_site *o, const site_acc *s)
{
    o->bytes = s->bytes;
    o->count = s->count;
    o->malloc_bytes = s->malloc_bytes;
    o->malloc_count = s->malloc_count;
    o->mmap_bytes = s->mmap_bytes;
    o->mmap_count = s->mmap_count;
    o->live_bytes = s->live_bytes;
    o->live_count = s->live_count;
}

/* Native sites: module path, offset in it and symbol (string offsets until
 * the pool is handed to the report). */
static int
symbolize(aggregator *ag, uint32_t *sym, uint32_t *mod, uint64_t *off)
{
    pmt_strpool *strs = &ag->cap.strs;
    int64_t empty = pmt_strpool_intern(strs, "", 0);
    int64_t unknown_mod = pmt_strpool_intern(strs, "?", 1);
    if (empty < 0 || unknown_mod < 0) {
        return -1;
    }
    pmt_elfsym_cache *cache = pmt_elfsym_cache_new();
    for (size_t i = 0; i < ag->nat.len; i++) {
        const site_acc *s = &ag->nat.v[i];
        const pmt_cap_module *m = pmt_capture_module_of(&ag->cap, s->addr);
        sym[i] = (uint32_t)empty;
        mod[i] = (uint32_t)unknown_mod;
        off[i] = s->addr;
        if (!m) {
            continue;
        }
        mod[i] = m->path;
        off[i] = s->addr - m->bias;
        char name[256];
        /* the return address points after the call: look up addr - 1 */
        if (cache && pmt_elfsym_lookup(cache, pmt_strpool_at(strs, m->path), off[i] - 1, name,
                                       sizeof(name)) == 0) {
            int64_t so = pmt_strpool_intern(strs, name, strlen(name));
            if (so < 0) {
                pmt_elfsym_cache_free(cache);
                return -1;
            }
            sym[i] = (uint32_t)so;
        }
    }
    pmt_elfsym_cache_free(cache);
    return 0;
}

/* Sort v[0..n) by cmp_site; pos[i] = where the site first at i went. */
static int
sort_sites(pmt_mc_site *v, size_t n, uint32_t *pos)
{
    /* addr carries the original index through the sort for python sites;
     * native sites need addr, so sort a copy keyed the same way */
    uint64_t *keep = malloc((n + 1) * sizeof(uint64_t));
    if (!keep) {
        return -1;
    }
    for (size_t i = 0; i < n; i++) {
        keep[i] = v[i].addr;
        v[i].addr = i;
    }
    qsort(v, n, sizeof(pmt_mc_site), cmp_site);
    for (size_t i = 0; i < n; i++) {
        pos[v[i].addr] = (uint32_t)i;
        v[i].addr = keep[v[i].addr];
    }
    free(keep);
    return 0;
}

/* Turn the accumulators into the report's site arrays (sorted; big[] refers
 * to sites by their index after sorting). */
int
pmt_agg_finish(aggregator *ag)
{
    pmt_mc_report *r = ag->r;
    size_t npy = ag->py.len, nnat = ag->nat.len;
    uint32_t *nat_sym = calloc(nnat + 1, sizeof(uint32_t));
    uint32_t *nat_mod = calloc(nnat + 1, sizeof(uint32_t));
    uint64_t *nat_off = calloc(nnat + 1, sizeof(uint64_t));
    uint32_t *py_pos = calloc(npy + 1, sizeof(uint32_t));
    uint32_t *nat_pos = calloc(nnat + 1, sizeof(uint32_t));
    r->py_sites = calloc(npy + 1, sizeof(pmt_mc_site));
    r->native_sites = calloc(nnat + 1, sizeof(pmt_mc_site));
    int rc = -1;
    if (!nat_sym || !nat_mod || !nat_off || !py_pos || !nat_pos || !r->py_sites ||
        !r->native_sites || symbolize(ag, nat_sym, nat_mod, nat_off) < 0) {
        goto done;
    }
    /* From here the strings no longer move: the report owns them. */
    r->strings = pmt_strpool_release(&ag->cap.strs, &r->strings_len);
    r->strings_cap = r->strings_len;
    for (size_t i = 0; i < npy; i++) {
        const site_acc *s = &ag->py.v[i];
        pmt_mc_site *o = &r->py_sites[i];
        o->file = r->strings + s->file;
        o->function = r->strings + s->name;
        o->line = s->line;
        copy_totals(o, s);
    }
    for (size_t i = 0; i < nnat; i++) {
        pmt_mc_site *o = &r->native_sites[i];
        o->file = r->strings + nat_mod[i];
        o->function = r->strings + nat_sym[i];
        o->line = -1;
        o->addr = ag->nat.v[i].addr;
        o->offset = nat_off[i];
        copy_totals(o, &ag->nat.v[i]);
    }
    r->n_py_sites = npy;
    r->n_native_sites = nnat;
    if (sort_sites(r->py_sites, npy, py_pos) < 0 ||
        sort_sites(r->native_sites, nnat, nat_pos) < 0) {
        goto done;
    }
    for (size_t i = 0; i < ag->n_big; i++) {
        r->big[i] = ag->big[i];
        r->big[i].py_site = py_pos[ag->big[i].py_site];
        r->big[i].native_site = ag->big[i].native_site == NO_SITE
                                    ? UINT32_MAX
                                    : nat_pos[ag->big[i].native_site];
    }
    r->n_big = ag->n_big;
    qsort(r->big, r->n_big, sizeof(pmt_mc_big), cmp_big);
    rc = 0;
done:
    free(nat_sym);
    free(nat_mod);
    free(nat_off);
    free(py_pos);
    free(nat_pos);
    return rc < 0 ? fail(r, "out of memory") : 0;
}
