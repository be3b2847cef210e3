/* malloccap.c: read a `pymemtrace malloc` capture and aggregate it.
 *
 * Three passes over the capture held in memory: (1) walk the records,
 * keeping definitions (code objects, modules, metadata) and the position of
 * every event; (2) put the events in sequence order (a counting placement
 * when the numbers are dense, as they are, otherwise a sort); (3) replay
 * them: a hash table of live blocks (address -> size and sites) and a
 * sorted table of live anonymous mappings (munmap may release part of one),
 * with per-site totals, the running and peak live bytes, and the largest
 * single allocations.  What is live at the end is the leak candidates.
 * No Python.h; the report owns all its memory.
 */
#define _GNU_SOURCE 1
#include "malloccap.h"

#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

#include "elfsym.h"

#define NO_SITE UINT32_MAX

/* ---- small helpers ---------------------------------------------------------- */

static uint64_t
mix64(uint64_t x)
{
    x ^= x >> 33;
    x *= 0xff51afd7ed558ccdull;
    x ^= x >> 33;
    x *= 0xc4ceb9fe1a85ec53ull;
    x ^= x >> 33;
    return x;
}

static int
grow(void **p, size_t *cap, size_t need, size_t elem)
{
    if (need <= *cap) {
        return 0;
    }
    size_t n = *cap ? *cap : 16;
    while (n < need) {
        n *= 2;
    }
    void *q = realloc(*p, n * elem);
    if (!q) {
        return -1;
    }
    *p = q;
    *cap = n;
    return 0;
}

/* ---- string interning (offsets into r->strings) ---------------------------- */

typedef struct {
    uint32_t *slots;        /* offset + 1, 0 = empty */
    size_t cap, len;
} strset;

static uint64_t
str_hash(const char *s, size_t n)
{
    uint64_t h = 1469598103934665603ull;
    for (size_t i = 0; i < n; i++) {
        h = (h ^ (unsigned char)s[i]) * 1099511628211ull;
    }
    return h;
}

static int
strset_rehash(strset *ss, pmt_mc_report *r, size_t ncap)
{
    uint32_t *n = calloc(ncap, sizeof(uint32_t));
    if (!n) {
        return -1;
    }
    for (size_t i = 0; i < ss->cap; i++) {
        if (ss->slots[i]) {
            const char *s = r->strings + ss->slots[i] - 1;
            size_t j = str_hash(s, strlen(s)) & (ncap - 1);
            while (n[j]) {
                j = (j + 1) & (ncap - 1);
            }
            n[j] = ss->slots[i];
        }
    }
    free(ss->slots);
    ss->slots = n;
    ss->cap = ncap;
    return 0;
}

/* Intern s[0..n) and return its offset in r->strings, or -1. */
static int64_t
intern(strset *ss, pmt_mc_report *r, const char *s, size_t n)
{
    if ((ss->len + 1) * 2 > ss->cap && strset_rehash(ss, r, ss->cap ? ss->cap * 2 : 1024) < 0) {
        return -1;
    }
    size_t j = str_hash(s, n) & (ss->cap - 1);
    while (ss->slots[j]) {
        const char *t = r->strings + ss->slots[j] - 1;
        if (strncmp(t, s, n) == 0 && t[n] == '\0') {
            return ss->slots[j] - 1;
        }
        j = (j + 1) & (ss->cap - 1);
    }
    if (grow((void **)&r->strings, &r->strings_cap, r->strings_len + n + 1, 1) < 0) {
        return -1;
    }
    if (r->strings_len + n + 1 >= UINT32_MAX) {
        return -1;
    }
    size_t off = r->strings_len;
    memcpy(r->strings + off, s, n);
    r->strings[off + n] = '\0';
    r->strings_len += n + 1;
    ss->slots[j] = (uint32_t)off + 1;
    ss->len++;
    return (int64_t)off;
}

/* ---- definitions -------------------------------------------------------------- */

typedef struct {
    uint32_t file, name;    /* string offsets */
    int defined;
} code_def;

typedef struct {
    uint64_t lo, hi, bias;
    uint32_t path;          /* string offset */
} module_def;

/* ---- sites -------------------------------------------------------------------- */

typedef struct {
    uint64_t key_a, key_b;  /* python: (file << 32 | name, line); native: (addr, 0) */
    uint32_t file, name;    /* string offsets */
    int32_t line;
    uint64_t addr;
    uint64_t bytes, count, malloc_bytes, malloc_count, mmap_bytes, mmap_count;
    uint64_t live_bytes, live_count;
} site_acc;

