/* capture_frames.c: the frame tree of a capture's stacks (see
 * capture_frames.h). */
#include "capture_frames.h"

#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "grow.h"
#include "symbolize.h"

typedef struct {
    uint32_t file, name, index;
} func_key;

typedef struct {
    uint32_t parent, func;
    int32_t line;
    uint32_t index;
} frame_key;

typedef struct {
    uint32_t node, index;
} node_key;

static uint64_t
func_hash(const void *key, void *ctx)
{
    (void)ctx;
    const func_key *k = key;
    return pmt_ht_hash_u64((uint64_t)k->file << 32 | k->name);
}

static int
func_eq(const void *key, const void *entry, void *ctx)
{
    (void)ctx;
    const func_key *k = key, *e = entry;
    return k->file == e->file && k->name == e->name;
}

static uint64_t
frame_hash(const void *key, void *ctx)
{
    (void)ctx;
    const frame_key *k = key;
    return pmt_ht_hash_u64(((uint64_t)k->parent << 32 | k->func) ^
                           pmt_ht_hash_u64((uint32_t)k->line));
}

static int
frame_eq(const void *key, const void *entry, void *ctx)
{
    (void)ctx;
    const frame_key *k = key, *e = entry;
    return k->parent == e->parent && k->func == e->func && k->line == e->line;
}

static uint32_t
func_get(pmt_frames *f, uint32_t file, uint32_t name)
{
    func_key k = {file, name, 0};
    int created;
    func_key *e = pmt_ht_insert(&f->func_ix, &k, &created);
    if (!e) {
        return PMT_ST_NONE;
    }
    if (created) {
        if (f->n_funcs >= PMT_ST_NONE - 1 ||
            pmt_grow((void **)&f->funcs, &f->funcs_cap, f->n_funcs + 1,
                     sizeof(pmt_frames_func)) < 0) {
            pmt_ht_remove(&f->func_ix, e);
            return PMT_ST_NONE;
        }
        f->funcs[f->n_funcs] = (pmt_frames_func){file, name};
        *e = (func_key){file, name, (uint32_t)f->n_funcs++};
    }
    return e->index;
}

static uint32_t
intern_str(pmt_frames *f, const char *s)
{
    int64_t o = pmt_strpool_intern(&f->cap->strs, s, strlen(s));
    return o < 0 ? PMT_ST_NONE : (uint32_t)o;
}

int
pmt_frames_init(pmt_frames *f, pmt_capture *cap)
{
    memset(f, 0, sizeof(*f));
    f->cap = cap;
    pmt_ht_init(&f->func_ix, sizeof(func_key), func_hash, func_eq, NULL);
    pmt_ht_init(&f->frame_ix, sizeof(frame_key), frame_hash, frame_eq, NULL);
    pmt_ht_init(&f->node_ix, sizeof(node_key), pmt_ht_u32_hash, pmt_ht_u32_eq, NULL);
    uint32_t empty = intern_str(f, "");
    uint32_t none = intern_str(f, "<no Python frame>");
    uint32_t unknown = intern_str(f, "<unknown code>");
    if (empty == PMT_ST_NONE || none == PMT_ST_NONE || unknown == PMT_ST_NONE) {
        return -1;
    }
    f->no_frame = func_get(f, empty, none);
    f->unknown = func_get(f, empty, unknown);
    return f->no_frame == PMT_ST_NONE || f->unknown == PMT_ST_NONE ? -1 : 0;
}

/* The function of a code id (an undefined one: "<unknown code>"). */
static uint32_t
func_of_code(pmt_frames *f, uint32_t code)
{
    if (code == 0) {
        return f->no_frame;
    }
    const pmt_cap_code *c = pmt_capture_code(f->cap, code);
    return c ? func_get(f, c->file, c->name) : f->unknown;
}

/* The function of a native frame (--native captures): file = the module's
 * path, name = its symbol, or the call site's offset in the module when the
 * file names none (line -1 tells a native frame). */
static uint32_t
func_of_native(pmt_frames *f, uint64_t addr)
{
    if (!f->sym && !(f->sym = pmt_sym_new(f->cap))) {
        return PMT_ST_NONE;
    }
    pmt_sym_frame sf;
    pmt_sym_native(f->sym, addr, &sf);
    char module[PATH_MAX], off[32];
    snprintf(module, sizeof(module), "%s", sf.module);  /* it is in the pool: copy first */
    const char *name = sf.symbol;
    size_t nl = sf.symbol_len;
    if (!name) {
        nl = (size_t)snprintf(off, sizeof(off), "0x%llx", (unsigned long long)sf.offset);
        name = off;
    }
    int64_t fo = pmt_strpool_intern(&f->cap->strs, module, strlen(module));
    int64_t no = pmt_strpool_intern(&f->cap->strs, name, nl);
    if (fo < 0 || no < 0) {
        return PMT_ST_NONE;
    }
    return func_get(f, (uint32_t)fo, (uint32_t)no);
}

