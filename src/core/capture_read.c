/* capture_read.c: decode a `pymemtrace malloc` capture's records (see
 * capture_read.h); load a capture file. */
#define _GNU_SOURCE 1
#include "capture_read.h"
#include "grow.h"

#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

static int
fail(pmt_capture *c, const char *what)
{
    snprintf(c->error, sizeof(c->error), "%s", what);
    return -1;
}

static uint32_t
u32_at(const uint8_t *p)
{
    uint32_t v;
    memcpy(&v, p, sizeof(v));
    return v;
}

static int
check_header(pmt_capture *c)
{
    pmt_mc_header *h = &c->header;
    if (c->len == 0) {
        return fail(c, "empty capture file (0 bytes): no header, nothing was recorded");
    }
    if (c->len < 8 || memcmp(c->data, PMT_MC_MAGIC, 8) != 0) {
        return fail(c, "not a pymemtrace malloc capture (bad magic)");
    }
    if (c->len < 48) {
        return fail(c, "capture cut short inside its header");
    }
    if (u32_at(c->data + offsetof(pmt_mc_header, endian)) != PMT_MC_ENDIAN) {
        return fail(c, "capture written on a machine of the other byte order");
    }
    uint32_t version = u32_at(c->data + offsetof(pmt_mc_header, version));
    if (version != PMT_MC_VERSION) {
        snprintf(c->error, sizeof(c->error),
                 "capture format version %u is not supported: this pymemtrace reads "
                 "version %u (capture it again with this version)",
                 version, PMT_MC_VERSION);
        return -1;
    }
    if (c->len < sizeof(*h)) {
        return fail(c, "capture cut short inside its header");
    }
    memcpy(h, c->data, sizeof(*h));
    if (h->header_size != PMT_MC_HEADER_SIZE || h->data_offset < PMT_MC_HEADER_SIZE ||
        h->chunk_size < 64 || h->chunk_size > (1u << 26)) {
        return fail(c, "corrupt capture header (header, data or chunk size)");
    }
    if ((h->record_size == PMT_MC_RECORD_NATIVE) != !!(h->flags & PMT_MC_FLAG_NATIVE) ||
        (h->record_size != PMT_MC_RECORD_BASE && h->record_size != PMT_MC_RECORD_NATIVE)) {
        return fail(c, "corrupt capture header (flags disagree with record size)");
    }
    if (h->flags & ~(PMT_MC_FLAG_NATIVE | PMT_MC_FLAG_STACKS | PMT_MC_FLAG_PACKED |
                     PMT_MC_FLAG_AGGREGATE)) {
        return fail(c, "corrupt capture header (unknown flags)");
    }
    c->rs = h->record_size;
    c->stacks = !!(h->flags & PMT_MC_FLAG_STACKS);
    c->aggregate = !!(h->flags & PMT_MC_FLAG_AGGREGATE);
    c->python_hex = h->python_hex;
    c->python_status = h->python_status;
    c->complete = h->state == PMT_MC_STATE_EXIT || h->state == PMT_MC_STATE_EXEC;
    c->ended_by_exec = h->state == PMT_MC_STATE_EXEC;
    c->dropped = h->dropped;
    c->stop_errno = h->stop_errno;
    c->stop_events = h->stop_events;
    return 0;
}

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

/* n varints from [*p, end) into v; 0 if one runs past end. */
static int
get_uvs(const uint8_t **p, const uint8_t *end, uint64_t *v, int n)
{
    for (int i = 0; i < n; i++) {
        if ((*p = pmt_get_uv(*p, end, &v[i])) == NULL) {
            return 0;
        }
    }
    return 1;
}

static int32_t
as_line(uint64_t zz)
{
    int64_t l = (int64_t)pmt_unzz(zz);
    return l < INT32_MIN || l > INT32_MAX ? -1 : (int32_t)l;
}

typedef struct {
    uint64_t seq, addr, size, native, code, line;
} delta_state;