typedef struct {
    site_acc *v;
    size_t len, cap;
    uint32_t *slots;        /* index + 1 */
    size_t scap;
} siteset;

static int
siteset_rehash(siteset *s, size_t ncap)
{
    uint32_t *n = calloc(ncap, sizeof(uint32_t));
    if (!n) {
        return -1;
    }
    for (size_t i = 0; i < s->len; i++) {
        size_t j = mix64(s->v[i].key_a ^ mix64(s->v[i].key_b)) & (ncap - 1);
        while (n[j]) {
            j = (j + 1) & (ncap - 1);
        }
        n[j] = (uint32_t)i + 1;
    }
    free(s->slots);
    s->slots = n;
    s->scap = ncap;
    return 0;
}

/* Index of the site with this key (created zeroed if new), or NO_SITE. */
static uint32_t
site_get(siteset *s, uint64_t ka, uint64_t kb, int *created)
{
    *created = 0;
    if ((s->len + 1) * 2 > s->scap && siteset_rehash(s, s->scap ? s->scap * 2 : 256) < 0) {
        return NO_SITE;
    }
    size_t j = mix64(ka ^ mix64(kb)) & (s->scap - 1);
    while (s->slots[j]) {
        site_acc *a = &s->v[s->slots[j] - 1];
        if (a->key_a == ka && a->key_b == kb) {
            return s->slots[j] - 1;
        }
        j = (j + 1) & (s->scap - 1);
    }
    if (grow((void **)&s->v, &s->cap, s->len + 1, sizeof(site_acc)) < 0) {
        return NO_SITE;
    }
    memset(&s->v[s->len], 0, sizeof(site_acc));
    s->v[s->len].key_a = ka;
    s->v[s->len].key_b = kb;
    s->slots[j] = (uint32_t)s->len + 1;
    *created = 1;
    return (uint32_t)s->len++;
}

static void
siteset_free(siteset *s)
{
    free(s->v);
    free(s->slots);
}

/* ---- live blocks (open addressing, backward-shift deletion) ------------------ */

typedef struct {
    uint64_t addr;          /* 0 = empty */
    uint64_t size;
    uint64_t seq;
    uint32_t py, nat;
    uint32_t kind;
} live_block;

typedef struct {
    live_block *v;
    size_t cap, len;
} live_table;

static int
live_rehash(live_table *t, size_t ncap)
{
    live_block *n = calloc(ncap, sizeof(live_block));
    if (!n) {
        return -1;
    }
    for (size_t i = 0; i < t->cap; i++) {
        if (t->v[i].addr) {
            size_t j = mix64(t->v[i].addr) & (ncap - 1);
            while (n[j].addr) {
                j = (j + 1) & (ncap - 1);
            }
            n[j] = t->v[i];
        }
    }
    free(t->v);
    t->v = n;
    t->cap = ncap;
    return 0;
}

static live_block *
live_find(live_table *t, uint64_t addr)
{
    if (!t->cap) {
        return NULL;
    }
    for (size_t j = mix64(addr) & (t->cap - 1);; j = (j + 1) & (t->cap - 1)) {
        if (t->v[j].addr == addr) {
            return &t->v[j];
        }
        if (t->v[j].addr == 0) {
            return NULL;
        }
    }
}

static live_block *
live_insert(live_table *t, uint64_t addr)
{
    if ((t->len + 1) * 10 > t->cap * 7 && live_rehash(t, t->cap ? t->cap * 2 : 1024) < 0) {
        return NULL;
    }
    size_t j = mix64(addr) & (t->cap - 1);
    while (t->v[j].addr && t->v[j].addr != addr) {
        j = (j + 1) & (t->cap - 1);
    }
    if (!t->v[j].addr) {
        t->len++;
    }
    t->v[j].addr = addr;
    return &t->v[j];
}

static void
live_remove(live_table *t, live_block *b)
{
    size_t mask = t->cap - 1;
    size_t i = (size_t)(b - t->v);
    size_t j = i;
    t->len--;
    for (;;) {
        t->v[i].addr = 0;
        for (;;) {
            j = (j + 1) & mask;
            if (t->v[j].addr == 0) {
                return;
            }
            size_t home = mix64(t->v[j].addr) & mask;
            /* can the entry at j move to the hole at i? */
            if (i <= j ? (home <= i || home > j) : (home <= i && home > j)) {
                break;
            }
        }
        t->v[i] = t->v[j];
        i = j;
    }
}

/* ---- live anonymous mappings (sorted by start) -------------------------------- */

