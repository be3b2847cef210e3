/* tickclock.h: a per-event timestamp cheaper than clock_gettime.
 *
 * A tracer stamps every event (a PREV row needs the time of an event that was
 * not logged), so the stamp is on the hot path.  On x86-64 Linux with the
 * kernel itself using the TSC as its clocksource (so the TSC is invariant and
 * synchronised across CPUs), a stamp is one rdtsc; it becomes nanoseconds of
 * CLOCK_MONOTONIC only when a row is written, by a rate calibrated at start
 * and refined at every anchor (the caller anchors when it makes a syscall
 * anyway, e.g. when it reads RSS).  Elsewhere a stamp is CLOCK_MONOTONIC in
 * nanoseconds and the conversion is the identity.
 */
#ifndef PMT_TICKCLOCK_H
#define PMT_TICKCLOCK_H

#include <stdint.h>
#include <time.h>

#if defined(__x86_64__) && defined(__linux__)
#include <x86intrin.h>
#define PMT_HAVE_TSC 1
#else
#define PMT_HAVE_TSC 0
#endif

#ifdef __cplusplus
extern "C" {
#endif

typedef struct pmt_tickclock {
    int use_tsc;
    uint64_t t0;            /* first anchor: ticks */
    int64_t ns0;            /*               and CLOCK_MONOTONIC ns */
    uint64_t ta;            /* latest anchor */
    int64_t na;
    double ns_per_tick;
} pmt_tickclock;

static inline int64_t
pmt_tick_monotonic_ns(void)
{
    struct timespec ts;
    (void)clock_gettime(CLOCK_MONOTONIC, &ts);  /* cannot fail for this clock */
    return (int64_t)ts.tv_sec * 1000000000 + ts.tv_nsec;
}

/* Choose the source and calibrate (spins for about calib_ns nanoseconds when
 * the TSC is used).  force_monotonic: never use the TSC. */
void pmt_tickclock_init(pmt_tickclock *c, int64_t calib_ns, int force_monotonic);

/* A stamp: cheap, monotonic within a thread. */
static inline uint64_t
pmt_ticks(const pmt_tickclock *c)
{
#if PMT_HAVE_TSC
    if (c->use_tsc) {
#ifdef PMT_COUNTER_CLOCK
        /* Measurement only (bench/bench_cpmt_clock.py): a counter, not a
         * clock, to weigh what the stamp costs.  Never in a real build. */
        static uint64_t pmt_counter_ticks;
        return pmt_counter_ticks += 3;
#else
        return __rdtsc();
#endif
    }
#endif
    (void)c;
    return (uint64_t)pmt_tick_monotonic_ns();
}

/* Take a fresh (ticks, ns) pair and refine the rate. */
void pmt_tickclock_anchor(pmt_tickclock *c);

/* CLOCK_MONOTONIC nanoseconds of a stamp. */
static inline int64_t
pmt_tickclock_ns(const pmt_tickclock *c, uint64_t t)
{
    if (!c->use_tsc) {
        return (int64_t)t;
    }
    return c->na + (int64_t)((double)(int64_t)(t - c->ta) * c->ns_per_tick);
}

/* Ticks in ns nanoseconds (for a time bound). */
static inline uint64_t
pmt_tickclock_ticks_in(const pmt_tickclock *c, int64_t ns)
{
    if (!c->use_tsc) {
        return (uint64_t)ns;
    }
    return (uint64_t)((double)ns / c->ns_per_tick);
}

#ifdef __cplusplus
}
#endif
#endif /* PMT_TICKCLOCK_H */
