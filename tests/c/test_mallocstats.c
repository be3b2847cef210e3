/* test_mallocstats.c: the sys._debugmallocstats() parser, diff and formatter
 * against the fixture texts of CPython 3.8 to 3.13 and the seed's diff. */
#include "ctest.h"
#include "mallocstats.h"

#include <stdint.h>

#ifndef FIXTURES
#define FIXTURES "tests/fixtures/mallocstats/"
#endif

static char *
read_file(const char *name, size_t *len)
{
    char path[512];
    snprintf(path, sizeof(path), "%s%s", FIXTURES, name);
    FILE *f = fopen(path, "rb");
    if (f == NULL) {
        fprintf(stderr, "cannot open %s (run from the repository root)\n", path);
        exit(2);
    }
    char *buf = malloc(1 << 20);
    if (buf == NULL) {
        exit(2);
    }
    *len = fread(buf, 1, (1 << 20) - 1, f);
    buf[*len] = '\0';
    fclose(f);
    return buf;
}

static int64_t
value_of(const pmt_mallocstats_t *s, int section, const char *label)
{
    const pmt_ms_value_t *v = pmt_ms_find_value(s, section, label);
    return v ? v->value : INT64_MIN;
}

/* The writer's own invariants hold for whatever the parser read. */
static void
check_pymalloc_invariants(const pmt_mallocstats_t *s, int64_t pool_size, int64_t arena_size,
                          int arena_map)
{
    int64_t allocated = 0, available = 0, pools = 0;
    CHECK(s->pymalloc);
    CHECK(!s->mimalloc);
    CHECK_EQ_INT(s->small_block_threshold, 512);
    CHECK_EQ_INT(s->num_size_classes, 32);
    CHECK(s->nclasses > 10);
    for (int i = 0; i < s->nclasses; i++) {
        const pmt_ms_class_t *c = &s->classes[i];
        CHECK_EQ_INT(c->size, (c->index + 1) * 16);
        allocated += c->blocks_in_use * c->size;
        available += c->avail_blocks * c->size;
        pools += c->num_pools;
    }
    CHECK_EQ_INT(value_of(s, PMT_MS_SEC_BYTES, "# bytes in allocated blocks"), allocated);
    CHECK_EQ_INT(value_of(s, PMT_MS_SEC_BYTES, "# bytes in available blocks"), available);
    CHECK_EQ_INT(value_of(s, PMT_MS_SEC_BYTES, "# bytes lost to pool headers"), pools * 48);
    const pmt_ms_value_t *arenas = NULL, *unused = NULL;
    for (int i = 0; i < s->nvalues; i++) {
        if (s->values[i].has_count && s->values[i].section == PMT_MS_SEC_ARENAS) {
            arenas = &s->values[i];
        }
        if (s->values[i].has_count && s->values[i].section == PMT_MS_SEC_BYTES) {
            unused = &s->values[i];
        }
    }
    CHECK(arenas != NULL && unused != NULL);
    if (arenas && unused) {
        char label[64];
        snprintf(label, sizeof(label), "arenas * %lld bytes/arena", (long long)arena_size);
        CHECK_EQ_STR(arenas->label, label);
        CHECK_EQ_INT(arenas->value, arenas->count * arena_size);
        CHECK_EQ_INT(arenas->count, value_of(s, PMT_MS_SEC_ARENAS, "# arenas allocated current"));
        snprintf(label, sizeof(label), "unused pools * %lld bytes", (long long)pool_size);
        CHECK_EQ_STR(unused->label, label);
        CHECK_EQ_INT(unused->value, unused->count * pool_size);
        CHECK_EQ_INT(value_of(s, PMT_MS_SEC_BYTES, "Total"), arenas->value);
    }
    CHECK_EQ_INT(value_of(s, PMT_MS_SEC_ARENAS, "# arenas reclaimed"),
                 value_of(s, PMT_MS_SEC_ARENAS, "# arenas allocated total") -
                 value_of(s, PMT_MS_SEC_ARENAS, "# arenas allocated current"));
    if (arena_map) {
        CHECK_EQ_INT(value_of(s, PMT_MS_SEC_ARENA_MAP_COUNTS, "# arena map mid nodes"), 1);
        CHECK_EQ_INT(value_of(s, PMT_MS_SEC_ARENA_MAP_BYTES, "Total"),
                     value_of(s, PMT_MS_SEC_ARENA_MAP_BYTES, "# bytes lost to arena map root") +
                     value_of(s, PMT_MS_SEC_ARENA_MAP_BYTES, "# bytes lost to arena map mid") +
                     value_of(s, PMT_MS_SEC_ARENA_MAP_BYTES, "# bytes lost to arena map bot"));
    }
    else {
        CHECK(pmt_ms_find_value(s, -1, "# arena map mid nodes") == NULL);
    }
}

