/* capture_read.c: walk a `pymemtrace malloc` capture's records (see
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

#define MAX_PAYLOAD (1u << 20)

static int
fail(pmt_capture *c, const char *what)
{
    snprintf(c->error, sizeof(c->error), "%s", what);
    return -1;
}

static pmt_mc_record
record_at(const pmt_capture *c, uint64_t off)
{
    pmt_mc_record r;
    memcpy(&r, c->data + off, PMT_MC_RECORD_BASE);
    r.native = 0;
    return r;
}

static uint64_t
seq_at(const pmt_capture *c, uint64_t off)
{
    uint64_t w;
    memcpy(&w, c->data + off, sizeof(w));
    return w >> 8;
}

static int
check_header(pmt_capture *c)
{
    pmt_mc_header *h = &c->header;
    if (c->len < sizeof(*h)) {
        if (c->len >= 8 && memcmp(c->data, PMT_MC_MAGIC, 8) != 0) {
            return fail(c, "not a pymemtrace malloc capture (bad magic)");
        }
        return fail(c, c->len == 0 ? "empty capture (the traced program wrote nothing)"
                                   : "capture cut short inside its header");
    }
    memcpy(h, c->data, sizeof(*h));
    if (memcmp(h->magic, PMT_MC_MAGIC, 8) != 0) {
        return fail(c, "not a pymemtrace malloc capture (bad magic)");
    }
    if (h->endian != PMT_MC_ENDIAN) {
        return fail(c, "capture written on a machine of the other byte order");
    }
    if (h->version != PMT_MC_VERSION && h->version != PMT_MC_VERSION_STACKS) {
        snprintf(c->error, sizeof(c->error),
                 "capture format version %u is not supported (this reader: %u and %u)",
                 h->version, PMT_MC_VERSION, PMT_MC_VERSION_STACKS);
        return -1;
    }
    if ((h->version == PMT_MC_VERSION_STACKS) != !!(h->flags & PMT_MC_FLAG_STACKS)) {
        return fail(c, "corrupt capture header (version disagrees with the stacks flag)");
    }
    c->stacks = h->version == PMT_MC_VERSION_STACKS;
    if (h->header_size != PMT_MC_HEADER_SIZE ||
        (h->record_size != PMT_MC_RECORD_BASE && h->record_size != PMT_MC_RECORD_NATIVE)) {
        return fail(c, "corrupt capture header (header or record size)");
    }
    if ((h->record_size == PMT_MC_RECORD_NATIVE) != !!(h->flags & PMT_MC_FLAG_NATIVE)) {
        return fail(c, "corrupt capture header (flags disagree with record size)");
    }
    c->rs = h->record_size;
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
add_code(pmt_capture *c, const pmt_mc_record *h, const uint8_t *payload, size_t plen)
{
    uint32_t id = h->code;
    if (id == 0) {
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
    int created;
    pmt_cap_code *e = pmt_ht_insert(&c->codes, &id, &created);
    if (!e) {
        return -1;
    }
    e->id = id;     /* defined again: the last definition wins */
    e->file = (uint32_t)fo;
    e->name = (uint32_t)no;
    return 0;
}

/* STACK: a = node id, b = parent id.  The writer numbers a node after its
 * parent, so a parent id not below the node's is corrupt (and would let a
 * reader walking towards the root loop): such a node is ignored. */
static int
add_node(pmt_capture *c, const pmt_mc_record *h)
{
    uint64_t id = h->a;
    if (id == 0 || id > UINT32_MAX || h->b >= id) {
        return 0;
    }
    uint32_t key = (uint32_t)id;
    int created;
    pmt_cap_node *n = pmt_ht_insert(&c->nodes, &key, &created);
    if (!n) {
        return -1;
    }
    *n = (pmt_cap_node){.id = key, .parent = (uint32_t)h->b, .code = h->code, .line = h->line};
    return 0;
}

/* MODULE payload: 8-byte load bias, 8-byte end address, path NUL. */
static int
add_module(pmt_capture *c, const pmt_mc_record *h, const uint8_t *payload, size_t plen)
{
    if (plen < 17) {
        return 0;
    }
    if (pmt_grow((void **)&c->mods, &c->mods_cap, c->n_mods + 1, sizeof(pmt_cap_module)) < 0) {
        return -1;
    }
    pmt_cap_module *m = &c->mods[c->n_mods];
    m->lo = h->a;
    memcpy(&m->bias, payload, 8);
    memcpy(&m->hi, payload + 8, 8);
    const char *p = (const char *)payload + 16;
    int64_t po = pmt_strpool_intern(&c->strs, p, strnlen(p, plen - 16));
    if (po < 0) {
        return -1;
    }
    m->path = (uint32_t)po;
    c->n_mods++;
    return 0;
}

