/* test_rssgate.c: the read gate's attached form (src/core/rssgate.h): the
 * counting functions trip it exactly when the full check would say "read"
 * (or earlier, for a dip that recovered before the event), for one gate and
 * for several attached at once; detaching takes a gate's limits out. */
#include "ctest.h"
#include "rssgate.h"

#include <stdint.h>

static uint64_t rng = 88172645463325252ULL;

static uint64_t
next_rand(void)
{
    rng ^= rng << 13;
    rng ^= rng >> 7;
    rng ^= rng << 17;
    return rng;
}

static void
test_single_gate_scenarios(void)
{
    pmt_gate g;
    uint64_t now = 1000;
    pmt_gate_init(&g, 4096, 64, 0, 0, now);
    pmt_gate_attach(&g);
    CHECK_EQ_INT(pmt_gate_due_attached(&g, now), 0);
    /* reuse under the high-water mark: never due */
    pmt_gate_add_bytes(100000);
    CHECK_EQ_INT(pmt_gate_due_attached(&g, now), 1);
    pmt_gate_mark_rss(&g, now, 1 << 20);
    for (int i = 0; i < 1000; i++) {
        pmt_gate_add_bytes(-2000);
        pmt_gate_add_bytes(2000);
        CHECK_EQ_INT(pmt_gate_due_attached(&g, now), 0);
    }
    /* 4095 new bytes: not yet; one more: due */
    pmt_gate_add_bytes(4095);
    CHECK_EQ_INT(pmt_gate_due_attached(&g, now), 0);
    pmt_gate_add_bytes(1);
    CHECK_EQ_INT(pmt_gate_due_attached(&g, now), 1);
    pmt_gate_mark_rss(&g, now, 1 << 20);
    CHECK_EQ_INT(pmt_gate_due_attached(&g, now), 0);
    /* a spike above the mark between two events counts */
    pmt_gate_add_bytes(5000);
    pmt_gate_add_bytes(-5000);
    CHECK_EQ_INT(pmt_gate_due_attached(&g, now), 1);
    pmt_gate_mark_rss(&g, now, 1 << 20);
    /* a fall by the drop level */
    pmt_gate_add_bytes(-(PMT_GATE_DROP_BYTES - 1));
    CHECK_EQ_INT(pmt_gate_due_attached(&g, now), 0);
    pmt_gate_add_bytes(-1);
    CHECK_EQ_INT(pmt_gate_due_attached(&g, now), 1);
    /* RSS fell: the marks restart, growing back is new memory */
    pmt_gate_mark_rss(&g, now, (1 << 20) - (64 << 10));
    pmt_gate_add_bytes(4096);
    CHECK_EQ_INT(pmt_gate_due_attached(&g, now), 1);
    pmt_gate_mark_rss(&g, now, 1 << 20);
    /* small blocks: 64 above the mark */
    pmt_gate_add_blocks(63);
    CHECK_EQ_INT(pmt_gate_due_attached(&g, now), 0);
    pmt_gate_add_blocks(1);
    CHECK_EQ_INT(pmt_gate_due_attached(&g, now), 1);
    pmt_gate_mark(&g, now);
    pmt_gate_add_blocks(-64);
    pmt_gate_add_blocks(64);
    CHECK_EQ_INT(pmt_gate_due_attached(&g, now), 0);
    /* a large block or arena */
    pmt_gate_add_large();
    CHECK_EQ_INT(pmt_gate_due_attached(&g, now), 1);
    pmt_gate_mark(&g, now);
    CHECK_EQ_INT(pmt_gate_due_attached(&g, now), 0);
    pmt_gate_detach(&g);
    /* nothing attached: the counters trip nothing */
    uint64_t large = PMT_GATE_LOAD(pmt_gate_large);
    pmt_gate_add_bytes(1 << 30);
    pmt_gate_add_bytes(-(1 << 30));
    pmt_gate_add_blocks(1 << 20);
    CHECK_EQ_INT(PMT_GATE_LOAD(pmt_gate_large), large);
    CHECK_EQ_INT(PMT_GATE_LOAD(pmt_gate_trip_bytes), INT64_MAX);
}

