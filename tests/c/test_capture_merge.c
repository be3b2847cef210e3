/* test_capture_merge.c: the events of a capture in sequence order by a
 * k-way merge of its chunks: threads' chunks interleaved in the file, the
 * merge holding one chunk per thread at a time, a packed capture merged the
 * same way, the same number twice, a chunk out of order, TIME records placed
 * among the events. */
#include <stdint.h>
#include <stdio.h>
#include <string.h>
#include <unistd.h>

#include "capture_build.h"
#include "capture_read.h"
#include "ctest.h"

#define THREADS 3
#define WINDOWS 4
#define PER 90      /* events per thread per window */

/* THREADS threads take numbers in turn; each writes WINDOWS chunks of its
 * own, the chunks of a window side by side in the file. */
static uint64_t
build_threads(void)
{
    header(PMT_MC_RECORD_BASE);
    code(1, "t.py", "f");
    uint64_t seq = 1;
    for (int w = 0; w < WINDOWS; w++) {
        uint64_t base = seq;
        for (int t = 0; t < THREADS; t++) {
            next_chunk();
            if (w == 1 && t == 2) {
                time_rec(5000000, 1 << 24, base + PER);
            }
            for (int i = 0; i < PER; i++) {
                uint64_t s = base + (uint64_t)i * THREADS + (uint64_t)t;
                ev(s, i % 2 ? PMT_MC_FREE : PMT_MC_MALLOC, 0x1000 * (uint64_t)(t + 1) + (uint64_t)i / 2 * 16,
                   32, 1, 7);
            }
        }
        seq = base + PER * THREADS;
    }
    end();
    return seq - 1;
}

/* Walk the merge: every number from 1 to last once, in order; the most
 * chunks it held at once. */
static size_t
walk(const pmt_capture *c, uint64_t last)
{
    pmt_capture_iter it;
    pmt_mc_record r;
    CHECK_EQ_INT(pmt_capture_iter_open(&it, c), 0);
    uint64_t want = 1;
    size_t most = 0;
    int ok = 1;
    while (pmt_capture_iter_next(&it, &r) == 1) {
        ok &= (r.seq_kind >> 8) == want++;
        most = it.n > most ? it.n : most;
    }
    CHECK(ok);
    CHECK_EQ_INT(want - 1, last);
    CHECK_EQ_INT(pmt_capture_iter_next(&it, &r), 0);
    pmt_capture_iter_close(&it);
    return most;
}

