/* test_regionset.c: live mappings: releasing the front, the end, a hole in
 * the middle (two ranges left), several ranges at once, nothing at all; the
 * bytes released from ranges with a py. */
#include <stdint.h>

#include "ctest.h"
#include "regionset.h"

static void
add(pmt_regionset *rs, uint64_t start, uint64_t len, uint64_t seq)
{
    pmt_region g = {.start = start, .len = len, .seq = seq, .py = 1, .nat = 2};
    CHECK_EQ_INT(pmt_regionset_add(rs, &g), 0);
}

static uint64_t
release(pmt_regionset *rs, uint64_t a, uint64_t len)
{
    uint64_t gone = 0;
    CHECK_EQ_INT(pmt_regionset_release(rs, a, len, &gone), 0);
    return gone;
}

static void
test_cuts(void)
{
    pmt_regionset rs = {0};
    add(&rs, 0x300000, 0x1000, 3);
    add(&rs, 0x100000, 0x40000, 1);
    add(&rs, 0x200000, 0x2000, 2);
    CHECK_EQ_INT(rs.len, 3);
    CHECK_EQ_INT(rs.v[0].start, 0x100000);     /* kept sorted */
    CHECK_EQ_INT(rs.v[2].start, 0x300000);
    CHECK_EQ_INT(release(&rs, 0x500000, 0x1000), 0);
    CHECK_EQ_INT(release(&rs, 0x110000, 0x10000), 0x10000);   /* a hole */
    CHECK_EQ_INT(rs.len, 4);
    CHECK_EQ_INT(rs.v[0].len, 0x10000);
    CHECK_EQ_INT(rs.v[1].start, 0x120000);
    CHECK_EQ_INT(rs.v[1].len, 0x20000);
    CHECK_EQ_INT(rs.v[1].seq, 1);              /* both halves keep their origin */
    CHECK_EQ_INT(release(&rs, 0x100000, 0x8000), 0x8000);     /* the front */
    CHECK_EQ_INT(rs.v[0].start, 0x108000);
    CHECK_EQ_INT(release(&rs, 0x13f000, 0x1000), 0x1000);     /* the end */
    CHECK_EQ_INT(rs.v[1].len, 0x1f000);
    /* one release over the rest of the first two and all of the third */
    CHECK_EQ_INT(release(&rs, 0x100000, 0x200000 + 0x2000 - 0x100000),
                 0x8000 + 0x1f000 + 0x2000);
    CHECK_EQ_INT(rs.len, 1);
    CHECK_EQ_INT(rs.v[0].start, 0x300000);
    CHECK_EQ_INT(pmt_regionset_lower(&rs, 0x300000), 0);
    CHECK_EQ_INT(pmt_regionset_lower(&rs, 0x300001), 1);
    pmt_regionset_free(&rs);
}

/* One release over a range with a py and one without: only the first's
 * bytes count as released with a py. */
static void
test_released_py(void)
{
    pmt_regionset rs = {0};
    add(&rs, 0x100000, 0x3000, 1);
    pmt_region g = {.start = 0x200000, .len = 0x5000, .seq = 2, .py = PMT_REGION_NO_PY};
    CHECK_EQ_INT(pmt_regionset_add(&rs, &g), 0);
    uint64_t gone = 0, with_py = 0;
    CHECK_EQ_INT(pmt_regionset_release_py(&rs, 0x101000, 0x100000 + 0x1000, &gone, &with_py), 0);
    CHECK_EQ_INT(gone, 0x2000 + 0x2000);
    CHECK_EQ_INT(with_py, 0x2000);
    CHECK_EQ_INT(pmt_regionset_release_py(&rs, 0x100000, 0x1000, &gone, &with_py), 0);
    CHECK(gone == 0x1000 && with_py == 0x1000);
    CHECK_EQ_INT(pmt_regionset_release_py(&rs, 0x202000, 0x3000, &gone, &with_py), 0);
    CHECK(gone == 0x3000 && with_py == 0);
    CHECK_EQ_INT(rs.len, 0);
    pmt_regionset_free(&rs);
}

int
main(void)
{
    test_cuts();
    test_released_py();
    CTEST_MAIN_END();
}
