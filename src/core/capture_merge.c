/* capture_merge.c: a capture's events in sequence order, without holding
 * them (see capture_read.h).
 *
 * Each chunk is one thread's, and a thread takes its sequence numbers in
 * order, so every chunk is a sorted run.  The chunks are taken up in the
 * order of their first numbers (capture_read.c sorted them): a chunk joins
 * the merge when the merge reaches its first number, and leaves it after its
 * last event.  A min-heap keyed by (next number, place in the file) picks
 * the next event.  At any moment the merge holds the chunks that span the
 * current number: about one per thread then running, each a cursor into the
 * mapped capture, or for a packed capture one inflated chunk.  A number
 * handed out twice (a corrupt or duplicated record) keeps the first.  A
 * chunk whose numbers are not in order (not what the writer makes; a
 * corrupt or hand-made capture) is decoded and sorted when taken up.
 */
#include <stdlib.h>
#include <string.h>

#include "capture_cursor.h"
#include "capture_read.h"
#include "grow.h"

struct pmt_cap_source {
    pmt_cap_cursor cur;
    pmt_mc_record head;     /* its next event */
    uint32_t index;         /* its place in the file: ties go to the earlier */
    uint8_t *buf;           /* packed: its inflated bytes (else NULL) */
    const uint8_t *bytes;   /* raw: its bytes, given back when it is done */
    size_t n;
    pmt_mc_record *sorted;  /* an unsorted chunk's events, sorted (else NULL) */
    size_t n_sorted, at;
};

/* An event and its place in its chunk: a sort that keeps the first of
 * equal numbers first. */
typedef struct {
    pmt_mc_record r;
    size_t at;
} placed;

static int
cmp_placed(const void *a, const void *b)
{
    const placed *x = a, *y = b;
    uint64_t s = x->r.seq_kind >> 8, t = y->r.seq_kind >> 8;
    if (s != t) {
        return s < t ? -1 : 1;
    }
    return x->at < y->at ? -1 : x->at > y->at;
}

/* A chunk whose numbers are out of order: its events decoded and sorted
 * (bounded by one chunk).  -1 out of memory. */
static int
sort_chunk(pmt_cap_source *s, uint64_t events)
{
    placed *v = malloc((size_t)(events ? events : 1) * sizeof(placed));
    if (!v) {
        return -1;
    }
    size_t n = 0;
    pmt_mc_record r;
    while (n < events && pmt_cursor_next_event(&s->cur, &r)) {
        v[n] = (placed){r, n};
        n++;
    }
    qsort(v, n, sizeof(placed), cmp_placed);
    s->sorted = (pmt_mc_record *)v;
    for (size_t i = 0; i < n; i++) {
        /* in place: each record moves to an earlier or equal spot (may overlap) */
        memmove(&s->sorted[i], &v[i].r, sizeof(pmt_mc_record));
    }
    s->n_sorted = n;
    s->at = 0;
    return 0;
}

/* The source's next event: 1, or 0 when it has no more. */
static int
advance(pmt_cap_source *s)
{
    if (s->sorted) {
        if (s->at >= s->n_sorted) {
            return 0;
        }
        s->head = s->sorted[s->at++];
        return 1;
    }
    return pmt_cursor_next_event(&s->cur, &s->head);
}

static int
before(const pmt_cap_source *x, const pmt_cap_source *y)
{
    uint64_t a = x->head.seq_kind >> 8, b = y->head.seq_kind >> 8;
    return a != b ? a < b : x->index < y->index;
}

static void
sift_down(pmt_capture_iter *it, size_t i)
{
    pmt_cap_source *h = it->heap;
    for (;;) {
        size_t l = 2 * i + 1, r = l + 1, m = i;
        if (l < it->n && before(&h[l], &h[m])) {
            m = l;
        }
        if (r < it->n && before(&h[r], &h[m])) {
            m = r;
        }
        if (m == i) {
            return;
        }
        pmt_cap_source t = h[i];
        h[i] = h[m];
        h[m] = t;
        i = m;
    }
}

