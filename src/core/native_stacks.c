/* native_stacks.c: a capture's allocations by whole stack (see native_stacks.h). */
#include "native_stacks.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "grow.h"
#include "hashtab.h"
#include "strpool.h"
#include "symbolize.h"

typedef struct {
    uint32_t node;          /* the key: the stack's innermost node */
    uint64_t bytes, count, live_bytes, live_count;
} stack_acc;

typedef struct {
    uint64_t addr;          /* the key */
    uint64_t size;
    uint32_t node;
} live_block;

/* While building, strings are pool offsets (the pool moves as it grows). */
typedef struct {
    uint32_t kind, file, function;
    int32_t line;
    uint64_t addr, offset;
} frame_off;

static uint64_t
hash_u32(const void *key, void *ctx)
{
    (void)ctx;
    uint32_t k;
    memcpy(&k, key, sizeof(k));
    return pmt_ht_hash_u64(k);
}

static int
eq_u32(const void *key, const void *entry, void *ctx)
{
    (void)ctx;
    return memcmp(key, entry, sizeof(uint32_t)) == 0;
}

static uint64_t
hash_u64(const void *key, void *ctx)
{
    (void)ctx;
    uint64_t k;
    memcpy(&k, key, sizeof(k));
    return pmt_ht_hash_u64(k);
}

static int
eq_u64(const void *key, const void *entry, void *ctx)
{
    (void)ctx;
    return memcmp(key, entry, sizeof(uint64_t)) == 0;
}

static int
fail(pmt_ns_report *r, const char *what)
{
    snprintf(r->error, sizeof(r->error), "%s", what);
    return -1;
}

/* Replay the events: bytes by stack, and what is live at the end. */
static int
replay(const pmt_capture *c, pmt_hashtab *stacks, pmt_ns_report *r)
{
    pmt_hashtab live;
    pmt_ht_init(&live, sizeof(live_block), hash_u64, eq_u64, NULL);
    int created, got;
    pmt_capture_iter it;
    pmt_mc_record e;
    if (pmt_capture_iter_open(&it, c) < 0) {
        pmt_ht_free(&live);
        return fail(r, "out of memory");
    }
    while ((got = pmt_capture_iter_next(&it, &e)) == 1) {
        unsigned kind = (unsigned)(e.seq_kind & 0xff);
        if (pmt_mc_is_alloc(kind)) {
            uint32_t node = c->stacks ? e.code : 0;
            stack_acc *s = pmt_ht_insert(stacks, &node, &created);
            live_block *b = s ? pmt_ht_insert(&live, &e.a, &created) : NULL;
            if (!b) {
                got = -1;
                break;
            }
            if (!created) {     /* an address allocated twice: its free was not seen */
                stack_acc *o = pmt_ht_find(stacks, &b->node);
                o->live_bytes -= b->size;
                o->live_count--;
            }
            s->node = node;
            s->bytes += e.b;
            s->count++;
            s->live_bytes += e.b;
            s->live_count++;
            b->addr = e.a;
            b->size = e.b;
            b->node = node;
            r->total_bytes += e.b;
            r->total_count++;
        }
        else if (pmt_mc_is_release(kind)) {
            live_block *b = pmt_ht_find(&live, &e.a);
            if (b) {
                stack_acc *o = pmt_ht_find(stacks, &b->node);
                o->live_bytes -= b->size;
                o->live_count--;
                pmt_ht_remove(&live, b);
            }
        }
    }
    pmt_capture_iter_close(&it);
    pmt_ht_free(&live);
    return got < 0 ? fail(r, "out of memory") : 0;
}

static int
cmp_bytes(const void *a, const void *b)
{
    const stack_acc *x = a, *y = b;
    if (x->bytes != y->bytes) {
        return x->bytes > y->bytes ? -1 : 1;
    }
    if (x->count != y->count) {
        return x->count > y->count ? -1 : 1;
    }
    return x->node < y->node ? -1 : x->node > y->node;
}

static int64_t
intern(pmt_strpool *p, const char *s, size_t n)
{
    return pmt_strpool_intern(p, s, n);
}

/* The frames of the stack ending at node, innermost first. */
static int
frames_of(const pmt_capture *c, pmt_symbolizer *sym, uint32_t node, pmt_strpool *pool,
          frame_off **v, size_t *len, size_t *cap, uint32_t *tid, int64_t *tname)
{
    const pmt_cap_node *n = node ? pmt_capture_node(c, node) : NULL;
    for (unsigned depth = 0; n && depth < 100000; depth++) {
        if (n->kind == PMT_CAP_NODE_THREAD) {
            *tid = n->code;
            const char *nm = pmt_strpool_at(&c->strs, n->name);
            *tname = intern(pool, nm, strlen(nm));
            if (*tname < 0) {
                return -1;
            }
            break;
        }
        if (pmt_grow((void **)v, cap, *len + 1, sizeof(frame_off)) < 0) {
            return -1;
        }
        frame_off *f = &(*v)[(*len)++];
        memset(f, 0, sizeof(*f));
        f->kind = n->kind;
        f->line = -1;
        int64_t fo, no;
        if (n->kind == PMT_CAP_NODE_NATIVE) {
            pmt_sym_frame sf;
            pmt_sym_native(sym, n->addr, &sf);
            fo = intern(pool, sf.module, strlen(sf.module));
            no = intern(pool, sf.symbol ? sf.symbol : "", sf.symbol ? sf.symbol_len : 0);
            f->addr = n->addr;
            f->offset = sf.offset;
        }
        else {
            const pmt_cap_code *code = pmt_capture_code(c, n->code);
            const char *file = code ? pmt_strpool_at(&c->strs, code->file) : "?";
            const char *name = code ? pmt_strpool_at(&c->strs, code->name) : "?";
            fo = intern(pool, file, strlen(file));
            no = intern(pool, name, strlen(name));
            f->line = n->line;
        }
        if (fo < 0 || no < 0) {
            return -1;
        }
        f->file = (uint32_t)fo;
        f->function = (uint32_t)no;
        n = n->parent ? pmt_capture_node(c, n->parent) : NULL;
    }
    return 0;
}

