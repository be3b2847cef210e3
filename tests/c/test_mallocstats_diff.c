/* test_mallocstats_diff.c: the diff of two allocator statistics: the seed's
 * layout character for character, classes and free lists that appear or
 * disappear, mimalloc's lines, no change for a snapshot with itself. */
#include "ctest.h"
#include "mallocstats_diff.h"
#include "mallocstats_fixture.h"

#include <stdint.h>
#include <string.h>

static void
test_self_diff(const char *name)
{
    size_t len;
    char *text = read_file(name, &len);
    static pmt_mallocstats_t s;
    pmt_ms_parse(text, len, &s);
    char buf[256];
    pmt_ms_diff_format(&s, &s, buf, sizeof(buf));
    CHECK_EQ_STR(buf, "No change.\n");
    CHECK_EQ_INT(pmt_ms_classes_changed(&s, &s), 0);
    free(text);
}

static void
test_mimalloc_diff(void)
{
    size_t len;
    char *text = read_file("cpython-3.13t-mimalloc.txt", &len);
    static pmt_mallocstats_t s, t;
    pmt_ms_parse(text, len, &s);
    /* mimalloc's lines diff like the others */
    t = s;
    for (int i = 0; i < t.nvalues; i++) {
        if (strcmp(t.values[i].label, "Allocated Blocks") == 0) {
            t.values[i].value += 1234;
        }
    }
    char buf[512];
    pmt_ms_diff_format(&s, &t, buf, sizeof(buf));
    CHECK_EQ_STR(buf, "Allocated Blocks                   =               +1,234\n");
    free(text);
}

/* Apply the seed's example diff to the 3.8 text and format it: the output
 * must be the seed's diff, character for character. */
static void
test_seed_diff_layout(void)
{
    static const struct {
        uint32_t index;
        int64_t dp, du, da;
    } rows[] = {
        {1, 1, 52, 74}, {2, 0, 17, -17}, {3, 0, 33, -33}, {4, 1, 51, -1}, {5, 2, 34, 50},
        {6, 0, 2, -2}, {7, 0, 1, -1}, {10, 0, 1, -1}, {12, 0, 1, -1}, {17, 0, 1, -1},
        {18, 0, 2, -2}, {25, 0, 3, -3}, {26, 0, 3, -3}, {27, 0, 3, -3}, {29, 0, 3, -3},
        {30, 0, 1, -1}, {31, 0, 1, -1},
    };
    static const struct {
        const char *label;
        int64_t dcount, dvalue;
    } values[] = {
        {"# bytes in allocated blocks", 0, 19904}, {"# bytes in available blocks", 0, -3808},
        {"unused pools * 4096 bytes", -4, -16384}, {"# bytes lost to pool headers", 0, 192},
        {"# bytes lost to quantization", 0, 96},
    };
    static const struct {
        const char *name;
        int64_t dcount;
    } lists[] = {
        {"free 1-sized PyTupleObjects", -1}, {"free 5-sized PyTupleObjects", 1},
        {"free PyDictObjects", 2}, {"free PyListObjects", -2}, {"free PyMethodObjects", 1},
    };
    size_t len, explen;
    char *text = read_file("cpython-3.8.txt", &len);
    char *expected = read_file("seed-diff.txt", &explen);
    static pmt_mallocstats_t before, after;
    pmt_ms_parse(text, len, &before);
    /* make sure every class the seed's diff names exists before */
    for (size_t r = 0; r < sizeof(rows) / sizeof(rows[0]); r++) {
        if (!pmt_ms_find_class(&before, rows[r].index)) {
            pmt_ms_class_t *c = &before.classes[before.nclasses++];
            c->index = rows[r].index;
            c->size = (rows[r].index + 1) * 16;
            c->num_pools = 1;
            c->blocks_in_use = 10;
            c->avail_blocks = 20;
        }
    }
    after = before;
    for (size_t r = 0; r < sizeof(rows) / sizeof(rows[0]); r++) {
        pmt_ms_class_t *c = (pmt_ms_class_t *)pmt_ms_find_class(&after, rows[r].index);
        c->num_pools += rows[r].dp;
        c->blocks_in_use += rows[r].du;
        c->avail_blocks += rows[r].da;
    }
    for (size_t v = 0; v < sizeof(values) / sizeof(values[0]); v++) {
        pmt_ms_value_t *x = (pmt_ms_value_t *)pmt_ms_find_value(&after, PMT_MS_SEC_BYTES,
                                                                values[v].label);
        CHECK(x != NULL);
        if (x) {
            x->count += values[v].dcount;
            x->value += values[v].dvalue;
        }
    }
    for (size_t l = 0; l < sizeof(lists) / sizeof(lists[0]); l++) {
        pmt_ms_freelist_t *f = (pmt_ms_freelist_t *)pmt_ms_find_freelist(&after, lists[l].name, -1);
        CHECK(f != NULL);
        if (f) {
            f->count += lists[l].dcount;
            f->total += lists[l].dcount * f->size_each;
        }
    }
    char buf[4096];
    size_t n = pmt_ms_diff_format(&before, &after, buf, sizeof(buf));
    CHECK_EQ_INT(n, strlen(buf));
    CHECK_EQ_STR(buf, expected);
    CHECK_EQ_INT(pmt_ms_classes_changed(&before, &after), 17);

    /* snprintf semantics: a short buffer is NUL-terminated and the full length returned */
    char small[40];
    memset(small, 'x', sizeof(small));
    CHECK_EQ_INT(pmt_ms_diff_format(&before, &after, small, sizeof(small)), n);
    CHECK_EQ_INT(strlen(small), sizeof(small) - 1);
    CHECK(strncmp(small, expected, sizeof(small) - 1) == 0);
    CHECK_EQ_INT(pmt_ms_diff_format(&before, &after, NULL, 0), n);

    /* the reverse diff negates every number */
    pmt_ms_diff_format(&after, &before, buf, sizeof(buf));
    CHECK(strstr(buf, "    1     32          -1             -52           -74\n") != NULL);
    CHECK(strstr(buf, "+4 unused pools * 4096 bytes       =              +16,384\n") != NULL);
    CHECK(strstr(buf, "        -1 free PyMethodObjects * 48 bytes each =                  -48\n")
          != NULL);
    free(text);
    free(expected);
}