typedef struct {
    uint64_t start, len, seq;
    uint32_t py, nat;
} region;

typedef struct {
    region *v;
    size_t len, cap;
} region_list;

static size_t
region_lower(region_list *rl, uint64_t addr)
{
    size_t lo = 0, hi = rl->len;
    while (lo < hi) {
        size_t mid = (lo + hi) / 2;
        if (rl->v[mid].start < addr) {
            lo = mid + 1;
        }
        else {
            hi = mid;
        }
    }
    return lo;
}

/* Remove [a, a+len) from the live mappings; returns the bytes released. */
static int
region_release(region_list *rl, uint64_t a, uint64_t len, uint64_t *released)
{
    uint64_t e = a + len;
    *released = 0;
    size_t i = region_lower(rl, a);
    if (i > 0 && rl->v[i - 1].start + rl->v[i - 1].len > a) {
        i--;
    }
    while (i < rl->len && rl->v[i].start < e) {
        region *g = &rl->v[i];
        uint64_t gs = g->start, ge = g->start + g->len;
        uint64_t os = gs > a ? gs : a, oe = ge < e ? ge : e;
        if (oe <= os) {
            i++;
            continue;
        }
        *released += oe - os;
        if (os == gs && oe == ge) {
            memmove(g, g + 1, (rl->len - i - 1) * sizeof(region));
            rl->len--;
            continue;
        }
        if (os == gs) {
            g->start = oe;
            g->len = ge - oe;
        }
        else if (oe == ge) {
            g->len = os - gs;
        }
        else {
            /* a hole in the middle: split in two */
            if (grow((void **)&rl->v, &rl->cap, rl->len + 1, sizeof(region)) < 0) {
                return -1;
            }
            g = &rl->v[i];
            memmove(g + 2, g + 1, (rl->len - i - 1) * sizeof(region));
            rl->len++;
            g[1] = g[0];
            g[0].len = os - gs;
            g[1].start = oe;
            g[1].len = ge - oe;
            i++;
        }
        i++;
    }
    return 0;
}

static int
region_add(region_list *rl, const region *g)
{
    if (grow((void **)&rl->v, &rl->cap, rl->len + 1, sizeof(region)) < 0) {
        return -1;
    }
    size_t i = region_lower(rl, g->start);
    memmove(&rl->v[i + 1], &rl->v[i], (rl->len - i) * sizeof(region));
    rl->v[i] = *g;
    rl->len++;
    return 0;
}

/* ---- the reader --------------------------------------------------------------- */

typedef struct {
    const uint8_t *data;
    size_t len;
    uint32_t rs;
    pmt_mc_report *r;
    strset strs;
    code_def *codes;
    size_t codes_cap;
    module_def *mods;
    size_t n_mods, mods_cap;
    uint64_t *ev;           /* offsets of event records */
    size_t n_ev, ev_cap;
    uint64_t seq_min, seq_max;
    siteset py, nat;
    live_table live;
    region_list maps;
    pmt_mc_big big[PMT_MC_NBIG];
    uint64_t big_addr[PMT_MC_NBIG];
    size_t n_big;
    uint32_t no_frame_file, no_frame_name, unknown_name;
} reader;

static int
fail(pmt_mc_report *r, const char *what)
{
    snprintf(r->error, sizeof(r->error), "%s", what);
    return -1;
}

static const pmt_mc_record *
rec_at(const reader *rd, uint64_t off)
{
    return (const pmt_mc_record *)(const void *)(rd->data + off);
}

static uint64_t
rec_seq(const reader *rd, uint64_t off)
{
    uint64_t w;
    memcpy(&w, rd->data + off, 8);
    return w >> 8;
}

static int
add_code(reader *rd, const pmt_mc_record *h, const uint8_t *payload, size_t plen)
{
    uint32_t id = h->code;
    if (id == 0 || id > (1u << 28)) {
        return 0;   /* not an id the writer makes: ignore */
    }
    if (id >= rd->codes_cap) {
        size_t old = rd->codes_cap;
        if (grow((void **)&rd->codes, &rd->codes_cap, (size_t)id + 1, sizeof(code_def)) < 0) {
            return -1;
        }
        memset(rd->codes + old, 0, (rd->codes_cap - old) * sizeof(code_def));
    }
    const char *f = (const char *)payload;
    size_t fl = strnlen(f, plen);
    const char *n = fl < plen ? f + fl + 1 : "";
    size_t nl = fl < plen ? strnlen(n, plen - fl - 1) : 0;
    int64_t fo = intern(&rd->strs, rd->r, f, fl);
    int64_t no = intern(&rd->strs, rd->r, n, nl);
    if (fo < 0 || no < 0) {
        return -1;
    }
    rd->codes[id].file = (uint32_t)fo;
    rd->codes[id].name = (uint32_t)no;
    rd->codes[id].defined = 1;
    return 0;
}

