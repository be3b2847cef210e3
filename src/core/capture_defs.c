/* capture_defs.c: keep a capture's definitions as capture_read.c's first
 * reading meets them: code objects, stack nodes (Python and native), threads,
 * modules and TIME records; find the module an address falls in (see
 * capture_defs.h, capture_read.h). */
#include "capture_defs.h"

#include <string.h>

#include "grow.h"

/* code ids and node ids: 32-bit keys at the start of their entries */
static uint64_t
id_hash(const void *key, void *ctx)
{
    (void)ctx;
    uint32_t id;
    memcpy(&id, key, sizeof(id));
    return pmt_ht_hash_u64(id);
}

static int
code_eq(const void *key, const void *entry, void *ctx)
{
    (void)ctx;
    uint32_t id;
    memcpy(&id, key, sizeof(id));
    return ((const pmt_cap_code *)entry)->id == id;
}

static int
node_eq(const void *key, const void *entry, void *ctx)
{
    (void)ctx;
    uint32_t id;
    memcpy(&id, key, sizeof(id));
    return ((const pmt_cap_node *)entry)->id == id;
}

/* CODE payload: filename NUL function NUL. */
static int
add_code(pmt_capture *c, uint64_t id, const uint8_t *payload, size_t plen)
{
    if (id == 0 || id > UINT32_MAX) {
        return 0;   /* 0 means "no Python frame": not an id the writer defines */
    }
    const char *f = (const char *)payload;
    size_t fl = strnlen(f, plen);
    const char *n = fl < plen ? f + fl + 1 : "";
    size_t nl = fl < plen ? strnlen(n, plen - fl - 1) : 0;
    int64_t fo = pmt_strpool_intern(&c->strs, f, fl);
    int64_t no = pmt_strpool_intern(&c->strs, n, nl);
    if (fo < 0 || no < 0) {
        return -1;
    }
    uint32_t key = (uint32_t)id;
    int created;
    pmt_cap_code *e = pmt_ht_insert(&c->codes, &key, &created);
    if (!e) {
        return -1;
    }
    e->id = key;    /* defined again: the last definition wins */
    e->file = (uint32_t)fo;
    e->name = (uint32_t)no;
    return 0;
}

/* STACK.  The writer numbers a node after its parent, so a parent id not
 * below the node's is corrupt (and would let a reader walking towards the
 * root loop): such a node is ignored. */
static int
add_node(pmt_capture *c, uint64_t id, uint64_t parent, uint64_t code, int32_t line)
{
    if (id == 0 || id > UINT32_MAX || parent >= id || code > UINT32_MAX) {
        return 0;
    }
    uint32_t key = (uint32_t)id, parent_id = (uint32_t)parent;
    const pmt_cap_node *p = parent_id ? pmt_ht_find(&c->nodes, &parent_id) : NULL;
    uint32_t thread = p ? p->thread : 0;
    int created;
    pmt_cap_node *n = pmt_ht_insert(&c->nodes, &key, &created);
    if (!n) {
        return -1;
    }
    *n = (pmt_cap_node){.id = key, .parent = parent_id, .code = (uint32_t)code,
                        .line = line, .thread = thread};
    return 0;
}

/* NATIVE_FRAME: a native node (its parent is defined before it). */
static int
add_native(pmt_capture *c, uint64_t id, uint64_t parent, uint64_t addr)
{
    if (add_node(c, id, parent, 0, -1) < 0) {
        return -1;
    }
    uint32_t key = (uint32_t)id;
    pmt_cap_node *n = id && id <= UINT32_MAX && parent < id ? pmt_ht_find(&c->nodes, &key)
                                                            : NULL;
    if (n) {
        n->kind = PMT_CAP_NODE_NATIVE;
        n->addr = addr;
    }
    return 0;
}

