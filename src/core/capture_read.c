/* capture_read.c: read a `pymemtrace malloc` capture's header, and every
 * chunk once to keep its definitions (capture_defs.c) and note its events'
 * chunks for the merge; count the events (see capture_read.h).  Loading a
 * capture file: capture_file.c. */
#define _GNU_SOURCE 1
#include "capture_read.h"
#include "capture_cursor.h"
#include "capture_defs.h"
#include "grow.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

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
            if (pmt_capture_keep_def(c, &d) < 0) {
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
    pmt_capture_defs_init(c);
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