static void
check_freelists(const pmt_mallocstats_t *s, int ntuples, int frames, int methods)
{
    int tuples = 0;
    for (int i = 0; i < s->nfreelists; i++) {
        const pmt_ms_freelist_t *f = &s->freelists[i];
        CHECK_EQ_INT(f->total, f->count * f->size_each);
        tuples += strstr(f->name, "-sized PyTupleObjects") != NULL;
    }
    CHECK_EQ_INT(tuples, ntuples);
    CHECK_EQ_INT(s->nfreelists, ntuples + 3 + frames + 2 * methods);
    const pmt_ms_freelist_t *t2 = pmt_ms_find_freelist(s, "free 2-sized PyTupleObjects", -1);
    CHECK(t2 != NULL && t2->size_each == 40);
    CHECK(pmt_ms_find_freelist(s, "free PyDictObjects", 48) != NULL);
    CHECK(pmt_ms_find_freelist(s, "free PyDictObjects", 47) == NULL);
    CHECK((pmt_ms_find_freelist(s, "free PyFrameObjects", -1) != NULL) == frames);
    CHECK((pmt_ms_find_freelist(s, "free PyMethodObjects", 48) != NULL) == methods);
    CHECK((pmt_ms_find_freelist(s, "free PyCFunctionObjects", 56) != NULL) == methods);
}

static void
test_fixture(const char *name, int64_t pool, int64_t arena, int arena_map, int ntuples,
             int frames, int methods)
{
    size_t len;
    char *text = read_file(name, &len);
    static pmt_mallocstats_t s;
    int understood = pmt_ms_parse(text, len, &s);
    fprintf(stderr, "  %s: %d lines understood, %d classes, %d values, %d free lists\n",
            name, understood, s.nclasses, s.nvalues, s.nfreelists);
    CHECK_EQ_INT(s.nunparsed, 0);
    CHECK_EQ_INT(s.ntruncated, 0);
    check_pymalloc_invariants(&s, pool, arena, arena_map);
    check_freelists(&s, ntuples, frames, methods);
    /* A snapshot diffed with itself has no change. */
    char buf[256];
    pmt_ms_diff_format(&s, &s, buf, sizeof(buf));
    CHECK_EQ_STR(buf, "No change.\n");
    CHECK_EQ_INT(pmt_ms_classes_changed(&s, &s), 0);
    free(text);
}

static void
test_no_pymalloc(void)
{
    size_t len;
    char *text = read_file("cpython-3.11-malloc.txt", &len);
    static pmt_mallocstats_t s;
    pmt_ms_parse(text, len, &s);
    CHECK(!s.pymalloc);
    CHECK(!s.mimalloc);
    CHECK_EQ_INT(s.nclasses, 0);
    CHECK_EQ_INT(s.nvalues, 0);
    CHECK_EQ_INT(s.nfreelists, 23);
    CHECK_EQ_INT(s.nunparsed, 0);
    free(text);
}