static int
add_module(reader *rd, const pmt_mc_record *h, const uint8_t *payload, size_t plen)
{
    if (plen < 17) {
        return 0;
    }
    if (grow((void **)&rd->mods, &rd->mods_cap, rd->n_mods + 1, sizeof(module_def)) < 0) {
        return -1;
    }
    module_def *m = &rd->mods[rd->n_mods];
    m->lo = h->a;
    memcpy(&m->bias, payload, 8);
    memcpy(&m->hi, payload + 8, 8);
    const char *p = (const char *)payload + 16;
    int64_t po = intern(&rd->strs, rd->r, p, strnlen(p, plen - 16));
    if (po < 0) {
        return -1;
    }
    m->path = (uint32_t)po;
    rd->n_mods++;
    return 0;
}

/* Pass 1: walk the records. */
static int
scan(reader *rd)
{
    pmt_mc_report *r = rd->r;
    uint64_t off = PMT_MC_HEADER_SIZE;
    const uint64_t rs = rd->rs;
    rd->seq_min = UINT64_MAX;
    while (off + rs <= rd->len) {
        const pmt_mc_record *h = rec_at(rd, off);
        unsigned kind = (unsigned)(h->seq_kind & 0xff);
        if (pmt_mc_is_alloc(kind) || pmt_mc_is_release(kind)) {
            uint64_t seq = h->seq_kind >> 8;
            if (seq == 0) {
                break;  /* not something the writer makes: corrupt from here */
            }
            if (grow((void **)&rd->ev, &rd->ev_cap, rd->n_ev + 1, sizeof(uint64_t)) < 0) {
                return fail(r, "out of memory");
            }
            rd->ev[rd->n_ev++] = off;
            if (seq < rd->seq_min) {
                rd->seq_min = seq;
            }
            if (seq > rd->seq_max) {
                rd->seq_max = seq;
            }
            off += rs;
        }
        else if (kind == PMT_MC_CODE || kind == PMT_MC_MODULE) {
            uint64_t plen = h->b;
            uint64_t nrec = (plen + rs - 1) / rs;
            if (plen > (1u << 20) || off + rs + nrec * rs > rd->len) {
                break;  /* cut short inside the payload (or corrupt) */
            }
            const uint8_t *payload = rd->data + off + rs;
            int rc = kind == PMT_MC_CODE ? add_code(rd, h, payload, plen)
                                         : add_module(rd, h, payload, plen);
            if (rc < 0) {
                return fail(r, "out of memory");
            }
            off += rs + nrec * rs;
        }
        else if (kind == PMT_MC_META) {
            r->python_hex = h->a;
            r->python_status = h->code;
            off += rs;
        }
        else if (kind == PMT_MC_END) {
            r->complete = 1;
            r->ended_by_exec = h->code == PMT_MC_END_EXEC;
            r->dropped += h->b;
            off += rs;
        }
        else {
            break;      /* unknown kind: corrupt from here */
        }
    }
    r->trailing_bytes = rd->len - off;
    return 0;
}

static int
cmp_seq(const void *a, const void *b, void *arg)
{
    const reader *rd = arg;
    uint64_t x = rec_seq(rd, *(const uint64_t *)a), y = rec_seq(rd, *(const uint64_t *)b);
    return x < y ? -1 : x > y;
}

/* Pass 2: order the events by sequence number. */
static int
order(reader *rd)
{
    if (rd->n_ev == 0) {
        return 0;
    }
    uint64_t range = rd->seq_max - rd->seq_min + 1;
    if (range <= 4 * (uint64_t)rd->n_ev + 4096) {
        uint64_t *slot = calloc(range, sizeof(uint64_t));
        if (!slot) {
            return fail(rd->r, "out of memory");
        }
        size_t dup = 0;
        for (size_t i = 0; i < rd->n_ev; i++) {
            uint64_t k = rec_seq(rd, rd->ev[i]) - rd->seq_min;
            if (slot[k]) {
                dup++;      /* the same number twice: keep the first */
                continue;
            }
            slot[k] = rd->ev[i];
        }
        size_t n = 0;
        for (uint64_t k = 0; k < range; k++) {
            if (slot[k]) {
                rd->ev[n++] = slot[k];
            }
        }
        free(slot);
        rd->n_ev = n;
        rd->r->seq_gaps = range - n;
        (void)dup;
    }
    else {
        qsort_r(rd->ev, rd->n_ev, sizeof(uint64_t), cmp_seq, rd);
        rd->r->seq_gaps = range - rd->n_ev;
    }
    return 0;
}

