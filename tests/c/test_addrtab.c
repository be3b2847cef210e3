/* Unit tests for src/core/addrtab.c: address-keyed entries (what
 * ReferenceTracing keeps per object and per type). */
#include <stdint.h>

#include "addrtab.h"
#include "ctest.h"

static void
test_put_get_remove(void)
{
    pmt_hashtab t;
    pmt_at_init(&t);
    CHECK(pmt_at_get(&t, 0x1000) == NULL);
    CHECK_EQ_INT(pmt_at_remove(&t, 0x1000, NULL), 0);
    int created = -1;
    /* many addresses 16 bytes apart, as objects are: the table grows */
    for (uintptr_t a = 0x1000; a < 0x1000 + 16 * 5000; a += 16) {
        pmt_addr_entry *e = pmt_at_put(&t, a, &created);
        CHECK(e != NULL && created == 1 && e->key == a && e->aux == 0 && e->n[0] == 0);
        if (e) {
            e->aux = a * 3;
            e->n[2] = (int64_t)a;
        }
    }
    pmt_addr_entry *again = pmt_at_put(&t, 0x1010, &created);
    CHECK(again != NULL && created == 0 && again->aux == 0x1010 * 3);
    pmt_addr_entry out = {0, 0, {0, 0, 0}};
    CHECK_EQ_INT(pmt_at_remove(&t, 0x1010, &out), 1);
    CHECK(out.key == 0x1010 && out.n[2] == 0x1010);
    CHECK(pmt_at_get(&t, 0x1010) == NULL);
    /* a removal shifts its neighbours back: every other key is still found */
    int missing = 0;
    for (uintptr_t a = 0x1000; a < 0x1000 + 16 * 5000; a += 16) {
        pmt_addr_entry *e = pmt_at_get(&t, a);
        missing += a != 0x1010 && (e == NULL || e->aux != a * 3);
    }
    CHECK_EQ_INT(missing, 0);
    pmt_ht_free(&t);
}

int
main(void)
{
    test_put_get_remove();
    CTEST_MAIN_END();
}