static void
sift_up(pmt_capture_iter *it, size_t i)
{
    pmt_cap_source *h = it->heap;
    while (i > 0 && before(&h[i], &h[(i - 1) / 2])) {
        pmt_cap_source t = h[i];
        h[i] = h[(i - 1) / 2];
        h[(i - 1) / 2] = t;
        i = (i - 1) / 2;
    }
}

/* A source is done: its buffer kept for the next chunk, its pages given back. */
static int
retire(pmt_capture_iter *it, pmt_cap_source *s)
{
    free(s->sorted);
    s->sorted = NULL;
    if (s->buf) {
        if (pmt_grow((void **)&it->spare, &it->spare_cap, it->n_spare + 1, sizeof(uint8_t *)) <
            0) {
            free(s->buf);
            return -1;
        }
        it->spare[it->n_spare++] = s->buf;
    }
    else {
        pmt_capture_drop_pages(it->c, s->bytes, s->n);
    }
    return 0;
}

/* Take up the next chunk: -1 out of memory. */
static int
take_up(pmt_capture_iter *it)
{
    const pmt_capture *c = it->c;
    const pmt_cap_chunk *k = &c->chunks[it->next++];
    pmt_cap_source s = {.index = k->index};
    if (c->header.flags & PMT_MC_FLAG_PACKED) {
        s.buf = it->n_spare ? it->spare[--it->n_spare] : malloc(c->header.chunk_size);
        if (!s.buf) {
            return -1;
        }
    }
    s.n = pmt_capture_chunk_bytes(c, k->off, k->src_len, k->len, s.buf, &s.bytes);
    pmt_cursor_init(&s.cur, s.bytes, s.bytes + s.n, c->header.flags);
    if (k->unsorted && sort_chunk(&s, k->events) < 0) {
        free(s.buf);
        return -1;
    }
    if (!advance(&s)) {
        return retire(it, &s);    /* cannot happen for a chunk the scan counted */
    }
    if (pmt_grow((void **)&it->heap, &it->cap, it->n + 1, sizeof(pmt_cap_source)) < 0) {
        free(s.buf);
        free(s.sorted);
        return -1;
    }
    it->heap[it->n++] = s;
    sift_up(it, it->n - 1);
    return 0;
}

int
pmt_capture_iter_open(pmt_capture_iter *it, const pmt_capture *c)
{
    memset(it, 0, sizeof(*it));
    it->c = c;
    return 0;
}

int
pmt_capture_iter_next(pmt_capture_iter *it, pmt_mc_record *r)
{
    const pmt_capture *c = it->c;
    for (;;) {
        while (it->next < c->n_chunks &&
               (it->n == 0 || c->chunks[it->next].first_seq <= it->heap[0].head.seq_kind >> 8)) {
            if (take_up(it) < 0) {
                return -1;
            }
        }
        if (it->n == 0) {
            return 0;
        }
        pmt_cap_source *top = &it->heap[0];
        *r = top->head;
        if (!advance(top)) {
            if (retire(it, top) < 0) {
                return -1;
            }
            it->heap[0] = it->heap[--it->n];
        }
        sift_down(it, 0);
        uint64_t seq = r->seq_kind >> 8;
        if (it->started && seq <= it->last) {
            continue;   /* the same number again, or going backwards: corrupt */
        }
        it->started = 1;
        it->last = seq;
        return 1;
    }
}

void
pmt_capture_iter_close(pmt_capture_iter *it)
{
    for (size_t i = 0; i < it->n; i++) {
        free(it->heap[i].buf);
        free(it->heap[i].sorted);
    }
    for (size_t i = 0; i < it->n_spare; i++) {
        free(it->spare[i]);
    }
    free(it->heap);
    free(it->spare);
    memset(it, 0, sizeof(*it));
}