static uint32_t
py_site_of(reader *rd, const pmt_mc_record *h)
{
    uint32_t file, name;
    int32_t line = h->line;
    if (h->code == 0) {
        file = rd->no_frame_file;
        name = rd->no_frame_name;
        line = 0;
    }
    else if (h->code < rd->codes_cap && rd->codes[h->code].defined) {
        file = rd->codes[h->code].file;
        name = rd->codes[h->code].name;
    }
    else {
        file = rd->unknown_name;
        name = rd->unknown_name;
    }
    int created;
    uint32_t s = site_get(&rd->py, (uint64_t)file << 32 | name, (uint64_t)(uint32_t)line,
                          &created);
    if (s != NO_SITE && created) {
        rd->py.v[s].file = file;
        rd->py.v[s].name = name;
        rd->py.v[s].line = line;
    }
    return s;
}

static uint32_t
native_site_of(reader *rd, const pmt_mc_record *h)
{
    if (rd->rs < PMT_MC_RECORD_NATIVE) {
        return NO_SITE;
    }
    int created;
    uint32_t s = site_get(&rd->nat, h->native, 0, &created);
    if (s != NO_SITE && created) {
        rd->nat.v[s].addr = h->native;
        rd->nat.v[s].line = -1;
    }
    return s;
}

