/* labelq.h: a FIFO of text labels (add_message_to_queue) waiting for the next
 * sample.  Thread-safe: producers are Python threads, the consumer is a
 * sampler thread.  Bounded: past `max` labels the oldest is dropped and
 * counted.  pmt_labelq_pop is a lock-free no-op while the queue is empty, so
 * a sampler with no labels pays one atomic load per sample. */
#ifndef PMT_LABELQ_H
#define PMT_LABELQ_H

#include <pthread.h>
#include <stdatomic.h>
#include <stddef.h>
#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

typedef struct pmt_label {
    struct pmt_label *next;
    size_t len;
    char text[];            /* len bytes and a NUL */
} pmt_label;

typedef struct pmt_labelq {
    pthread_mutex_t mu;
    pmt_label *head, *tail;
    atomic_int count;
    int max;
    uint64_t dropped;       /* oldest labels dropped because the queue was full */
} pmt_labelq;

#define PMT_LABELQ_INIT(max_labels) {PTHREAD_MUTEX_INITIALIZER, NULL, NULL, 0, (max_labels), 0}

/* Append a copy of text[0:len].  Returns 0, or -1 with errno ENOMEM. */
int pmt_labelq_push(pmt_labelq *q, const char *text, size_t len);
/* The oldest label (the caller frees it with free()), or NULL if none. */
pmt_label *pmt_labelq_pop(pmt_labelq *q);
/* Forget every label. */
void pmt_labelq_clear(pmt_labelq *q);
int pmt_labelq_count(pmt_labelq *q);
uint64_t pmt_labelq_dropped(pmt_labelq *q);
/* Hold / release the queue's lock across fork() (pthread_atfork handlers). */
void pmt_labelq_lock(pmt_labelq *q);
void pmt_labelq_unlock(pmt_labelq *q);

#ifdef __cplusplus
}
#endif
#endif /* PMT_LABELQ_H */
