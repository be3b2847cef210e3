/* test_hashtab.c: the shared hash table: insert, find, remove (with the
 * entries after a removed one still found), growth, iteration, colliding
 * hashes, and a random workload checked against a plain array. */
#include <stdint.h>
#include <string.h>

#include "ctest.h"
#include "hashtab.h"

typedef struct {
    uint64_t key;
    uint64_t value;
} pair;

static uint64_t
hash_u64(const void *k, void *ctx)
{
    (void)ctx;
    uint64_t x;
    memcpy(&x, k, 8);
    return pmt_ht_hash_u64(x);
}

/* every key hashes alike: the worst case for probing and removal */
static uint64_t
hash_const(const void *k, void *ctx)
{
    (void)k;
    (void)ctx;
    return 0;   /* also checks that a zero hash is usable */
}

static int
eq_u64(const void *k, const void *e, void *ctx)
{
    (void)ctx;
    uint64_t x;
    memcpy(&x, k, 8);
    return ((const pair *)e)->key == x;
}

static pair *
put(pmt_hashtab *t, uint64_t k, uint64_t v)
{
    int created;
    pair *p = pmt_ht_insert(t, &k, &created);
    if (p && created) {
        p->key = k;
    }
    if (p) {
        p->value = v;
    }
    return p;
}

static void
test_basic(pmt_ht_hash_fn h)
{
    pmt_hashtab t;
    pmt_ht_init(&t, sizeof(pair), h, eq_u64, NULL);
    uint64_t k = 5;
    CHECK(pmt_ht_find(&t, &k) == NULL);
    int created;
    pair *p = pmt_ht_insert(&t, &k, &created);
    CHECK(p != NULL && created && p->key == 0 && p->value == 0);
    p->key = 5;
    p->value = 50;
    p = pmt_ht_insert(&t, &k, &created);
    CHECK(p != NULL && !created && p->value == 50);
    pmt_ht_remove(&t, p);
    CHECK(pmt_ht_find(&t, &k) == NULL && t.len == 0);
    for (uint64_t i = 0; i < 1000; i++) {
        CHECK(put(&t, i * 7919, i) != NULL);
    }
    CHECK_EQ_INT(t.len, 1000);
    CHECK(t.cap >= 2000);   /* at most half full */
    for (uint64_t i = 0; i < 1000; i += 2) {
        uint64_t key = i * 7919;
        pair *q = pmt_ht_find(&t, &key);
        CHECK(q != NULL);
        if (q) {
            pmt_ht_remove(&t, q);
        }
    }
    CHECK_EQ_INT(t.len, 500);
    for (uint64_t i = 0; i < 1000; i++) {
        uint64_t key = i * 7919;
        pair *q = pmt_ht_find(&t, &key);
        if (i % 2) {
            CHECK(q != NULL && q->value == i);
        }
        else {
            CHECK(q == NULL);
        }
    }
    size_t pos = 0, n = 0;
    uint64_t sum = 0;
    for (pair *q; (q = pmt_ht_next(&t, &pos)) != NULL; n++) {
        sum += q->value;
    }
    CHECK_EQ_INT(n, 500);
    CHECK_EQ_INT(sum, 500 * 500);  /* 1 + 3 + ... + 999 */
    pmt_ht_free(&t);
    CHECK(pmt_ht_find(&t, &k) == NULL);
}

static void
test_random_against_array(void)
{
    enum { KEYS = 512 };
    static uint64_t model[KEYS];    /* value + 1, 0: absent */
    memset(model, 0, sizeof(model));
    pmt_hashtab t;
    pmt_ht_init(&t, sizeof(pair), hash_u64, eq_u64, NULL);
    uint64_t x = 88172645463325252ull;
    size_t live = 0;
    for (int step = 0; step < 200000; step++) {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        uint64_t k = x % KEYS, key = k << 12;    /* aligned, like addresses */
        pair *p = pmt_ht_find(&t, &key);
        CHECK((p != NULL) == (model[k] != 0));
        if (p && model[k]) {
            CHECK_EQ_INT(p->value + 1, model[k]);
        }
        if ((x >> 32) % 3 == 0 && p) {
            pmt_ht_remove(&t, p);
            model[k] = 0;
            live--;
        }
        else {
            if (!model[k]) {
                live++;
            }
            put(&t, key, (uint64_t)step);
            model[k] = (uint64_t)step + 1;
        }
        CHECK_EQ_INT(t.len, live);
        if (ctest_failures) {
            break;
        }
    }
    pmt_ht_free(&t);
}

/* the shared helpers for entries that start with a uint64_t or uint32_t key */
static void
test_key_helpers(void)
{
    struct {
        uint64_t k;
        int v;
    } *e64;
    struct {
        uint32_t k;
        int v;
    } *e32;
    pmt_hashtab a, b;
    pmt_ht_init(&a, sizeof(*e64), pmt_ht_u64_hash, pmt_ht_u64_eq, NULL);
    pmt_ht_init(&b, sizeof(*e32), pmt_ht_u32_hash, pmt_ht_u32_eq, NULL);
    int created;
    for (uint32_t i = 0; i < 1000; i++) {
        uint64_t k64 = (uint64_t)i << 40 | i;
        e64 = pmt_ht_insert(&a, &k64, &created);
        CHECK(e64 && created);
        e64->k = k64;
        e64->v = (int)i;
        e32 = pmt_ht_insert(&b, &i, &created);
        CHECK(e32 && created);
        e32->k = i;
        e32->v = (int)i;
    }
    for (uint32_t i = 0; i < 1000; i++) {
        uint64_t k64 = (uint64_t)i << 40 | i, other = (uint64_t)i << 40;
        e64 = pmt_ht_find(&a, &k64);
        CHECK(e64 && e64->v == (int)i);
        CHECK(i == 0 || pmt_ht_find(&a, &other) == NULL);
        e32 = pmt_ht_find(&b, &i);
        CHECK(e32 && e32->v == (int)i);
    }
    uint32_t missing = 5000;
    CHECK(pmt_ht_find(&b, &missing) == NULL);
    pmt_ht_free(&a);
    pmt_ht_free(&b);
}

int
main(void)
{
    test_key_helpers();
    test_basic(hash_u64);
    test_basic(hash_const);
    test_random_against_array();
    CTEST_MAIN_END();
}