static void
test_threads_interleaved(void)
{
    uint64_t last = build_threads();
    pmt_capture c;
    CHECK_EQ_INT(pmt_capture_open(&c, buf, len), 0);
    CHECK_EQ_INT(c.n_ev, last);
    CHECK_EQ_INT(c.seq_gaps, 0);
    CHECK_EQ_INT(c.n_chunks, THREADS * WINDOWS);
    CHECK(walk(&c, last) <= THREADS);   /* one chunk per thread, never all of them */
    pmt_capture_close(&c);
    /* without the counting pass: nothing counted, the same merge */
    CHECK_EQ_INT(pmt_capture_open_mapped(&c, buf, len, PMT_CAP_NO_COUNT), 0);
    CHECK(c.n_ev == 0 && c.n_chunks == THREADS * WINDOWS);
    CHECK(walk(&c, last) <= THREADS);
    pmt_capture_close(&c);
    CHECK_EQ_INT(pmt_capture_open(&c, buf, len), 0);
    /* the TIME record: among the events, before the one numbered seq */
    CHECK_EQ_INT(c.n_times, 1);
    CHECK(c.n_times == 1 && c.times[0].ns == 5000000 && c.times[0].rss == 1 << 24 &&
          c.times[0].pos == PER * THREADS + PER);
    pmt_capture_close(&c);

    /* packed: each chunk its own stream, the same events in the same order */
    char path[] = "/tmp/pmt-test-merge-XXXXXX";
    if (cb_write_temp(path) < 0) {
        CHECK(!"cannot write a capture in /tmp");
        return;
    }
    char err[256];
    CHECK_EQ_INT(pmt_capture_pack(path, 6, err, sizeof(err)), 0);
    pmt_capture_file f;
    CHECK_EQ_INT(pmt_capture_file_load(path, &f, err, sizeof(err)), 0);
    CHECK_EQ_INT(pmt_capture_open_mapped(&c, f.data, f.len, f.mapped), 0);
    CHECK(c.header.flags & PMT_MC_FLAG_PACKED);
    CHECK_EQ_INT(c.n_ev, last);
    CHECK_EQ_INT(c.trailing_bytes, 0);
    CHECK(walk(&c, last) <= THREADS);
    pmt_capture_close(&c);
    /* one stream corrupt: that chunk's events are lost, the others merge */
    uint32_t n;
    memcpy(&n, f.data + PMT_MC_HEADER_SIZE, 4);
    CHECK_EQ_INT(n, (len - PMT_MC_HEADER_SIZE + CB_CHUNK - 1) / CB_CHUNK);
    static uint8_t bad[1 << 16];
    CHECK(f.len <= sizeof(bad));
    memcpy(bad, f.data, f.len);
    size_t first_stream = PMT_MC_HEADER_SIZE + 4 + 4 * (size_t)n;
    uint32_t l0, l1;
    memcpy(&l0, bad + PMT_MC_HEADER_SIZE + 4, 4);
    memcpy(&l1, bad + PMT_MC_HEADER_SIZE + 8, 4);
    memset(bad + first_stream + l0 + 2, 0x55, 8);     /* the second chunk's stream */
    CHECK_EQ_INT(pmt_capture_open(&c, bad, f.len), 0);
    CHECK(c.n_ev < last && c.n_ev >= last - PER && c.trailing_bytes > 0);
    pmt_capture_close(&c);
    /* an index that does not match the inflated length: refused */
    memcpy(bad, f.data, f.len);
    n++;
    memcpy(bad + PMT_MC_HEADER_SIZE, &n, 4);
    CHECK_EQ_INT(pmt_capture_open(&c, bad, f.len), -1);
    CHECK(strstr(c.error, "corrupt packed capture") != NULL);
    pmt_capture_close(&c);
    pmt_capture_file_unload(&f);
    unlink(path);
}

static void
test_duplicates_and_disorder(void)
{
    header(PMT_MC_RECORD_BASE);
    ev(2, PMT_MC_MALLOC, 0x20, 8, 0, 0);
    ev(4, PMT_MC_MALLOC, 0x40, 8, 0, 0);
    next_chunk();
    ev(4, PMT_MC_MALLOC, 0x99, 8, 0, 0);    /* 4 again: the first in the file wins */
    ev(6, PMT_MC_MALLOC, 0x60, 8, 0, 0);
    next_chunk();
    ev(5, PMT_MC_MALLOC, 0x50, 8, 0, 0);    /* out of order within its chunk */
    ev(1, PMT_MC_MALLOC, 0x10, 8, 0, 0);
    ev(3, PMT_MC_MALLOC, 0x30, 8, 0, 0);
    pmt_capture c;
    CHECK_EQ_INT(pmt_capture_open(&c, buf, len), 0);
    CHECK_EQ_INT(c.n_ev, 6);
    pmt_capture_iter it;
    pmt_mc_record r;
    CHECK_EQ_INT(pmt_capture_iter_open(&it, &c), 0);
    for (uint64_t s = 1; s <= 6; s++) {
        CHECK_EQ_INT(pmt_capture_iter_next(&it, &r), 1);
        CHECK_EQ_INT(r.seq_kind >> 8, s);
        CHECK_EQ_INT(r.a, s * 0x10);
    }
    CHECK_EQ_INT(pmt_capture_iter_next(&it, &r), 0);
    pmt_capture_iter_close(&it);
    pmt_capture_close(&c);
}

int
main(void)
{
    test_threads_interleaved();
    test_duplicates_and_disorder();
    CTEST_MAIN_END();
}