static void
test_mimalloc(void)
{
    size_t len;
    char *text = read_file("cpython-3.13t-mimalloc.txt", &len);
    static pmt_mallocstats_t s, t;
    pmt_ms_parse(text, len, &s);
    CHECK(!s.pymalloc);
    CHECK(s.mimalloc);
    CHECK_EQ_INT(s.nclasses, 0);
    CHECK_EQ_INT(s.nunparsed, 0);
    CHECK_EQ_INT(value_of(&s, PMT_MS_SEC_MIMALLOC, "Medium block threshold"), 131072);
    CHECK_EQ_INT(value_of(&s, PMT_MS_SEC_MIMALLOC, "Bytes Reserved"), 64 * 1024 * 1024);
    const pmt_ms_value_t *blocks = pmt_ms_find_value(&s, PMT_MS_SEC_MIMALLOC, "Allocated Blocks");
    CHECK(blocks != NULL);
    CHECK_EQ_INT(s.nfreelists, 23);
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

/* Garbage, truncation and odd input never crash and are counted. */
static void
test_robustness(void)
{
    static pmt_mallocstats_t s;
    const char *junk = "hello\nclass\n1 2 3\n= 5\nx = y\n\n   \n12 free * bytes each = 3\n";
    pmt_ms_parse(junk, strlen(junk), &s);
    CHECK_EQ_INT(s.nclasses, 0);
    CHECK_EQ_INT(s.nfreelists, 0);
    CHECK_EQ_INT(s.nunparsed, 6);
    pmt_ms_parse("", 0, &s);
    CHECK_EQ_INT(s.nunparsed, 0);
    /* a row cut in the middle (no newline at the end) is still a row */
    const char *cut = "    3     64          48           11539           701";
    pmt_ms_parse(cut, strlen(cut), &s);
    CHECK_EQ_INT(s.nclasses, 1);
    CHECK_EQ_INT(s.classes[0].blocks_in_use, 11539);
    /* ... but a row cut inside its last number reads what is there */
    pmt_ms_parse(cut, strlen(cut) - 2, &s);
    CHECK_EQ_INT(s.classes[0].avail_blocks, 7);
    /* embedded NUL stops the line */
    const char nul[] = "    1     32           2             830           190\0junk\n";
    pmt_ms_parse(nul, sizeof(nul) - 1, &s);
    CHECK_EQ_INT(s.nclasses, 1);
    /* more rows than fit are counted, not written past the end */
    static char big[PMT_MS_MAX_CLASSES * 2 * 64];
    size_t n = 0;
    for (int i = 0; i < PMT_MS_MAX_CLASSES + 10; i++) {
        n += (size_t)snprintf(big + n, sizeof(big) - n, "%5d %6d %11d %15d %13d\n",
                              i, (i + 1) * 16, 1, 2, 3);
    }
    pmt_ms_parse(big, n, &s);
    CHECK_EQ_INT(s.nclasses, PMT_MS_MAX_CLASSES);
    CHECK_EQ_INT(s.ntruncated, 10);
    /* a long label is cut, not overflowed */
    char longline[300];
    memset(longline, 'a', sizeof(longline));
    memcpy(longline + 250, " = 12\n", 6);
    pmt_ms_parse(longline, 256, &s);
    CHECK_EQ_INT(s.nvalues, 1);
    CHECK_EQ_INT(strlen(s.values[0].label), PMT_MS_LABEL - 1);
    CHECK_EQ_INT(s.values[0].value, 12);
    CHECK_EQ_STR(pmt_ms_section_name(PMT_MS_SEC_ARENA_MAP_BYTES), "arena_map_bytes");
}

int
main(void)
{
    test_fixture("cpython-3.8.txt", 4096, 262144, 0, 19, 1, 1);
    test_fixture("cpython-3.8-pydebug.txt", 4096, 262144, 0, 19, 1, 1);
    test_fixture("cpython-3.9.txt", 4096, 262144, 0, 19, 1, 0);
    test_fixture("cpython-3.10.txt", 16384, 1048576, 1, 19, 1, 0);
    test_fixture("cpython-3.11.txt", 16384, 1048576, 1, 20, 0, 0);
    test_fixture("cpython-3.12.txt", 16384, 1048576, 1, 20, 0, 0);
    test_fixture("cpython-3.13.txt", 16384, 1048576, 1, 20, 0, 0);
    test_fixture("seed-example.txt", 16384, 1048576, 1, 20, 0, 0);
    test_no_pymalloc();
    test_mimalloc();
    test_seed_diff_layout();
    test_appear_disappear();
    test_robustness();
    CTEST_MAIN_END();
}