/* Classes and free lists that appear or disappear between snapshots. */
static void
test_appear_disappear(void)
{
    const char *a =
        "Small block threshold = 512, in 32 size classes.\n\n"
        "class   size   num pools   blocks in use  avail blocks\n"
        "-----   ----   ---------   -------------  ------------\n"
        "    0     16           1              90           931\n"
        "\n"
        "# arenas allocated current         =                    1\n"
        "1 arenas * 1048576 bytes/arena     =            1,048,576\n"
        "\n"
        "           5 free PyFloatObjects * 24 bytes each =                  120\n";
    const char *b =
        "Small block threshold = 512, in 32 size classes.\n\n"
        "class   size   num pools   blocks in use  avail blocks\n"
        "-----   ----   ---------   -------------  ------------\n"
        "    2     48           1               3           337\n"
        "\n"
        "# arenas allocated current         =                    2\n"
        "2 arenas * 1048576 bytes/arena     =            2,097,152\n"
        "\n"
        "   1 free 1-sized PyTupleObjects * 32 bytes each =                   32\n";
    static pmt_mallocstats_t sa, sb;
    CHECK_EQ_INT(pmt_ms_parse(a, strlen(a), &sa), 7);
    CHECK_EQ_INT(pmt_ms_parse(b, strlen(b), &sb), 7);
    char buf[2048];
    pmt_ms_diff_format(&sa, &sb, buf, sizeof(buf));
    CHECK_EQ_STR(buf,
        "class   size   num pools   blocks in use  avail blocks\n"
        "-----   ----   ---------   -------------  ------------\n"
        "    0     16          -1             -90          -931\n"
        "    2     48          +1              +3          +337\n"
        "\n"
        "# arenas allocated current         =                   +1\n"
        "+1 arenas * 1048576 bytes/arena    =           +1,048,576\n"
        "\n"
        "  +1 free 1-sized PyTupleObjects * 32 bytes each =                  +32\n"
        "          -5 free PyFloatObjects * 24 bytes each =                 -120\n");
    CHECK_EQ_INT(pmt_ms_classes_changed(&sa, &sb), 2);
}

/* Values at the ends of int64_t (a parsed text may hold any): a difference
 * past them is held at the end it passed, not overflowed (fuzz_mallocstats,
 * UBSan: 7429938585244125392 - -8070448793171023952). */
static void
test_extreme_deltas(void)
{
    static pmt_mallocstats_t sa, sb;
    memset(&sa, 0, sizeof(sa));
    memset(&sb, 0, sizeof(sb));
    sa.nfreelists = sb.nfreelists = 1;
    snprintf(sa.freelists[0].name, PMT_MS_LABEL, "free PyFloatObjects");
    snprintf(sb.freelists[0].name, PMT_MS_LABEL, "free PyFloatObjects");
    sa.freelists[0].size_each = sb.freelists[0].size_each = 24;
    sa.freelists[0].count = INT64_MIN;
    sb.freelists[0].count = 1;
    sa.freelists[0].total = -8070448793171023952;
    sb.freelists[0].total = 7429938585244125392;
    sa.nclasses = sb.nclasses = 1;
    sb.classes[0].num_pools = INT64_MIN;
    sa.classes[0].num_pools = 5;
    char buf[2048];
    pmt_ms_diff_format(&sa, &sb, buf, sizeof(buf));
    CHECK(strstr(buf, "+9223372036854775807 free PyFloatObjects") != NULL);
    CHECK(strstr(buf, "+9,223,372,036,854,775,807") != NULL);
    CHECK(strstr(buf, "-9223372036854775808") != NULL);
    sb.freelists[0].total = 100;
    sa.freelists[0].total = 40;
    sb.freelists[0].count = sa.freelists[0].count;
    pmt_ms_diff_format(&sa, &sb, buf, sizeof(buf));
    CHECK(strstr(buf, "+0 free PyFloatObjects") != NULL && strstr(buf, "+60") != NULL);
}

/* Garbage, truncation and odd input never crash and are counted. */
int
main(void)
{
    static const char *fixtures[] = {
        "cpython-3.8.txt", "cpython-3.9.txt", "cpython-3.10.txt", "cpython-3.11.txt",
        "cpython-3.12.txt", "cpython-3.13.txt", "cpython-3.11-malloc.txt", "seed-example.txt",
    };
    for (size_t i = 0; i < sizeof(fixtures) / sizeof(fixtures[0]); i++) {
        test_self_diff(fixtures[i]);
    }
    test_mimalloc_diff();
    test_seed_diff_layout();
    test_appear_disappear();
    test_extreme_deltas();
    CTEST_MAIN_END();
}