/* One event record after its kind byte; 0 if malformed. */
static int
decode_event(pmt_capture *c, unsigned byte, const uint8_t **p, const uint8_t *end,
             delta_state *d, pmt_mc_record *r)
{
    unsigned kind = byte & PMT_MC_KIND_MASK;
    uint64_t v;
    if (byte & PMT_MC_SEQ_NEXT) {
        d->seq++;
    }
    else if (get_uvs(p, end, &v, 1)) {
        d->seq += pmt_unzz(v);
    }
    else {
        return 0;
    }
    if (!get_uvs(p, end, &v, 1)) {
        return 0;
    }
    d->addr += pmt_unzz(v);
    if (d->seq == 0 || d->seq >> 56) {
        return 0;   /* not a number the writer makes */
    }
    *r = (pmt_mc_record){.seq_kind = d->seq << 8 | kind, .a = d->addr, .line = -1};
    if (pmt_mc_is_alloc(kind)) {
        uint64_t w[2];
        if (!get_uvs(p, end, w, 1)) {
            return 0;
        }
        d->size += pmt_unzz(w[0]);
        r->b = d->size;
        if (!(byte & PMT_MC_SAME_SITE)) {
            if (!get_uvs(p, end, w, 2)) {
                return 0;
            }
            d->code += pmt_unzz(w[0]);
            d->line += pmt_unzz(w[1]);
        }
        r->code = d->code > UINT32_MAX ? UINT32_MAX : (uint32_t)d->code;
        r->line = (int64_t)d->line < INT32_MIN || (int64_t)d->line > INT32_MAX
                      ? -1 : (int32_t)(int64_t)d->line;
    }
    else if (byte & PMT_MC_SAME_SITE) {
        return 0;   /* only allocations have a site */
    }
    else if (kind == PMT_MC_MUNMAP && !get_uvs(p, end, &r->b, 1)) {
        return 0;
    }
    if (c->header.flags & PMT_MC_FLAG_NATIVE) {
        uint64_t n;
        if (!get_uvs(p, end, &n, 1)) {
            return 0;
        }
        d->native += pmt_unzz(n);
        r->native = d->native;
    }
    return 1;
}

/* A definition record after its kind byte: 1, 0 if malformed, -1 out of memory. */
static int
decode_def(pmt_capture *c, unsigned kind, const uint8_t **p, const uint8_t *end)
{
    uint64_t v[4];
    /* CODE: id, line, plen; THREAD: id, tid, plen; NATIVE_FRAME: id, parent, addr;
     * STACK: id, parent, code, line; MODULE: lo, bias, hi, plen */
    const int nv = kind == PMT_MC_CODE || kind == PMT_MC_THREAD || kind == PMT_MC_NATIVE_FRAME
                       ? 3 : 4;
    if (!get_uvs(p, end, v, nv)) {
        return 0;
    }
    if (kind == PMT_MC_STACK) {
        return add_node(c, v[0], v[1], v[2], as_line(v[3])) < 0 ? -1 : 1;
    }
    if (kind == PMT_MC_NATIVE_FRAME) {
        return add_native(c, v[0], v[1], v[2]) < 0 ? -1 : 1;
    }
    uint64_t plen = v[nv - 1];
    if (plen > (uint64_t)(end - *p)) {
        return 0;
    }
    const uint8_t *payload = *p;
    *p += plen;
    int rc = kind == PMT_MC_CODE     ? add_code(c, v[0], payload, (size_t)plen)
             : kind == PMT_MC_THREAD ? add_thread(c, v[0], v[1], payload, (size_t)plen)
                                     : add_module(c, v, payload, (size_t)plen);
    return rc < 0 ? -1 : 1;
}

