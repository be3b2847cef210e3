/* test_labelq.c: unit tests for src/core/labelq (the label FIFO). */
#include "ctest.h"
#include "labelq.h"

#include <pthread.h>
#include <stdlib.h>

static void
test_fifo_order_and_copy(void)
{
    pmt_labelq q = PMT_LABELQ_INIT(0);
    CHECK(pmt_labelq_pop(&q) == NULL);
    char text[] = "first";
    CHECK_EQ_INT(pmt_labelq_push(&q, text, 5), 0);
    text[0] = 'X';                      /* the queue holds a copy */
    CHECK_EQ_INT(pmt_labelq_push(&q, "a\0b", 3), 0);   /* NULs are kept */
    CHECK_EQ_INT(pmt_labelq_count(&q), 2);
    pmt_label *l = pmt_labelq_pop(&q);
    CHECK(l != NULL && l->len == 5);
    CHECK_EQ_STR(l->text, "first");
    free(l);
    l = pmt_labelq_pop(&q);
    CHECK(l != NULL && l->len == 3 && memcmp(l->text, "a\0b", 4) == 0);
    free(l);
    CHECK(pmt_labelq_pop(&q) == NULL);
    CHECK_EQ_INT(pmt_labelq_count(&q), 0);
}

static void
test_bounded_drops_oldest(void)
{
    pmt_labelq q = PMT_LABELQ_INIT(3);
    const char *names[] = {"0", "1", "2", "3", "4"};
    for (int i = 0; i < 5; i++) {
        CHECK_EQ_INT(pmt_labelq_push(&q, names[i], 1), 0);
    }
    CHECK_EQ_INT(pmt_labelq_count(&q), 3);
    CHECK_EQ_INT(pmt_labelq_dropped(&q), 2);
    pmt_label *l = pmt_labelq_pop(&q);
    CHECK_EQ_STR(l->text, "2");
    free(l);
    pmt_labelq_clear(&q);
    CHECK_EQ_INT(pmt_labelq_count(&q), 0);
    CHECK(pmt_labelq_pop(&q) == NULL);
}

/* Four producers, one consumer: nothing lost, each producer's labels in order. */
#define PER_THREAD 2000
static pmt_labelq shared = PMT_LABELQ_INIT(0);

static void *
producer(void *arg)
{
    int id = (int)(intptr_t)arg;
    for (int i = 0; i < PER_THREAD; i++) {
        char t[2] = {(char)('a' + id), (char)i};
        (void)pmt_labelq_push(&shared, t, 2);
        (void)t;
    }
    return NULL;
}

static void
test_threads(void)
{
    pthread_t th[4];
    for (int i = 0; i < 4; i++) {
        CHECK_EQ_INT(pthread_create(&th[i], NULL, producer, (void *)(intptr_t)i), 0);
    }
    int got = 0, seen[4] = {0, 0, 0, 0}, in_order = 1;
    while (got < 4 * PER_THREAD) {
        pmt_label *l = pmt_labelq_pop(&shared);
        if (l == NULL) {
            continue;
        }
        int id = l->text[0] - 'a';
        if ((char)seen[id] != l->text[1]) {
            in_order = 0;
        }
        seen[id]++;
        got++;
        free(l);
    }
    for (int i = 0; i < 4; i++) {
        pthread_join(th[i], NULL);
    }
    CHECK_EQ_INT(got, 4 * PER_THREAD);
    CHECK(in_order);
    CHECK_EQ_INT(pmt_labelq_count(&shared), 0);
}

int
main(void)
{
    test_fifo_order_and_copy();
    test_bounded_drops_oldest();
    test_threads();
    CTEST_MAIN_END();
}
