/* capture_read.c: read a `pymemtrace malloc` capture's header and
 * definitions, and note its chunks for the merge (see capture_read.h); load
 * a capture file. */
#define _GNU_SOURCE 1
#include "capture_read.h"
#include "capture_cursor.h"
#include "grow.h"

#include <errno.h>
#include <fcntl.h>
#include <linux/magic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <sys/vfs.h>
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
static int
keep_def(pmt_capture *c, const pmt_cap_def *d)
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

/* Read one chunk's records: definitions kept, events counted.  A chunk with
 * events joins the table the merge works from. */
static int
scan_chunk(pmt_capture *c, uint64_t off, uint32_t src_len, uint32_t len, uint8_t *buf,
           uint32_t *skip)
{
    const uint8_t *p;
    size_t n = pmt_capture_chunk_bytes(c, off, src_len, len, buf, &p);
    c->trailing_bytes += len - n;   /* a packed chunk that did not inflate whole */
    if (n >= 8 && p[0] == PMT_MC_CHECKPOINT) {
        /* an aggregated capture's checkpoint slot: its length in chunks follows */
        uint32_t k = u32_at(p + 4);
        *skip = k ? k - 1 : 0;
        return 0;
    }
    pmt_cap_cursor k;
    pmt_cursor_init(&k, p, p + n, c->header.flags);
    uint64_t events = 0, first = 0, prev = 0;
    uint32_t unsorted = 0;
    for (;;) {
        pmt_mc_record r;
        pmt_cap_def d;
        const uint8_t *at = k.p;
        int what = pmt_cursor_next(&k, &r, &d);
        if (what == PMT_CUR_EVENT) {
            uint64_t seq = r.seq_kind >> 8;
            unsorted |= events && seq <= prev;
            first = events++ == 0 || seq < first ? seq : first;
            prev = seq;
        }
        else if (what == PMT_CUR_DEF) {
            if (keep_def(c, &d) < 0) {
                return fail(c, "out of memory");
            }
        }
        else {
            if (what == PMT_CUR_BAD) {
                c->trailing_bytes += (uint64_t)(p + n - at);
            }
            break;
        }
    }
    if (!(c->header.flags & PMT_MC_FLAG_PACKED)) {
        pmt_capture_drop_pages(c, p, n);
    }
    if (events == 0) {
        return 0;
    }
    if (c->n_chunks >= UINT32_MAX ||
        pmt_grow((void **)&c->chunks, &c->chunks_cap, c->n_chunks + 1, sizeof(pmt_cap_chunk)) < 0) {
        return fail(c, "out of memory");
    }
    c->chunks[c->n_chunks] = (pmt_cap_chunk){.off = off, .src_len = src_len, .len = len,
                                             .first_seq = first,
                                             .index = (uint32_t)c->n_chunks,
                                             .unsorted = unsorted, .events = events};
    c->n_chunks++;
    return 0;
}

typedef struct {
    uint8_t *buf;           /* a chunk's bytes, inflated */
    uint32_t skip;          /* chunks of a checkpoint's extent still to pass */
    uint64_t at;            /* where the next chunk starts in the area */
} scan_ctx;

static int
scan_one(pmt_capture *c, uint64_t off, uint32_t src_len, uint32_t len, void *ctx)
{
    scan_ctx *x = ctx;
    /* an aggregated packed capture is inflated whole (its checkpoints span chunks) */
    uint8_t *dst = c->inflated ? c->inflated + x->at : x->buf;
    x->at += len;
    if (x->skip) {
        x->skip--;      /* inside a checkpoint's extent */
        const uint8_t *p;
        if (c->inflated) {
            (void)pmt_capture_chunk_bytes(c, off, src_len, len, dst, &p);
        }
        return 0;
    }
    return scan_chunk(c, off, src_len, len, dst, &x->skip);
}

/* Read every chunk once. */
static int
scan(pmt_capture *c)
{
    const pmt_mc_header *h = &c->header;
    scan_ctx x = {NULL, 0, 0};
    int rc = 0;
    if (h->flags & PMT_MC_FLAG_PACKED) {
        if (c->aggregate && h->packed_len <= (uint64_t)(c->len - PMT_MC_HEADER_SIZE) * 1100 + 4096 &&
            h->packed_len < SIZE_MAX / 2) {
            if (!(c->inflated = calloc(h->packed_len ? (size_t)h->packed_len : 1, 1))) {
                return fail(c, "out of memory");
            }
            c->area = c->inflated;
            c->area_len = (size_t)h->packed_len;
        }
        if (!(x.buf = malloc(h->chunk_size))) {
            return fail(c, "out of memory");
        }
        rc = pmt_capture_packed_chunks(c, scan_one, &x);
        free(x.buf);
        return rc;
    }
    if (c->len > h->data_offset) {
        c->area = c->data + h->data_offset;
        c->area_len = c->len - h->data_offset;
    }
    const size_t cs = h->chunk_size;
    for (uint64_t off = h->data_offset; off < c->len && rc == 0; off += cs) {
        uint32_t n = (uint32_t)(c->len - off < cs ? c->len - off : cs);
        if (x.skip) {
            x.skip--;
            continue;
        }
        rc = scan_chunk(c, off, n, n, NULL, &x.skip);
    }
    return rc;
}