/* Decode one chunk's records (up to a zero byte or its end). */
static int
decode_chunk(pmt_capture *c, const uint8_t *p, const uint8_t *end)
{
    delta_state d = {0, 0, 0, 0, 0, 0};
    while (p < end && *p != 0) {
        const uint8_t *rec = p;
        unsigned byte = *p++, kind = byte & PMT_MC_KIND_MASK;
        int ok;
        if (pmt_mc_is_alloc(kind) || pmt_mc_is_release(kind)) {
            pmt_mc_record r;
            ok = decode_event(c, byte, &p, end, &d, &r);
            if (ok) {
                if (pmt_grow((void **)&c->ev, &c->ev_cap, c->n_ev + 1, sizeof(r)) < 0) {
                    return fail(c, "out of memory");
                }
                c->ev[c->n_ev++] = r;
            }
        }
        else if (byte == PMT_MC_CODE || byte == PMT_MC_STACK || byte == PMT_MC_MODULE ||
                 byte == PMT_MC_NATIVE_FRAME || byte == PMT_MC_THREAD) {
            ok = decode_def(c, byte, &p, end);
            if (ok < 0) {
                return fail(c, "out of memory");
            }
        }
        else {
            ok = 0;     /* unknown kind: corrupt from here */
        }
        if (!ok) {
            c->trailing_bytes += (uint64_t)(end - rec);
            break;
        }
    }
    return 0;
}

static int
scan(pmt_capture *c, const uint8_t *area, size_t n)
{
    const size_t cs = c->header.chunk_size;
    for (size_t off = 0; off < n; off += cs) {
        size_t stop = n - off < cs ? n : off + cs;
        if (area[off] == PMT_MC_CHECKPOINT && stop - off >= 8) {
            /* an aggregated capture's checkpoint slot: its length in chunks follows */
            off += (size_t)(u32_at(area + off + 4) ? u32_at(area + off + 4) - 1 : 0) * cs;
            continue;
        }
        if (decode_chunk(c, area + off, area + stop) < 0) {
            return -1;
        }
    }
    return 0;
}

static int
cmp_seq(const void *a, const void *b)
{
    uint64_t x = ((const pmt_mc_record *)a)->seq_kind >> 8;
    uint64_t y = ((const pmt_mc_record *)b)->seq_kind >> 8;
    return x < y ? -1 : x > y;
}

/* Put the events in sequence order (the same number twice: keep one). */
static int
order(pmt_capture *c)
{
    size_t n = c->n_ev;
    if (n == 0) {
        return 0;
    }
    uint64_t lo = UINT64_MAX, hi = 0;
    int sorted = 1;
    for (size_t i = 0; i < n; i++) {
        uint64_t s = c->ev[i].seq_kind >> 8;
        sorted &= i == 0 || s > (c->ev[i - 1].seq_kind >> 8);
        lo = s < lo ? s : lo;
        hi = s > hi ? s : hi;
    }
    uint64_t range = hi - lo + 1;
    if (sorted) {
        c->seq_gaps = range - n;
        return 0;
    }
    if (range > 4 * (uint64_t)n + 4096) {
        qsort(c->ev, n, sizeof(pmt_mc_record), cmp_seq);
    }
    else {
        /* counting placement: slot[k] = 1 + the index of the event numbered lo + k */
        size_t *slot = calloc(range, sizeof(size_t));
        pmt_mc_record *out = malloc(n * sizeof(pmt_mc_record));
        if (!slot || !out) {
            free(slot);
            free(out);
            return fail(c, "out of memory");
        }
        for (size_t i = 0; i < n; i++) {
            uint64_t k = (c->ev[i].seq_kind >> 8) - lo;
            if (!slot[k]) {
                slot[k] = i + 1;
            }
        }
        size_t m = 0;
        for (uint64_t k = 0; k < range; k++) {
            if (slot[k]) {
                out[m++] = c->ev[slot[k] - 1];
            }
        }
        free(slot);
        free(c->ev);
        c->ev = out;
        c->ev_cap = n;
        n = m;
    }
    size_t m = 0;
    for (size_t i = 0; i < n; i++) {
        if (m == 0 || (c->ev[i].seq_kind >> 8) != (c->ev[m - 1].seq_kind >> 8)) {
            c->ev[m++] = c->ev[i];
        }
    }
    c->n_ev = m;
    c->seq_gaps = range - m;
    return 0;
}