static void
test_event_and_time_bounds(void)
{
    pmt_gate g;
    pmt_gate_init(&g, 4096, 64, 3, 0, 0);
    pmt_gate_attach(&g);
    CHECK_EQ_INT(pmt_gate_due_attached(&g, 0), 0);
    CHECK_EQ_INT(pmt_gate_due_attached(&g, 0), 0);
    CHECK_EQ_INT(pmt_gate_due_attached(&g, 0), 1);     /* the third event */
    pmt_gate_mark(&g, 0);
    CHECK_EQ_INT(pmt_gate_due_attached(&g, 0), 0);
    pmt_gate_detach(&g);
    pmt_gate_init(&g, 4096, 64, 0, 1000000, 5);
    pmt_gate_attach(&g);
    CHECK_EQ_INT(pmt_gate_due_attached(&g, 5 + 999999), 0);
    CHECK_EQ_INT(pmt_gate_due_attached(&g, 5 + 1000000), 1);
    pmt_gate_detach(&g);
    pmt_gate_init(&g, 4096, 64, 0, 0, 0);
    pmt_gate_attach(&g);
    int reads = 0;
    for (uint64_t i = 0; i < 100000; i++) {
        reads += pmt_gate_due_attached(&g, i * 1000000000ULL);   /* both bounds off */
    }
    CHECK_EQ_INT(reads, 0);
    pmt_gate_detach(&g);
    /* a time bound near the end of the clock does not wrap */
    pmt_gate_init(&g, 4096, 64, 0, 1000, UINT64_MAX - 10);
    CHECK(g.deadline == UINT64_MAX);
}

/* Random allocation traffic: whenever the full check says read, the attached
 * form does too. */
static void
test_attached_form_never_misses_what_the_full_check_sees(void)
{
    pmt_gate full, fast;
    pmt_gate_init(&full, 4096, 64, 0, 0, 0);
    pmt_gate_init(&fast, 4096, 64, 0, 0, 0);
    pmt_gate_attach(&fast);
    int64_t rss = 1 << 24;
    int missed = 0, both = 0, extra = 0;
    for (int ev = 0; ev < 200000; ev++) {
        int ops = (int)(next_rand() % 4);
        for (int k = 0; k < ops; k++) {
            uint64_t r = next_rand();
            switch (r % 8) {
            case 0: case 1: case 2:
                pmt_gate_add_bytes((int64_t)(r >> 8) % 3000);
                break;
            case 3: case 4:
                pmt_gate_add_bytes(-((int64_t)(r >> 8) % 3000));
                break;
            case 5:
                pmt_gate_add_blocks((r >> 8) % 2 ? 1 : -1);
                break;
            case 6:
                pmt_gate_add_blocks(1);
                break;
            default:
                if ((r >> 8) % 50 == 0) {
                    pmt_gate_add_large();
                }
            }
        }
        int a = pmt_gate_due(&full, 0);
        int b = pmt_gate_due_attached(&fast, 0);
        missed += a && !b;
        both += a && b;
        extra += b && !a;
        if (a || b) {
            rss += (int64_t)(next_rand() % 3) * 4096 - 4096;   /* sometimes it falls */
            pmt_gate_mark_rss(&full, 0, rss);
            pmt_gate_mark_rss(&fast, 0, rss);
        }
    }
    CHECK_EQ_INT(missed, 0);
    CHECK(both > 1000);
    if (ctest_failures) {
        fprintf(stderr, "missed=%d both=%d extra=%d\n", missed, both, extra);
    }
    pmt_gate_detach(&fast);
}

static void
test_several_gates(void)
{
    pmt_gate a, b;
    pmt_gate_init(&a, 4096, 64, 0, 0, 0);
    pmt_gate_attach(&a);
    pmt_gate_add_bytes(3000);
    pmt_gate_init(&b, 65536, 64, 0, 0, 0);      /* its marks start 3000 higher */
    pmt_gate_attach(&b);
    CHECK_EQ_INT(PMT_GATE_LOAD(pmt_gate_trip_bytes), a.hw_bytes + 4096);
    pmt_gate_add_bytes(1096);                   /* a's limit reached: both read */
    CHECK_EQ_INT(pmt_gate_due_attached(&a, 0), 1);
    CHECK_EQ_INT(pmt_gate_due_attached(&b, 0), 1);
    pmt_gate_mark(&a, 0);
    pmt_gate_mark(&b, 0);
    /* a gone: b's limit alone */
    pmt_gate_detach(&a);
    CHECK_EQ_INT(PMT_GATE_LOAD(pmt_gate_trip_bytes), b.hw_bytes + 65536);
    pmt_gate_add_bytes(60000);
    CHECK_EQ_INT(pmt_gate_due_attached(&b, 0), 0);
    pmt_gate_add_bytes(5536);
    CHECK_EQ_INT(pmt_gate_due_attached(&b, 0), 1);
    pmt_gate_detach(&b);
    pmt_gate_detach(&b);                        /* twice: harmless */
    CHECK_EQ_INT(PMT_GATE_LOAD(pmt_gate_trip_bytes), INT64_MAX);
    CHECK_EQ_INT(PMT_GATE_LOAD(pmt_gate_trip_drop), INT64_MIN);
    CHECK_EQ_INT(PMT_GATE_LOAD(pmt_gate_trip_blocks), INT64_MAX);
}

int
main(void)
{
    test_single_gate_scenarios();
    test_event_and_time_bounds();
    test_attached_form_never_misses_what_the_full_check_sees();
    test_several_gates();
    CTEST_MAIN_END();
}