/* THREAD: the root of a thread's stacks (payload: its name). */
static int
add_thread(pmt_capture *c, uint64_t id, uint64_t tid, const uint8_t *payload, size_t plen)
{
    if (id == 0 || id > UINT32_MAX) {
        return 0;
    }
    const char *p = (const char *)payload;
    int64_t no = pmt_strpool_intern(&c->strs, p, strnlen(p, plen));
    if (no < 0 || c->n_threads >= UINT32_MAX - 1 ||
        pmt_grow((void **)&c->threads, &c->threads_cap, c->n_threads + 1,
                 sizeof(pmt_cap_thread)) < 0) {
        return -1;
    }
    uint32_t key = (uint32_t)id;
    int created;
    pmt_cap_node *n = pmt_ht_insert(&c->nodes, &key, &created);
    if (!n) {
        return -1;
    }
    c->threads[c->n_threads++] = (pmt_cap_thread){tid, (uint32_t)no, key};
    *n = (pmt_cap_node){.id = key, .code = (uint32_t)tid, .kind = PMT_CAP_NODE_THREAD,
                        .name = (uint32_t)no, .thread = (uint32_t)c->n_threads};
    return 0;
}

/* MODULE payload: the path. */
static int
add_module(pmt_capture *c, const uint64_t *v, const uint8_t *payload, size_t plen)
{
    if (pmt_grow((void **)&c->mods, &c->mods_cap, c->n_mods + 1, sizeof(pmt_cap_module)) < 0) {
        return -1;
    }
    pmt_cap_module *m = &c->mods[c->n_mods];
    m->lo = v[0];
    m->bias = v[1];
    m->hi = v[2];
    int64_t po = pmt_strpool_intern(&c->strs, (const char *)payload,
                                    strnlen((const char *)payload, plen));
    if (po < 0) {
        return -1;
    }
    m->path = (uint32_t)po;
    /* optional, after the path's NUL: build-id length, build-id, file size, mtime */
    size_t at = strnlen((const char *)payload, plen) + 1;
    m->build_id_len = 0;
    m->file_size = m->mtime_ns = 0;
    if (at < plen) {
        size_t n = payload[at];
        if (at + 1 + n + 16 <= plen) {
            m->build_id_len = (uint32_t)(n < sizeof(m->build_id) ? n : sizeof(m->build_id));
            memcpy(m->build_id, payload + at + 1, m->build_id_len);
            memcpy(&m->file_size, payload + at + 1 + n, 8);
            memcpy(&m->mtime_ns, payload + at + 1 + n + 8, 8);
        }
    }
    c->n_mods++;
    return 0;
}

static int32_t
as_line(uint64_t zz)
{
    int64_t l = (int64_t)pmt_unzz(zz);
    return l < INT32_MIN || l > INT32_MAX ? -1 : (int32_t)l;
}

/* TIME: kept in sequence order (a thread's records are in order; those of
 * threads interleave, put in order after the scan). */
static int
add_time(pmt_capture *c, const uint64_t *v)
{
    if (pmt_grow((void **)&c->times, &c->times_cap, c->n_times + 1, sizeof(pmt_cap_time)) < 0) {
        return -1;
    }
    c->times[c->n_times++] = (pmt_cap_time){.ns = v[0], .rss = v[1], .seq = v[2]};
    return 0;
}

/* A definition: kept.  -1 out of memory. */
int
pmt_capture_keep_def(pmt_capture *c, const pmt_cap_def *d)
{
    switch (d->kind) {
    case PMT_MC_STACK:
        return add_node(c, d->v[0], d->v[1], d->v[2], as_line(d->v[3]));
    case PMT_MC_NATIVE_FRAME:
        return add_native(c, d->v[0], d->v[1], d->v[2]);
    case PMT_MC_CODE:
        return add_code(c, d->v[0], d->payload, d->plen);
    case PMT_MC_THREAD:
        return add_thread(c, d->v[0], d->v[1], d->payload, d->plen);
    case PMT_MC_TIME:
        return add_time(c, d->v);
    default:
        return add_module(c, d->v, d->payload, d->plen);
    }
}

void
pmt_capture_defs_init(pmt_capture *c)
{
    pmt_ht_init(&c->codes, sizeof(pmt_cap_code), id_hash, code_eq, NULL);
    pmt_ht_init(&c->nodes, sizeof(pmt_cap_node), id_hash, node_eq, NULL);
}

const pmt_cap_module *
pmt_capture_module_of(const pmt_capture *c, uint64_t addr)
{
    for (size_t i = 0; i < c->n_mods; i++) {
        if (addr >= c->mods[i].lo && addr < c->mods[i].hi) {
            return &c->mods[i];
        }
    }
    return NULL;
}