static int
cmp_chunk(const void *a, const void *b)
{
    const pmt_cap_chunk *x = a, *y = b;
    if (x->first_seq != y->first_seq) {
        return x->first_seq < y->first_seq ? -1 : 1;
    }
    return x->index < y->index ? -1 : x->index > y->index;
}

static int
cmp_time(const void *a, const void *b)
{
    const pmt_cap_time *x = a, *y = b;
    if (x->seq != y->seq) {
        return x->seq < y->seq ? -1 : 1;
    }
    return x->ns < y->ns ? -1 : x->ns > y->ns;
}

/* One pass of the merge: how many events, the numbers never seen, and where
 * each TIME record falls among the events. */
static int
count(pmt_capture *c, int flags)
{
    if (c->n_chunks) {
        qsort(c->chunks, c->n_chunks, sizeof(pmt_cap_chunk), cmp_chunk);
    }
    if (c->n_times) {
        qsort(c->times, c->n_times, sizeof(pmt_cap_time), cmp_time);
    }
    if (flags & PMT_CAP_NO_COUNT) {
        return 0;
    }
    pmt_capture_iter it;
    if (pmt_capture_iter_open(&it, c) < 0) {
        return fail(c, "out of memory");
    }
    uint64_t first = 0, last = 0;
    size_t n = 0, t = 0;
    pmt_mc_record r;
    int got;
    while ((got = pmt_capture_iter_next(&it, &r)) == 1) {
        uint64_t seq = r.seq_kind >> 8;
        for (; t < c->n_times && c->times[t].seq <= seq; t++) {
            c->times[t].pos = n;
        }
        first = n++ ? first : seq;
        last = seq;
    }
    pmt_capture_iter_close(&it);
    if (got < 0) {
        return fail(c, "out of memory");
    }
    for (; t < c->n_times; t++) {
        c->times[t].pos = n;
    }
    c->n_ev = n;
    c->seq_gaps = n ? last - first + 1 - n : 0;
    return 0;
}

int
pmt_capture_open_mapped(pmt_capture *c, const uint8_t *data, size_t len, int flags)
{
    memset(c, 0, sizeof(*c));
    pmt_strpool_init(&c->strs);
    pmt_ht_init(&c->codes, sizeof(pmt_cap_code), id_hash, code_eq, NULL);
    pmt_ht_init(&c->nodes, sizeof(pmt_cap_node), id_hash, node_eq, NULL);
    c->data = data;
    c->len = len;
    c->file_mapped = flags & PMT_CAP_MAPPED;
    if (check_header(c) < 0 || scan(c) < 0 || count(c, flags) < 0) {
        return -1;
    }
    return 0;
}

int
pmt_capture_open(pmt_capture *c, const uint8_t *data, size_t len)
{
    return pmt_capture_open_mapped(c, data, len, 0);
}

void
pmt_capture_close(pmt_capture *c)
{
    pmt_strpool_free(&c->strs);
    pmt_ht_free(&c->codes);
    free(c->mods);
    pmt_ht_free(&c->nodes);
    free(c->threads);
    free(c->chunks);
    free(c->times);
    free(c->inflated);
    c->inflated = NULL;
    c->area = NULL;
    c->threads = NULL;
    c->n_threads = 0;
    c->chunks = NULL;
    c->times = NULL;
    c->n_chunks = c->n_times = 0;
    c->mods = NULL;
    c->n_ev = c->n_mods = 0;
}

void
pmt_capture_drop_pages(const pmt_capture *c, const uint8_t *p, size_t n)
{
    if (!c->file_mapped || n == 0) {
        return;
    }
    uintptr_t page = (uintptr_t)sysconf(_SC_PAGESIZE);
    uintptr_t lo = ((uintptr_t)p + page - 1) & ~(page - 1);
    uintptr_t hi = ((uintptr_t)p + n) & ~(page - 1);
    if (hi > lo) {
        /* a private read-only file mapping: the pages come back from the file
         * if touched again; failure only leaves them mapped */
        (void)madvise((void *)lo, hi - lo, MADV_DONTNEED);
    }
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
    /* On tmpfs a read fault on a hole (a punched chunk tail or checkpoint
     * slot) allocates a page: on a full one that is SIGBUS.  read() gives
     * zeros there. */
    struct statfs sfs;
    int tmpfs = fstatfs(fd, &sfs) == 0 && sfs.f_type == TMPFS_MAGIC;
    if (len > 0 && !tmpfs) {
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