int
pmt_capture_open(pmt_capture *c, const uint8_t *data, size_t len)
{
    memset(c, 0, sizeof(*c));
    pmt_strpool_init(&c->strs);
    pmt_ht_init(&c->codes, sizeof(pmt_cap_code), id_hash, code_eq, NULL);
    pmt_ht_init(&c->nodes, sizeof(pmt_cap_node), id_hash, node_eq, NULL);
    c->data = data;
    c->len = len;
    if (check_header(c) < 0) {
        return -1;
    }
    const uint8_t *area = data + PMT_MC_HEADER_SIZE;
    size_t n = 0;
    if (c->header.flags & PMT_MC_FLAG_PACKED) {
        if (pmt_capture_inflate(c, &area, &n) < 0) {
            return -1;
        }
    }
    else if (len > c->header.data_offset) {
        area = data + c->header.data_offset;
        n = len - c->header.data_offset;
    }
    c->area = area;
    c->area_len = n;
    if (scan(c, area, n) < 0 || order(c) < 0) {
        return -1;
    }
    return 0;
}

void
pmt_capture_close(pmt_capture *c)
{
    pmt_strpool_free(&c->strs);
    pmt_ht_free(&c->codes);
    free(c->mods);
    pmt_ht_free(&c->nodes);
    free(c->threads);
    c->threads = NULL;
    c->n_threads = 0;
    free(c->ev);
    free(c->inflated);
    c->inflated = NULL;
    c->mods = NULL;
    c->ev = NULL;
    c->n_ev = c->n_mods = 0;
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

int
pmt_capture_file_load(const char *path, pmt_capture_file *f, char *err, size_t errlen)
{
    memset(f, 0, sizeof(*f));
    int fd = open(path, O_RDONLY | O_CLOEXEC);
    if (fd < 0) {
        snprintf(err, errlen, "cannot open %s: %s", path, strerror(errno));
        return -1;
    }
    struct stat st;
    if (fstat(fd, &st) < 0) {
        snprintf(err, errlen, "cannot stat %s: %s", path, strerror(errno));
        close(fd);
        return -1;
    }
    if (!S_ISREG(st.st_mode)) {
        snprintf(err, errlen, "%s is not a regular file", path);
        close(fd);
        return -1;
    }
    size_t len = (size_t)st.st_size;
    if (len > 0) {
        /* map it: a capture can be bigger than we would like to copy (a capture
         * still being written only grows; one truncated under us would fault) */
        void *m = mmap(NULL, len, PROT_READ, MAP_PRIVATE, fd, 0);
        if (m != MAP_FAILED) {
            close(fd);
            f->data = m;
            f->len = len;
            f->mapped = 1;
            return 0;
        }
    }
    uint8_t *buf = malloc(len ? len : 1);
    if (!buf) {
        snprintf(err, errlen, "out of memory");
        close(fd);
        return -1;
    }
    size_t got = 0;
    while (got < len) {
        ssize_t n = read(fd, buf + got, len - got);
        if (n < 0 && errno == EINTR) {
            continue;
        }
        if (n < 0) {
            snprintf(err, errlen, "cannot read %s: %s", path, strerror(errno));
            free(buf);
            close(fd);
            return -1;
        }
        if (n == 0) {
            break;  /* shrank under us: read what there is */
        }
        got += (size_t)n;
    }
    close(fd);
    f->data = buf;
    f->len = got;
    return 0;
}

void
pmt_capture_file_unload(pmt_capture_file *f)
{
    if (f->mapped) {
        munmap(f->data, f->len);
    }
    else {
        free(f->data);
    }
    f->data = NULL;
    f->len = 0;
}