/* Fill r's top stacks from the sorted accumulators. */
static int
materialise(const pmt_capture *c, const stack_acc *v, size_t n, pmt_ns_report *r)
{
    pmt_symbolizer *sym = pmt_sym_new(c);
    pmt_strpool pool;
    pmt_strpool_init(&pool);
    frame_off *fv = NULL;
    size_t flen = 0, fcap = 0;
    int64_t empty = intern(&pool, "", 0);
    r->stacks = calloc(n ? n : 1, sizeof(pmt_ns_stack));
    uint32_t *tnames = calloc(n ? n : 1, sizeof(uint32_t));
    int rc = -1;
    if (!sym || empty < 0 || !r->stacks || !tnames) {
        goto done;
    }
    for (size_t i = 0; i < n; i++) {
        pmt_ns_stack *s = &r->stacks[i];
        s->bytes = v[i].bytes;
        s->count = v[i].count;
        s->live_bytes = v[i].live_bytes;
        s->live_count = v[i].live_count;
        s->first = flen;
        int64_t tname = empty;
        if (frames_of(c, sym, v[i].node, &pool, &fv, &flen, &fcap, &s->thread_id, &tname) < 0) {
            goto done;
        }
        s->n = flen - s->first;
        tnames[i] = (uint32_t)tname;
    }
    r->n_stacks = n;
    r->changed_modules = pmt_sym_changed(sym, NULL);
    const char *first = NULL;
    pmt_sym_changed(sym, &first);
    int64_t first_off = first ? intern(&pool, first, strlen(first)) : empty;
    r->frames = calloc(flen ? flen : 1, sizeof(pmt_ns_frame));
    if (first_off < 0 || !r->frames) {
        goto done;
    }
    size_t slen;
    r->strings = pmt_strpool_release(&pool, &slen);
    if (!r->strings) {
        goto done;
    }
    for (size_t i = 0; i < flen; i++) {
        r->frames[i] = (pmt_ns_frame){fv[i].kind, r->strings + fv[i].file,
                                      r->strings + fv[i].function, fv[i].line, fv[i].addr,
                                      fv[i].offset};
    }
    r->n_frames = flen;
    for (size_t i = 0; i < n; i++) {
        r->stacks[i].thread_name = r->strings + tnames[i];
    }
    r->first_changed = first ? r->strings + first_off : NULL;
    rc = 0;
done:
    if (rc < 0) {
        fail(r, "out of memory");
    }
    pmt_strpool_free(&pool);
    pmt_sym_free(sym);
    free(fv);
    free(tnames);
    return rc;
}

int
pmt_ns_read(const uint8_t *data, size_t len, size_t top, pmt_ns_report *r)
{
    memset(r, 0, sizeof(*r));
    pmt_capture c;
    if (pmt_capture_open(&c, data, len) < 0) {
        snprintf(r->error, sizeof(r->error), "%s", c.error);
        pmt_capture_close(&c);
        return -1;
    }
    r->has_stacks = c.stacks;
    r->native = c.stacks && (c.header.flags & PMT_MC_FLAG_NATIVE);
    pmt_hashtab stacks;
    pmt_ht_init(&stacks, sizeof(stack_acc), hash_u32, eq_u32, NULL);
    stack_acc *v = NULL;
    int rc = replay(&c, &stacks, r);
    if (rc == 0) {
        r->distinct = stacks.len;
        v = malloc((stacks.len ? stacks.len : 1) * sizeof(stack_acc));
        if (!v) {
            rc = fail(r, "out of memory");
        }
    }
    if (rc == 0) {
        size_t pos = 0, k = 0;
        for (stack_acc *s; (s = pmt_ht_next(&stacks, &pos)) != NULL;) {
            v[k++] = *s;
        }
        qsort(v, k, sizeof(stack_acc), cmp_bytes);
        rc = materialise(&c, v, k < top ? k : top, r);
    }
    free(v);
    pmt_ht_free(&stacks);
    pmt_capture_close(&c);
    return rc;
}

void
pmt_ns_free(pmt_ns_report *r)
{
    free(r->stacks);
    free(r->frames);
    free(r->strings);
    r->stacks = NULL;
    r->frames = NULL;
    r->strings = NULL;
    r->n_stacks = r->n_frames = 0;
}
