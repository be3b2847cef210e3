/* labelq.c: the bounded, thread-safe FIFO of sample labels (see labelq.h). */
#include "labelq.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>

/* Unlink the head; the lock is held. */
static pmt_label *
unlink_head(pmt_labelq *q)
{
    pmt_label *l = q->head;
    if (l != NULL) {
        q->head = l->next;
        if (q->head == NULL) {
            q->tail = NULL;
        }
        atomic_fetch_sub(&q->count, 1);
    }
    return l;
}

int
pmt_labelq_push(pmt_labelq *q, const char *text, size_t len)
{
    pmt_label *l = malloc(sizeof(pmt_label) + len + 1);
    if (l == NULL) {
        errno = ENOMEM;
        return -1;
    }
    l->next = NULL;
    l->len = len;
    memcpy(l->text, text, len);
    l->text[len] = '\0';
    pmt_label *drop = NULL;
    (void)pthread_mutex_lock(&q->mu);
    if (q->max > 0 && atomic_load(&q->count) >= q->max) {
        drop = unlink_head(q);
        q->dropped++;
    }
    if (q->tail) {
        q->tail->next = l;
    }
    else {
        q->head = l;
    }
    q->tail = l;
    atomic_fetch_add(&q->count, 1);
    (void)pthread_mutex_unlock(&q->mu);
    free(drop);
    return 0;
}

pmt_label *
pmt_labelq_pop(pmt_labelq *q)
{
    if (atomic_load_explicit(&q->count, memory_order_relaxed) == 0) {
        return NULL;
    }
    if (pthread_mutex_lock(&q->mu) != 0) {
        return NULL;
    }
    pmt_label *l = unlink_head(q);
    (void)pthread_mutex_unlock(&q->mu);
    return l;
}

void
pmt_labelq_clear(pmt_labelq *q)
{
    (void)pthread_mutex_lock(&q->mu);
    pmt_label *l = q->head;
    q->head = q->tail = NULL;
    atomic_store(&q->count, 0);
    (void)pthread_mutex_unlock(&q->mu);
    while (l) {
        pmt_label *next = l->next;
        free(l);
        l = next;
    }
}

int
pmt_labelq_count(pmt_labelq *q)
{
    return atomic_load(&q->count);
}

uint64_t
pmt_labelq_dropped(pmt_labelq *q)
{
    (void)pthread_mutex_lock(&q->mu);
    uint64_t d = q->dropped;
    (void)pthread_mutex_unlock(&q->mu);
    return d;
}

void
pmt_labelq_lock(pmt_labelq *q)
{
    (void)pthread_mutex_lock(&q->mu);
}

void
pmt_labelq_unlock(pmt_labelq *q)
{
    (void)pthread_mutex_unlock(&q->mu);
}