static uint32_t
frame_get(pmt_frames *f, uint32_t parent, uint32_t func, int32_t line)
{
    if (func == PMT_ST_NONE) {
        return PMT_ST_NONE;
    }
    frame_key k = {parent, func, line, 0};
    int created;
    frame_key *e = pmt_ht_insert(&f->frame_ix, &k, &created);
    if (!e) {
        return PMT_ST_NONE;
    }
    if (created) {
        if (f->n_frames >= PMT_ST_NONE - 1 ||
            pmt_grow((void **)&f->frames, &f->frames_cap, f->n_frames + 1,
                     sizeof(pmt_st_frame)) < 0) {
            pmt_ht_remove(&f->frame_ix, e);
            return PMT_ST_NONE;
        }
        f->frames[f->n_frames] = (pmt_st_frame){parent, func, line};
        k.index = (uint32_t)f->n_frames++;
        *e = k;
    }
    return e->index;
}

/* The frame of a node of the capture's tree: the nodes from it towards the
 * root not yet made into frames are made outermost first.  Node ids fall
 * towards the root (the reader drops a node whose parent id is not below its
 * own), so the walk ends.  A node never defined ends the walk as an
 * "<unknown code>" frame. */
static uint32_t
frame_of_node(pmt_frames *f, uint32_t id)
{
    uint32_t *chain = NULL;
    size_t n = 0, cap = 0;
    uint32_t parent = PMT_ST_NONE;
    for (uint32_t cur = id; cur != 0;) {
        const node_key *known = pmt_ht_find(&f->node_ix, &cur);
        if (known) {
            parent = known->index;
            break;
        }
        if (pmt_grow((void **)&chain, &cap, n + 1, sizeof(uint32_t)) < 0) {
            free(chain);
            return PMT_ST_NONE;
        }
        const pmt_cap_node *node = pmt_capture_node(f->cap, cur);
        if (node && node->kind == PMT_CAP_NODE_THREAD) {
            break;      /* the thread at the root: not a frame */
        }
        chain[n++] = cur;
        cur = node ? node->parent : 0;
    }
    while (n > 0) {
        uint32_t nid = chain[--n];
        const pmt_cap_node *node = pmt_capture_node(f->cap, nid);
        uint32_t fr = !node ? frame_get(f, parent, f->unknown, -1)
                      : node->kind == PMT_CAP_NODE_NATIVE
                          ? frame_get(f, parent, func_of_native(f, node->addr), -1)
                          : frame_get(f, parent, func_of_code(f, node->code), node->line);
        int created;
        node_key *e = fr == PMT_ST_NONE ? NULL : pmt_ht_insert(&f->node_ix, &nid, &created);
        if (!e) {
            free(chain);
            return PMT_ST_NONE;
        }
        *e = (node_key){nid, fr};
        parent = fr;
    }
    free(chain);
    return parent;
}

uint32_t
pmt_frames_of(pmt_frames *f, uint32_t id, int32_t line)
{
    if (!f->cap->stacks || id == 0) {
        return frame_get(f, PMT_ST_NONE, func_of_code(f, id), id == 0 ? 0 : line);
    }
    uint32_t fr = frame_of_node(f, id);
    const pmt_cap_node *inner = pmt_capture_node(f->cap, id);
    if (fr == PMT_ST_NONE || f->frames[fr].line == line || line < 0 ||
        (inner && inner->kind != PMT_CAP_NODE_PYTHON)) {
        return fr;      /* (a native innermost frame: the line is its Python caller's) */
    }
    /* the event names a line of its own: the innermost frame at that line */
    const pmt_st_frame leaf = f->frames[fr];
    return frame_get(f, leaf.parent, leaf.func, line);
}

void
pmt_frames_free(pmt_frames *f)
{
    free(f->funcs);
    free(f->frames);
    pmt_ht_free(&f->func_ix);
    pmt_ht_free(&f->frame_ix);
    pmt_ht_free(&f->node_ix);
    pmt_sym_free(f->sym);
    f->sym = NULL;
    f->funcs = NULL;
    f->frames = NULL;
}

/* Inclusive and self totals of every function, once per stack it is on
 * (frames are made after their parents, so the walk to the root ends). */
int
pmt_st_sum_functions(pmt_st_report *r)
{
    uint32_t *stamp = calloc(r->n_funcs + 1, sizeof(uint32_t));
    if (!stamp) {
        return -1;
    }
    for (size_t i = 0; i < r->n_stacks; i++) {
        const pmt_st_stack *st = &r->stacks[i];
        pmt_st_func *self = &r->funcs[r->frames[st->frame].func];
        self->self_alloc_bytes += st->alloc_bytes;
        self->self_peak_bytes += st->peak_bytes;
        self->self_end_bytes += st->end_bytes;
        for (uint32_t f = st->frame; f != PMT_ST_NONE; f = r->frames[f].parent) {
            uint32_t fn = r->frames[f].func;
            if (stamp[fn] == i + 1) {
                continue;   /* recursion: once per stack */
            }
            stamp[fn] = (uint32_t)(i + 1);
            pmt_st_func *u = &r->funcs[fn];
            u->alloc_bytes += st->alloc_bytes;
            u->alloc_count += st->alloc_count;
            u->peak_bytes += st->peak_bytes;
            u->peak_count += st->peak_count;
            u->end_bytes += st->end_bytes;
            u->end_count += st->end_count;
        }
    }
    free(stamp);
    return 0;
}