/* Walk the records; events are kept by offset, with their range of numbers. */
static int
scan(pmt_capture *c, uint64_t *seq_min, uint64_t *seq_max)
{
    uint64_t off = PMT_MC_HEADER_SIZE;
    const uint64_t rs = c->rs;
    *seq_min = UINT64_MAX;
    *seq_max = 0;
    while (off + rs <= c->len) {
        pmt_mc_record h = record_at(c, off);
        unsigned kind = (unsigned)(h.seq_kind & 0xff);
        if (pmt_mc_is_alloc(kind) || pmt_mc_is_release(kind)) {
            uint64_t seq = h.seq_kind >> 8;
            if (seq == 0) {
                break;  /* not something the writer makes: corrupt from here */
            }
            if (pmt_grow((void **)&c->ev, &c->ev_cap, c->n_ev + 1, sizeof(uint64_t)) < 0) {
                return fail(c, "out of memory");
            }
            c->ev[c->n_ev++] = off;
            *seq_min = seq < *seq_min ? seq : *seq_min;
            *seq_max = seq > *seq_max ? seq : *seq_max;
            off += rs;
        }
        else if (kind == PMT_MC_CODE || kind == PMT_MC_MODULE) {
            uint64_t plen = h.b;
            if (plen > MAX_PAYLOAD) {
                break;  /* corrupt */
            }
            uint64_t nrec = (plen + rs - 1) / rs;
            if (off + rs + nrec * rs > c->len) {
                break;  /* cut short inside the payload */
            }
            const uint8_t *payload = c->data + off + rs;
            int rc = kind == PMT_MC_CODE ? add_code(c, &h, payload, plen)
                                         : add_module(c, &h, payload, plen);
            if (rc < 0) {
                return fail(c, "out of memory");
            }
            off += rs + nrec * rs;
        }
        else if (kind == PMT_MC_STACK && c->stacks) {
            if (add_node(c, &h) < 0) {
                return fail(c, "out of memory");
            }
            off += rs;
        }
        else if (kind == PMT_MC_META) {
            c->python_hex = h.a;
            c->python_status = h.code;
            off += rs;
        }
        else if (kind == PMT_MC_END) {
            c->complete = 1;
            c->ended_by_exec = h.code == PMT_MC_END_EXEC;
            c->dropped += h.b;
            off += rs;
        }
        else {
            break;      /* unknown kind: corrupt from here */
        }
    }
    c->trailing_bytes = c->len - off;
    return 0;
}

static int
cmp_seq(const void *a, const void *b, void *arg)
{
    const pmt_capture *c = arg;
    uint64_t x = seq_at(c, *(const uint64_t *)a), y = seq_at(c, *(const uint64_t *)b);
    return x < y ? -1 : x > y;
}

/* Put the events in sequence order (the same number twice: keep the first). */
static int
order(pmt_capture *c, uint64_t seq_min, uint64_t seq_max)
{
    if (c->n_ev == 0) {
        return 0;
    }
    uint64_t range = seq_max - seq_min + 1;
    if (range > 4 * (uint64_t)c->n_ev + 4096) {
        qsort_r(c->ev, c->n_ev, sizeof(uint64_t), cmp_seq, c);
        c->seq_gaps = range - c->n_ev;
        return 0;
    }
    uint64_t *slot = calloc(range, sizeof(uint64_t));
    if (!slot) {
        return fail(c, "out of memory");
    }
    for (size_t i = 0; i < c->n_ev; i++) {
        uint64_t k = seq_at(c, c->ev[i]) - seq_min;
        if (!slot[k]) {
            slot[k] = c->ev[i];     /* never 0: events follow the header */
        }
    }
    size_t n = 0;
    for (uint64_t k = 0; k < range; k++) {
        if (slot[k]) {
            c->ev[n++] = slot[k];
        }
    }
    free(slot);
    c->n_ev = n;
    c->seq_gaps = range - n;
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
    uint64_t seq_min, seq_max;
    if (check_header(c) < 0 || scan(c, &seq_min, &seq_max) < 0 ||
        order(c, seq_min, seq_max) < 0) {
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
    free(c->ev);
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