static void
note_big(reader *rd, uint64_t size, uint64_t seq, uint64_t addr, unsigned kind,
         uint32_t py, uint32_t nat)
{
    size_t at;
    if (rd->n_big < PMT_MC_NBIG) {
        at = rd->n_big++;
    }
    else {
        at = 0;
        for (size_t i = 1; i < PMT_MC_NBIG; i++) {
            if (rd->big[i].size < rd->big[at].size) {
                at = i;
            }
        }
        if (rd->big[at].size >= size) {
            return;
        }
    }
    rd->big[at] = (pmt_mc_big){.size = size, .seq = seq, .kind = kind, .freed = 1,
                               .py_site = py, .native_site = nat};
    rd->big_addr[at] = addr;
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

/* Pass 3: replay the events in order. */
static int
replay(reader *rd)
{
    pmt_mc_report *r = rd->r;
    uint64_t cur = 0, cur_malloc = 0, cur_mmap = 0;
    for (size_t i = 0; i < rd->n_ev; i++) {
        const pmt_mc_record *h = rec_at(rd, rd->ev[i]);
        unsigned kind = (unsigned)(h->seq_kind & 0xff);
        uint64_t seq = h->seq_kind >> 8;
        r->events++;
        if (kind == PMT_MC_MMAP) {
            uint64_t gone;
            if (region_release(&rd->maps, h->a, h->b, &gone) < 0) {
                return fail(r, "out of memory");
            }
            cur -= gone;
            cur_mmap -= gone;
            region g = {.start = h->a, .len = h->b, .seq = seq,
                        .py = py_site_of(rd, h), .nat = native_site_of(rd, h)};
            if (g.py == NO_SITE || region_add(&rd->maps, &g) < 0) {
                return fail(r, "out of memory");
            }
            account(&rd->py.v[g.py], h->b, 1);
            if (g.nat != NO_SITE) {
                account(&rd->nat.v[g.nat], h->b, 1);
            }
            r->mmap_bytes += h->b;
            r->mmap_count++;
            cur += h->b;
            cur_mmap += h->b;
            note_big(rd, h->b, seq, h->a, kind, g.py, g.nat);
        }
        else if (pmt_mc_is_alloc(kind)) {
            live_block *b = live_find(&rd->live, h->a);
            if (b) {
                /* its release was lost: count it released now */
                cur -= b->size;
                cur_malloc -= b->size;
            }
            else {
                b = live_insert(&rd->live, h->a);
                if (!b) {
                    return fail(r, "out of memory");
                }
            }
            b->size = h->b;
            b->seq = seq;
            b->kind = kind;
            b->py = py_site_of(rd, h);
            b->nat = native_site_of(rd, h);
            if (b->py == NO_SITE) {
                return fail(r, "out of memory");
            }
            account(&rd->py.v[b->py], h->b, 0);
            if (b->nat != NO_SITE) {
                account(&rd->nat.v[b->nat], h->b, 0);
            }
            r->malloc_bytes += h->b;
            r->malloc_count++;
            cur += h->b;
            cur_malloc += h->b;
            note_big(rd, h->b, seq, h->a, kind, b->py, b->nat);
        }
        else if (kind == PMT_MC_MUNMAP) {
            uint64_t gone;
            if (region_release(&rd->maps, h->a, h->b, &gone) < 0) {
                return fail(r, "out of memory");
            }
            cur -= gone;
            cur_mmap -= gone;
        }
        else {
            live_block *b = live_find(&rd->live, h->a);
            if (!b) {
                r->unknown_frees++;
                continue;
            }
            cur -= b->size;
            cur_malloc -= b->size;
            live_remove(&rd->live, b);
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
    r->total_bytes = r->malloc_bytes + r->mmap_bytes;
    r->total_count = r->malloc_count + r->mmap_count;
    /* what is still live: leak candidates */
    for (size_t i = 0; i < rd->live.cap; i++) {
        live_block *b = &rd->live.v[i];
        if (!b->addr) {
            continue;
        }
        rd->py.v[b->py].live_bytes += b->size;
        rd->py.v[b->py].live_count++;
        if (b->nat != NO_SITE) {
            rd->nat.v[b->nat].live_bytes += b->size;
            rd->nat.v[b->nat].live_count++;
        }
        r->live_malloc_bytes += b->size;
        r->live_count++;
    }
    for (size_t i = 0; i < rd->maps.len; i++) {
        region *g = &rd->maps.v[i];
        rd->py.v[g->py].live_bytes += g->len;
        rd->py.v[g->py].live_count++;
        if (g->nat != NO_SITE) {
            rd->nat.v[g->nat].live_bytes += g->len;
            rd->nat.v[g->nat].live_count++;
        }
        r->live_mmap_bytes += g->len;
        r->live_count++;
    }
    r->live_bytes = r->live_malloc_bytes + r->live_mmap_bytes;
    for (size_t i = 0; i < rd->n_big; i++) {
        uint64_t a = rd->big_addr[i];
        if (rd->big[i].kind == PMT_MC_MMAP) {
            size_t k = region_lower(&rd->maps, a);
            rd->big[i].freed = !(k < rd->maps.len && rd->maps.v[k].seq == rd->big[i].seq);
        }
        else {
            live_block *b = live_find(&rd->live, a);
            rd->big[i].freed = !(b && b->seq == rd->big[i].seq);
        }
    }
    return 0;
}

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
    return x->line < y->line ? -1 : x->line > y->line;
}

static int
cmp_site_idx(const void *a, const void *b, void *arg)
{
    const pmt_mc_site *v = arg;
    return cmp_site(&v[*(const uint32_t *)a], &v[*(const uint32_t *)b]);
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

static const module_def *
module_of(const reader *rd, uint64_t addr)
{
    for (size_t i = 0; i < rd->n_mods; i++) {
        if (addr >= rd->mods[i].lo && addr < rd->mods[i].hi) {
            return &rd->mods[i];
        }
    }
    return NULL;
}

/* Turn the accumulators into the report's site arrays (sorted; big[] refers
 * to sites by their index after sorting). */
static int
finish(reader *rd)
{
    pmt_mc_report *r = rd->r;
    /* native sites: module + offset + symbol */
    uint32_t *nat_sym = calloc(rd->nat.len + 1, sizeof(uint32_t));
    uint32_t *nat_mod = calloc(rd->nat.len + 1, sizeof(uint32_t));
    uint64_t *nat_off = calloc(rd->nat.len + 1, sizeof(uint64_t));
    if (!nat_sym || !nat_mod || !nat_off) {
        free(nat_sym);
        free(nat_mod);
        free(nat_off);
        return fail(r, "out of memory");
    }
    int64_t empty = intern(&rd->strs, r, "", 0);
    int64_t unknown_mod = intern(&rd->strs, r, "?", 1);
    if (empty < 0 || unknown_mod < 0) {
        goto oom;
    }
    pmt_elfsym_cache *cache = pmt_elfsym_cache_new();
    for (size_t i = 0; i < rd->nat.len; i++) {
        site_acc *s = &rd->nat.v[i];
        const module_def *m = module_of(rd, s->addr);
        nat_sym[i] = (uint32_t)empty;
        nat_mod[i] = (uint32_t)unknown_mod;
        nat_off[i] = s->addr;
        if (m) {
            nat_mod[i] = m->path;
            nat_off[i] = s->addr - m->bias;
            char sym[256];
            /* the return address points after the call: look up addr - 1 */
            if (cache && pmt_elfsym_lookup(cache, r->strings + m->path, nat_off[i] - 1,
                                           sym, sizeof(sym)) == 0) {
                int64_t so = intern(&rd->strs, r, sym, strlen(sym));
                if (so < 0) {
                    pmt_elfsym_cache_free(cache);
                    goto oom;
                }
                nat_sym[i] = (uint32_t)so;
            }
        }
    }
    pmt_elfsym_cache_free(cache);
    /* From here r->strings no longer moves. */
    r->py_sites = calloc(rd->py.len + 1, sizeof(pmt_mc_site));
    r->native_sites = calloc(rd->nat.len + 1, sizeof(pmt_mc_site));
    if (!r->py_sites || !r->native_sites) {
        goto oom;
    }
    for (size_t i = 0; i < rd->py.len; i++) {
        site_acc *s = &rd->py.v[i];
        pmt_mc_site *o = &r->py_sites[i];
        o->file = r->strings + s->file;
        o->function = r->strings + s->name;
        o->line = s->line;
        o->addr = i;    /* original index, to fix up big[] after sorting */
        o->bytes = s->bytes;
        o->count = s->count;
        o->malloc_bytes = s->malloc_bytes;
        o->malloc_count = s->malloc_count;
        o->mmap_bytes = s->mmap_bytes;
        o->mmap_count = s->mmap_count;
        o->live_bytes = s->live_bytes;
        o->live_count = s->live_count;
    }
    for (size_t i = 0; i < rd->nat.len; i++) {
        site_acc *s = &rd->nat.v[i];
        pmt_mc_site *o = &r->native_sites[i];
        o->file = r->strings + nat_mod[i];
        o->function = r->strings + nat_sym[i];
        o->line = -1;
        o->addr = s->addr;
        o->offset = nat_off[i];
        o->bytes = s->bytes;
        o->count = s->count;
        o->malloc_bytes = s->malloc_bytes;
        o->malloc_count = s->malloc_count;
        o->mmap_bytes = s->mmap_bytes;
        o->mmap_count = s->mmap_count;
        o->live_bytes = s->live_bytes;
        o->live_count = s->live_count;
    }
    r->n_py_sites = rd->py.len;
    r->n_native_sites = rd->nat.len;
    /* sort, remembering where each original index went */
    uint32_t *py_pos = calloc(rd->py.len + 1, sizeof(uint32_t));
    uint32_t *nat_pos = calloc(rd->nat.len + 1, sizeof(uint32_t));
    if (!py_pos || !nat_pos) {
        free(py_pos);
        free(nat_pos);
        goto oom;
    }
    qsort(r->py_sites, r->n_py_sites, sizeof(pmt_mc_site), cmp_site);
    for (size_t i = 0; i < r->n_py_sites; i++) {
        py_pos[r->py_sites[i].addr] = (uint32_t)i;
        r->py_sites[i].addr = 0;
    }
    {
        /* native sites: sort through an index array so positions are known */
        size_t n = r->n_native_sites;
        pmt_mc_site *tmp = malloc((n + 1) * sizeof(pmt_mc_site));
        uint32_t *idx = malloc((n + 1) * sizeof(uint32_t));
        if (!tmp || !idx) {
            free(tmp);
            free(idx);
            free(py_pos);
            free(nat_pos);
            goto oom;
        }
        for (size_t i = 0; i < n; i++) {
            idx[i] = (uint32_t)i;
        }
        qsort_r(idx, n, sizeof(uint32_t), cmp_site_idx, r->native_sites);
        for (size_t i = 0; i < n; i++) {
            tmp[i] = r->native_sites[idx[i]];
            nat_pos[idx[i]] = (uint32_t)i;
        }
        memcpy(r->native_sites, tmp, n * sizeof(pmt_mc_site));
        free(tmp);
        free(idx);
    }
    for (size_t i = 0; i < rd->n_big; i++) {
        r->big[i] = rd->big[i];
        r->big[i].py_site = py_pos[rd->big[i].py_site];
        r->big[i].native_site = rd->big[i].native_site == NO_SITE
                                    ? UINT32_MAX
                                    : nat_pos[rd->big[i].native_site];
    }
    r->n_big = rd->n_big;
    qsort(r->big, r->n_big, sizeof(pmt_mc_big), cmp_big);
    free(py_pos);
    free(nat_pos);
    free(nat_sym);
    free(nat_mod);
    free(nat_off);
    return 0;
oom:
    free(nat_sym);
    free(nat_mod);
    free(nat_off);
    return fail(r, "out of memory");
}

static void
reader_free(reader *rd)
{
    free(rd->strs.slots);
    free(rd->codes);
    free(rd->mods);
    free(rd->ev);
    siteset_free(&rd->py);
    siteset_free(&rd->nat);
    free(rd->live.v);
    free(rd->maps.v);
}

int
pmt_mc_read_buffer(const uint8_t *data, size_t len, pmt_mc_report *r)
{
    memset(r, 0, sizeof(*r));
    pmt_mc_header h;
    if (len < sizeof(h)) {
        if (len >= 8 && memcmp(data, PMT_MC_MAGIC, 8) != 0) {
            return fail(r, "not a pymemtrace malloc capture (bad magic)");
        }
        return fail(r, len == 0 ? "empty capture (the traced program wrote nothing)"
                                : "capture cut short inside its header");
    }
    memcpy(&h, data, sizeof(h));
    if (memcmp(h.magic, PMT_MC_MAGIC, 8) != 0) {
        return fail(r, "not a pymemtrace malloc capture (bad magic)");
    }
    if (h.endian != PMT_MC_ENDIAN) {
        return fail(r, "capture written on a machine of the other byte order");
    }
    if (h.version != PMT_MC_VERSION) {
        snprintf(r->error, sizeof(r->error),
                 "capture format version %u is not supported (this reader: %u)", h.version,
                 PMT_MC_VERSION);
        return -1;
    }
    if (h.header_size != PMT_MC_HEADER_SIZE ||
        (h.record_size != PMT_MC_RECORD_BASE && h.record_size != PMT_MC_RECORD_NATIVE)) {
        return fail(r, "corrupt capture header (header or record size)");
    }
    if ((h.record_size == PMT_MC_RECORD_NATIVE) != !!(h.flags & PMT_MC_FLAG_NATIVE)) {
        return fail(r, "corrupt capture header (flags disagree with record size)");
    }
    r->version = h.version;
    r->flags = h.flags;
    r->pid = h.pid;
    r->ppid = h.ppid;
    r->record_size = h.record_size;
    r->start_ns = h.start_ns;

    reader rd;
    memset(&rd, 0, sizeof(rd));
    rd.data = data;
    rd.len = len;
    rd.rs = h.record_size;
    rd.r = r;
    int64_t a = intern(&rd.strs, r, "<no Python frame>", 17);
    int64_t b = intern(&rd.strs, r, "", 0);
    int64_t c = intern(&rd.strs, r, "<unknown code>", 14);
    int rc = -1;
    if (a < 0 || b < 0 || c < 0) {
        fail(r, "out of memory");
        goto done;
    }
    rd.no_frame_file = (uint32_t)a;
    rd.no_frame_name = (uint32_t)b;
    rd.unknown_name = (uint32_t)c;
    if (scan(&rd) < 0 || order(&rd) < 0 || replay(&rd) < 0 || finish(&rd) < 0) {
        goto done;
    }
    rc = 0;
done:
    reader_free(&rd);
    return rc;
}

int
pmt_mc_read(const char *path, pmt_mc_report *r)
{
    memset(r, 0, sizeof(*r));
    int fd = open(path, O_RDONLY | O_CLOEXEC);
    if (fd < 0) {
        snprintf(r->error, sizeof(r->error), "cannot open %s: %s", path, strerror(errno));
        return -1;
    }
    struct stat st;
    if (fstat(fd, &st) < 0) {
        snprintf(r->error, sizeof(r->error), "cannot stat %s: %s", path, strerror(errno));
        close(fd);
        return -1;
    }
    if (!S_ISREG(st.st_mode)) {
        snprintf(r->error, sizeof(r->error), "%s is not a regular file", path);
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
            int rc = pmt_mc_read_buffer(m, len, r);
            munmap(m, len);
            return rc;
        }
    }
    uint8_t *buf = malloc(len ? len : 1);
    if (!buf) {
        close(fd);
        return fail(r, "out of memory");
    }
    size_t got = 0;
    while (got < len) {
        ssize_t n = read(fd, buf + got, len - got);
        if (n < 0 && errno == EINTR) {
            continue;
        }
        if (n < 0) {
            snprintf(r->error, sizeof(r->error), "cannot read %s: %s", path, strerror(errno));
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
    int rc = pmt_mc_read_buffer(buf, got, r);
    free(buf);
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
