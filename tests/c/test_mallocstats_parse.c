/* test_mallocstats_parse.c: the sys._debugmallocstats() parser against the
 * fixture texts of CPython 3.8 to 3.13 (pymalloc, malloc, mimalloc) and
 * against text that is not statistics. */
#include "ctest.h"
#include "mallocstats_fixture.h"
#include "mallocstats_parse.h"

#include <stdint.h>
#include <string.h>

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
    static pmt_mallocstats_t s;
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
    free(text);
}

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

static void
expect_refused(const char *text, size_t len, const char *what)
{
    static pmt_mallocstats_t s;
    char err[256] = "";
    pmt_ms_parse(text, len, &s);
    CHECK_EQ_INT(pmt_ms_check(text, len, &s, err, sizeof(err)), -1);
    if (!strstr(err, what)) {
        fprintf(stderr, "error \"%s\" does not say \"%s\"\n", err, what);
        CHECK(0);
    }
}

/* Text that is not statistics is refused, naming what was wrong; every
 * fixture (pymalloc, malloc, mimalloc, a cut pymalloc text) is accepted. */
static void
test_check(void)
{
    expect_refused("", 0, "empty text");
    expect_refused("\n  \n\t\n", 5, "only blank lines");
    const char *junk = "not\nmalloc stats\n";
    expect_refused(junk, strlen(junk), "it starts \"not\"");
    expect_refused(junk, strlen(junk), "no \"Small block threshold\" line");
    /* label = value lines alone are not statistics */
    const char *kv = "\n  x = 5\ny = 6\n";
    expect_refused(kv, strlen(kv), "it starts \"x = 5\"");
    /* control bytes and long lines are shown safely, cut */
    char bin[200];
    memset(bin, 'b', sizeof(bin));
    bin[0] = '\x01';
    bin[1] = '\xff';
    expect_refused(bin, sizeof(bin), "it starts \"??bbb");
    expect_refused(bin, sizeof(bin), "bbb...\"");
    static const char *ok[] = {"cpython-3.9.txt", "cpython-3.13.txt", "cpython-3.11-malloc.txt",
                               "cpython-3.13t-mimalloc.txt"};
    for (size_t i = 0; i < sizeof(ok) / sizeof(ok[0]); i++) {
        size_t len;
        char *text = read_file(ok[i], &len);
        static pmt_mallocstats_t s;
        char err[256];
        pmt_ms_parse(text, len, &s);
        CHECK_EQ_INT(pmt_ms_check(text, len, &s, err, sizeof(err)), 0);
        /* cut after the threshold line: still statistics */
        size_t cut = (size_t)(strchr(text, '\n') - text) + 1;
        pmt_ms_parse(text, cut, &s);
        if (strstr(ok[i], "malloc.txt") == NULL) {
            CHECK_EQ_INT(pmt_ms_check(text, cut, &s, err, sizeof(err)), 0);
        }
        free(text);
    }
}

int
main(void)
{
    test_check();
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
    test_robustness();
    CTEST_MAIN_END();
}
