/* handover.c: the delivery thread of a logging-mode sampler and the
 * hand-over of each batch to exactly one consumer (see sampler.h). */
#ifndef _GNU_SOURCE
#define _GNU_SOURCE         /* pthread_setname_np */
#endif
#include "sampler.h"
#include "sampler_impl.h"

#include <errno.h>
#include <unistd.h>

int
pmt_sampler_deliver(pmt_sampler *s, int by_main, pmt_deliver_fn fn, void *arg)
{
    (void)pthread_mutex_lock(&s->mu);
    if (s->batch_state != PMT_BATCH_READY) {
        (void)pthread_mutex_unlock(&s->mu);
        return 0;
    }
    s->batch_state = PMT_BATCH_BUSY;
    if (by_main) {
        s->batches_main++;
    }
    else {
        s->batches_thread++;
    }
    s->delivering = 1;
    s->delivering_thread = pthread_self();
    const pmt_slot *recs = s->ring.spare;
    size_t n = s->ring.nbatch;
    (void)pthread_mutex_unlock(&s->mu);
    fn(arg, recs, n);
    (void)pthread_mutex_lock(&s->mu);
    s->delivering = 0;
    pmt_ring_clear_batch(&s->ring);
    s->batch_state = PMT_BATCH_NONE;
    (void)pthread_cond_broadcast(&s->batch_cond);
    (void)pthread_mutex_unlock(&s->mu);
    return 1;
}

int
pmt_sampler_asked_done(pmt_sampler *s)
{
    (void)pthread_mutex_lock(&s->mu);
    int left = --s->pending_calls;
    (void)pthread_mutex_unlock(&s->mu);
    return left;
}

int
pmt_sampler_asked_pending(pmt_sampler *s)
{
    (void)pthread_mutex_lock(&s->mu);
    int left = s->pending_calls;
    (void)pthread_mutex_unlock(&s->mu);
    return left;
}

int
pmt_sampler_delivering_here(pmt_sampler *s)
{
    if (s->owner != getpid()) {
        return 0;
    }
    (void)pthread_mutex_lock(&s->mu);
    int here = s->delivering && pthread_equal(s->delivering_thread, pthread_self());
    (void)pthread_mutex_unlock(&s->mu);
    return here;
}

/* mu held, a batch READY: ask the other thread and give it PMT_MAIN_GRACE. */
static void
offer_to_main(pmt_sampler *s)
{
    if (!s->cfg.via_main || s->cfg.hooks.ask_main == NULL || s->stopping
        || s->pending_calls != 0) {
        return;
    }
    if (s->cfg.hooks.ask_main(s->cfg.hooks.ctx) != 0) {
        return;
    }
    s->pending_calls++;
    double until = pmt_sched_now() + PMT_MAIN_GRACE;
    while (s->batch_state == PMT_BATCH_READY && !s->stopping) {
        double left = until - pmt_sched_now();
        if (left <= 0) {
            break;
        }
        pmt_wait_for(&s->batch_cond, &s->mu, left);
    }
    while (s->batch_state == PMT_BATCH_BUSY) {
        (void)pthread_cond_wait(&s->batch_cond, &s->mu);
    }
}

void *
pmt_deliverer_main(void *arg)
{
    pmt_sampler *s = (pmt_sampler *)arg;
#ifdef __linux__
    (void)pthread_setname_np(pthread_self(), "pmt-deliver");
#endif
    (void)pthread_mutex_lock(&s->mu);
    for (;;) {
        while (!s->stopping && !s->due && !s->ended) {
            (void)pthread_cond_wait(&s->wake_deliverer, &s->mu);
        }
        /* never touch the batch while someone delivers it */
        while (s->batch_state == PMT_BATCH_BUSY) {
            (void)pthread_cond_wait(&s->batch_cond, &s->mu);
        }
        if (s->batch_state == PMT_BATCH_NONE) {
            if (s->stopping || (s->ended && s->ring.nfill == 0)) {
                break;
            }
            if (!s->due) {
                continue;
            }
            (void)pmt_ring_swap(&s->ring);
            s->due = 0;
            s->batch_state = PMT_BATCH_READY;
            offer_to_main(s);
        }
        if (s->batch_state == PMT_BATCH_READY) {
            (void)pthread_mutex_unlock(&s->mu);
            if (s->cfg.hooks.deliver_here) {
                s->cfg.hooks.deliver_here(s->cfg.hooks.ctx);
            }
            (void)pthread_mutex_lock(&s->mu);
            if (s->batch_state == PMT_BATCH_READY) {    /* not taken: dropped */
                pmt_ring_clear_batch(&s->ring);
                s->batch_state = PMT_BATCH_NONE;
            }
        }
    }
    (void)pthread_mutex_unlock(&s->mu);
    return NULL;
}

