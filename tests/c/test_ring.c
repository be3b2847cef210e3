/* test_ring.c: unit tests for src/core/ring (records awaiting delivery). */
#include "ctest.h"
#include "ring.h"

#include <stdlib.h>

static void
test_capacity(void)
{
    CHECK_EQ_INT(pmt_ring_capacity(1.0, 0.1), 64);          /* at least 64 */
    CHECK_EQ_INT(pmt_ring_capacity(0.01, 0.1), 200);        /* two seconds */
    CHECK_EQ_INT(pmt_ring_capacity(0.01, 1.0), 400);        /* four latencies */
    CHECK_EQ_INT(pmt_ring_capacity(1e-6, 0.1), 16384);      /* at most 16384 */
}

static void
test_put_swap_clear(void)
{
    pmt_ring r;
    CHECK_EQ_INT(pmt_ring_init(&r, 4), 0);
    CHECK(!pmt_ring_due(&r, 100.0, 0.1));
    CHECK_EQ_INT(pmt_ring_put(&r, 10.0, 1, "start", 5, NULL), 0);
    /* one record of four: due only once it is latency old */
    CHECK(!pmt_ring_due(&r, 10.05, 0.1));
    CHECK(pmt_ring_due(&r, 10.1, 0.1));
    char *heap = malloc(1000);
    memset(heap, 'x', 1000);
    CHECK_EQ_INT(pmt_ring_put(&r, 10.01, 0, NULL, 1000, heap), 0);
    /* half full: due at once */
    CHECK(pmt_ring_due(&r, 10.01, 0.1));
    CHECK_EQ_INT(pmt_ring_swap(&r), 2);
    CHECK_EQ_INT(r.nfill, 0);
    CHECK(r.spare[0].heap == NULL);
    CHECK(memcmp(pmt_slot_text(&r.spare[0]), "start", 5) == 0);
    CHECK(pmt_slot_text(&r.spare[1]) == heap && r.spare[1].len == 1000);
    CHECK_EQ_INT(r.spare[0].kind, 1);
    /* filling goes on while the batch waits */
    CHECK_EQ_INT(pmt_ring_put(&r, 10.2, 0, "a", 1, NULL), 0);
    pmt_ring_clear_batch(&r);       /* frees the heap record */
    CHECK_EQ_INT(r.nbatch, 0);
    CHECK(r.spare[1].heap == NULL);
    pmt_ring_free(&r);
    pmt_ring_free(&r);              /* idempotent */
}

static void
test_full_drops_and_counts(void)
{
    pmt_ring r;
    CHECK_EQ_INT(pmt_ring_init(&r, 2), 0);
    CHECK_EQ_INT(pmt_ring_put(&r, 1.0, 0, "a", 1, NULL), 0);
    CHECK_EQ_INT(pmt_ring_put(&r, 2.0, 0, "b", 1, NULL), 0);
    CHECK_EQ_INT(pmt_ring_put(&r, 3.0, 0, "c", 1, NULL), -1);
    CHECK_EQ_INT(pmt_ring_put(&r, 4.0, 0, NULL, 8, malloc(8)), -1);   /* freed, not leaked */
    CHECK_EQ_INT(r.dropped, 2);
    CHECK_EQ_INT(r.nfill, 2);
    /* records left in both buffers are freed with the ring */
    pmt_ring_swap(&r);
    CHECK_EQ_INT(pmt_ring_put(&r, 5.0, 0, NULL, 8, malloc(8)), 0);
    pmt_ring_free(&r);
}

int
main(void)
{
    test_capacity();
    test_put_swap_clear();
    test_full_drops_and_counts();
    CTEST_MAIN_END();
}
