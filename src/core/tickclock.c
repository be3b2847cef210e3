/* tickclock.c: TSC stamps calibrated against CLOCK_MONOTONIC (see tickclock.h). */
#include "tickclock.h"

#include <errno.h>
#include <fcntl.h>
#include <string.h>
#include <unistd.h>

/* Does the kernel itself keep time with the TSC?  Then it found the TSC
 * invariant and synchronised, and so can we. */
static int
kernel_uses_tsc(void)
{
#if PMT_HAVE_TSC
    int fd;
    do {
        fd = open("/sys/devices/system/clocksource/clocksource0/current_clocksource",
                  O_RDONLY | O_CLOEXEC);
    } while (fd < 0 && errno == EINTR);
    if (fd < 0) {
        return 0;
    }
    char buf[32];
    ssize_t n;
    do {
        n = read(fd, buf, sizeof buf - 1);
    } while (n < 0 && errno == EINTR);
    (void)close(fd);
    if (n <= 0) {
        return 0;
    }
    buf[n] = '\0';
    return strncmp(buf, "tsc\n", 4) == 0;
#else
    return 0;
#endif
}

/* One (ticks, ns) pair, the ticks taken around the clock read.  If the
 * thread was preempted between the two stamps the pair is uncertain by half
 * the gap, so the tightest of a few tries is kept (the first one usually is:
 * it returns at once when the gap is under about a microsecond). */
static void
pair(const pmt_tickclock *c, uint64_t *t, int64_t *ns)
{
    uint64_t best = UINT64_MAX;
    for (int i = 0; i < 8; i++) {
        uint64_t a = pmt_ticks(c);
        int64_t n = pmt_tick_monotonic_ns();
        uint64_t b = pmt_ticks(c);
        if (b >= a && b - a < best) {
            best = b - a;
            *t = a + (b - a) / 2;
            *ns = n;
            if (best < 2048) {
                break;
            }
        }
    }
    if (best == UINT64_MAX) {   /* ticks went backwards every time: take the last */
        *t = pmt_ticks(c);
        *ns = pmt_tick_monotonic_ns();
    }
}

void
pmt_tickclock_init(pmt_tickclock *c, int64_t calib_ns, int force_monotonic)
{
    c->use_tsc = !force_monotonic && kernel_uses_tsc();
    c->ns_per_tick = 1.0;
    if (!c->use_tsc) {
        c->t0 = c->ta = (uint64_t)(c->ns0 = c->na = pmt_tick_monotonic_ns());
        return;
    }
    pair(c, &c->t0, &c->ns0);
    uint64_t t;
    int64_t ns;
    do {
        pair(c, &t, &ns);
    } while (ns - c->ns0 < calib_ns && t > c->t0);
    if (t <= c->t0 || ns <= c->ns0) {
        c->use_tsc = 0;     /* not monotonic: do without */
        c->t0 = c->ta = (uint64_t)(c->ns0 = c->na = pmt_tick_monotonic_ns());
        return;
    }
    c->ns_per_tick = (double)(ns - c->ns0) / (double)(t - c->t0);
    c->ta = t;
    c->na = ns;
}

void
pmt_tickclock_anchor(pmt_tickclock *c)
{
    if (!c->use_tsc) {
        return;
    }
    uint64_t t;
    int64_t ns;
    pair(c, &t, &ns);
    if (t > c->t0 && ns > c->ns0 + 10000000) {
        /* the longer the baseline, the better the rate */
        c->ns_per_tick = (double)(ns - c->ns0) / (double)(t - c->t0);
    }
    c->ta = t;
    c->na = ns;
}
