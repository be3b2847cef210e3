/* test_strpool.c: interned strings: equal strings share one offset, offsets
 * survive growth, lengths (not NULs) delimit keys, release hands over. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "ctest.h"
#include "strpool.h"

static void
test_intern(void)
{
    pmt_strpool p;
    pmt_strpool_init(&p);
    int64_t a = pmt_strpool_intern(&p, "main.py", 7);
    int64_t b = pmt_strpool_intern(&p, "main.pyc", 7);  /* the first 7 bytes only */
    int64_t c = pmt_strpool_intern(&p, "main", 4);      /* a prefix is another string */
    int64_t e = pmt_strpool_intern(&p, "", 0);
    CHECK(a >= 0 && c >= 0 && e >= 0);
    CHECK_EQ_INT(a, b);
    CHECK(a != c && c != e);
    CHECK_EQ_STR(pmt_strpool_at(&p, (uint32_t)a), "main.py");
    CHECK_EQ_STR(pmt_strpool_at(&p, (uint32_t)c), "main");
    CHECK_EQ_STR(pmt_strpool_at(&p, (uint32_t)e), "");
    /* many strings: the buffer and the index grow; every offset still holds */
    int64_t off[5000];
    char s[32];
    for (int i = 0; i < 5000; i++) {
        int n = snprintf(s, sizeof(s), "function_%d", i);
        off[i] = pmt_strpool_intern(&p, s, (size_t)n);
        CHECK(off[i] >= 0);
    }
    for (int i = 0; i < 5000; i++) {
        int n = snprintf(s, sizeof(s), "function_%d", i);
        CHECK_EQ_INT(pmt_strpool_intern(&p, s, (size_t)n), off[i]);
        CHECK_EQ_STR(pmt_strpool_at(&p, (uint32_t)off[i]), s);
    }
    CHECK_EQ_INT(pmt_strpool_intern(&p, "main.py", 7), a);
    size_t len;
    size_t before = p.len;
    char *buf = pmt_strpool_release(&p, &len);
    CHECK_EQ_INT(len, before);
    CHECK_EQ_STR(buf + a, "main.py");
    CHECK(p.buf == NULL && p.len == 0);
    free(buf);
    pmt_strpool_free(&p);
}

/* A string of the pool interned again when the buffer must grow for it: the
 * growth moves the buffer, and the string with it (a use after free that
 * fuzz_capture_stacks found: a thread's name, read from the capture's own
 * pool, interned into it again; this test fails under `make sanitize`). */
static void
test_intern_own_string(void)
{
    pmt_strpool p;
    pmt_strpool_init(&p);
    int64_t w = pmt_strpool_intern(&p, "worker", 6);
    CHECK(w >= 0);
    char s[16];
    int i = 0;
    while (p.cap - p.len >= 7) {        /* until "worker" no longer fits after the end */
        int n = snprintf(s, sizeof(s), "%d", i++);
        CHECK(pmt_strpool_intern(&p, s, (size_t)n) >= 0);
    }
    const char *own = pmt_strpool_at(&p, (uint32_t)w);
    CHECK_EQ_INT(pmt_strpool_intern(&p, own, 6), w);
    CHECK_EQ_STR(pmt_strpool_at(&p, (uint32_t)w), "worker");
    /* a new string that is the prefix of one in the pool: copied from it */
    while (p.cap - p.len >= 5) {
        int n = snprintf(s, sizeof(s), "x%d", i++);
        CHECK(pmt_strpool_intern(&p, s, (size_t)n) >= 0);
    }
    int64_t wo = pmt_strpool_intern(&p, pmt_strpool_at(&p, (uint32_t)w), 4);
    CHECK(wo >= 0 && wo != w);
    CHECK_EQ_STR(pmt_strpool_at(&p, (uint32_t)wo), "work");
    pmt_strpool_free(&p);
}

int
main(void)
{
    test_intern();
    test_intern_own_string();
    CTEST_MAIN_END();
}
