/* Unit tests for src/core/ptrmap.c: insert, find, count, remove, grow. */
#include "ctest.h"
#include "ptrmap.h"

static void
test_put_get_remove_against_a_shadow_array(void)
{
    enum { N = 5000 };
    static int present[N];
    pmt_ptrmap m;
    CHECK_EQ_INT(pmt_ptrmap_init(&m, 0), 0);
    unsigned seed = 12345;
    for (int step = 0; step < 200000; step++) {
        seed = seed * 1103515245u + 12345u;
        int k = (int)((seed >> 8) % N);
        uintptr_t key = 0x10000 + (uintptr_t)k * 16;
        if ((seed >> 4) & 1) {
            int created;
            pmt_ptrmap_entry *e = pmt_ptrmap_put(&m, key, &created);
            CHECK(e != NULL);
            CHECK_EQ_INT(created, !present[k]);
            e->n[0]++;
            e->aux = key ^ 1;
            present[k] = 1;
        } else {
            pmt_ptrmap_entry out;
            CHECK_EQ_INT(pmt_ptrmap_remove(&m, key, &out), present[k]);
            if (present[k]) {
                CHECK_EQ_INT(out.aux, key ^ 1);
                CHECK(out.n[0] >= 1);
            }
            present[k] = 0;
        }
    }
    size_t live = 0;
    for (int k = 0; k < N; k++) {
        live += (size_t)present[k];
        pmt_ptrmap_entry *e = pmt_ptrmap_get(&m, 0x10000 + (uintptr_t)k * 16);
        CHECK_EQ_INT(e != NULL, present[k]);
    }
    CHECK_EQ_INT(m.len, live);
    CHECK(m.cap >= m.len);
    pmt_ptrmap_free(&m);
}

static void
test_zero_key_and_clear(void)
{
    pmt_ptrmap m;
    int created;
    CHECK_EQ_INT(pmt_ptrmap_init(&m, 100), 0);
    CHECK(m.cap >= 128);
    CHECK(pmt_ptrmap_put(&m, 0, &created) == NULL);
    CHECK(pmt_ptrmap_get(&m, 0) == NULL);
    CHECK(pmt_ptrmap_put(&m, 0x1234560, &created) != NULL && created == 1);
    CHECK(pmt_ptrmap_put(&m, 0x1234560, &created) != NULL && created == 0);
    CHECK_EQ_INT(m.len, 1);
    pmt_ptrmap_clear(&m);
    CHECK_EQ_INT(m.len, 0);
    CHECK(pmt_ptrmap_get(&m, 0x1234560) == NULL);
    CHECK_EQ_INT(pmt_ptrmap_remove(&m, 0x1234560, NULL), 0);
    pmt_ptrmap_free(&m);
    CHECK(pmt_ptrmap_get(&m, 0x1234560) == NULL);
}

int
main(void)
{
    test_put_get_remove_against_a_shadow_array();
    test_zero_key_and_clear();
    CTEST_MAIN_END();
}
