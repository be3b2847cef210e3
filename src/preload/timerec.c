/* timerec.c: the TIME records of the malloc tracer (capture_format.h).
 *
 * The capture carries a clock and the process's RSS without a system call
 * per event: every TIME_CHECK_EVERY events, and at every event of at least
 * TIME_CHECK_BIG bytes, a thread reads CLOCK_MONOTONIC_COARSE (the vDSO: no
 * system call, about 17 instructions; its resolution, a few ms, is finer
 * than the records'), and when TIME_EVERY_NS have passed since the
 * last TIME record of any thread, the thread that claims it (one
 * compare-and-swap) reads /proc/self/statm (open, read, close: no descriptor
 * stays open) and writes a TIME record into its own chunk: ns since the
 * capture opened, RSS in bytes, and the number of the event about to be
 * written, which places the record just before it.  Each new chunk also starts with a TIME record
 * (its RSS read only when one is due: 0 otherwise), so a thread that
 * allocates little still has its times, and the end of the capture a last
 * one.  The reader turns them into seconds
 * for the time view and `--range 2.5s:10s`.  The clock is read only at
 * events: up to TIME_CHECK_EVERY - 1 small events a thread makes after a
 * pause carry the time before it (a big one never does), and RSS that
 * changes while nothing is allocated (a buffer being touched) shows at the
 * next events.
 */
#define _GNU_SOURCE 1
#include <errno.h>
#include <fcntl.h>
#include <time.h>
#include <unistd.h>

#include "preload.h"

#define TIME_EVERY_NS 10000000ull   /* 10 ms */

static uint64_t g_start_mono;           /* CLOCK_MONOTONIC when the capture opened */
static _Atomic uint64_t g_time_due;     /* the next TIME with RSS is due at this ns */

static uint64_t
mono_ns(void)
{
    struct timespec ts;
    if (clock_gettime(CLOCK_MONOTONIC_COARSE, &ts) != 0 &&
        clock_gettime(CLOCK_MONOTONIC, &ts) != 0) {
        return 0;
    }
    return (uint64_t)ts.tv_sec * 1000000000u + (uint64_t)ts.tv_nsec;
}

void
time_start(void)
{
    g_start_mono = mono_ns();
    atomic_store(&g_time_due, 0);
}

/* The process's RSS in bytes from /proc/self/statm (0 if unreadable). */
static uint64_t
rss_bytes(void)
{
    int fd = open("/proc/self/statm", O_RDONLY | O_CLOEXEC);
    if (fd < 0) {
        return 0;
    }
    char buf[128];
    ssize_t n;
    do {
        n = read(fd, buf, sizeof(buf) - 1);
    } while (n < 0 && errno == EINTR);
    close(fd);
    if (n <= 0) {
        return 0;
    }
    buf[n] = '\0';
    const char *p = buf;
    while (*p && *p != ' ') {
        p++;        /* the first field is the total size */
    }
    uint64_t pages = 0;
    for (p += *p == ' '; *p >= '0' && *p <= '9'; p++) {
        pages = pages * 10 + (uint64_t)(*p - '0');
    }
    long ps = sysconf(_SC_PAGESIZE);
    return pages * (uint64_t)(ps > 0 ? ps : 4096);
}

void
time_note(tbuf *tb, int how, uint64_t seq)
{
    uint64_t now = mono_ns();
    uint64_t due = atomic_load_explicit(&g_time_due, memory_order_relaxed);
    int rss_due = how == TIME_AT_END ||
                  (now >= due &&
                   atomic_compare_exchange_strong(&g_time_due, &due, now + TIME_EVERY_NS));
    if (!rss_due && how == TIME_IF_DUE) {
        return;
    }
    uint64_t v[3] = {now > g_start_mono ? now - g_start_mono : 0, rss_due ? rss_bytes() : 0,
                     seq ? seq : atomic_load_explicit(&g_seq, memory_order_relaxed)};
    put_def(tb, PMT_MC_TIME, v, 3, NULL, 0);
}
