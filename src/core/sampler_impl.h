/* sampler_impl.h: what sampler.c and handover.c share and nobody else
 * needs: the schedule's clock and the states of a batch. */
#ifndef PMT_SAMPLER_IMPL_H
#define PMT_SAMPLER_IMPL_H

#include <pthread.h>
#include <time.h>

/* The schedule runs on CLOCK_MONOTONIC where condition variables can wait
 * on it (Linux), else on CLOCK_REALTIME. */
#ifdef __linux__
#define SCHED_CLOCK CLOCK_MONOTONIC
#else
#define SCHED_CLOCK CLOCK_REALTIME
#endif

enum { PMT_BATCH_NONE = 0, PMT_BATCH_READY = 1, PMT_BATCH_BUSY = 2 };

/* ---- time ------------------------------------------------------------------ */

static inline double
pmt_sched_now(void)
{
    struct timespec ts;
    (void)clock_gettime(SCHED_CLOCK, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec * 1e-9;
}

static inline struct timespec
pmt_to_timespec(double t)
{
    struct timespec ts;
    ts.tv_sec = (time_t)t;
    ts.tv_nsec = (long)((t - (double)ts.tv_sec) * 1e9);
    if (ts.tv_nsec >= 1000000000L) {
        ts.tv_sec += 1;
        ts.tv_nsec -= 1000000000L;
    }
    if (ts.tv_nsec < 0) {
        ts.tv_nsec = 0;
    }
    return ts;
}

/* Wait on cond (a CLOCK_REALTIME condition) for at most `seconds`. */
static inline void
pmt_wait_for(pthread_cond_t *cond, pthread_mutex_t *mu, double seconds)
{
    struct timespec now;
    (void)clock_gettime(CLOCK_REALTIME, &now);
    struct timespec ts = pmt_to_timespec((double)now.tv_sec + now.tv_nsec * 1e-9 + seconds);
    (void)pthread_cond_timedwait(cond, mu, &ts);
}

/* The delivery thread (handover.c); arg is the pmt_sampler. */
void *pmt_deliverer_main(void *arg);

#endif /* PMT_SAMPLER_IMPL_H */
