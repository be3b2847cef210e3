/* rss.c: current and peak RSS of this process without stdio (see rss.h). */
#include "rss.h"

#include <errno.h>
#include <fcntl.h>
#include <stdatomic.h>
#include <sys/resource.h>
#include <sys/types.h>
#include <unistd.h>

#ifdef __APPLE__
#include <mach/mach.h>
#endif

static long page_size_cache;

long
pmt_page_size(void)
{
    long ps = page_size_cache;
    if (ps <= 0) {
        ps = sysconf(_SC_PAGESIZE);
        if (ps <= 0) {
            ps = 4096;
        }
        page_size_cache = ps;
    }
    return ps;
}

int64_t
pmt_statm_parse_resident(const char *text, long len)
{
    long i = 0;
    /* skip the first field (size) */
    while (i < len && text[i] == ' ') {
        i++;
    }
    if (i >= len || text[i] < '0' || text[i] > '9') {
        return -1;
    }
    while (i < len && text[i] >= '0' && text[i] <= '9') {
        i++;
    }
    if (i >= len || text[i] != ' ') {
        return -1;
    }
    while (i < len && text[i] == ' ') {
        i++;
    }
    if (i >= len || text[i] < '0' || text[i] > '9') {
        return -1;
    }
    int64_t pages = 0;
    while (i < len && text[i] >= '0' && text[i] <= '9') {
        if (pages > (INT64_MAX - 9) / 10) {
            return -1;      /* more pages than bytes can count: not a statm */
        }
        pages = pages * 10 + (text[i] - '0');
        i++;
    }
    return pages;
}

int64_t
pmt_rss_from_statm_fd(int fd)
{
    char buf[128];
    ssize_t n;
    do {
        n = pread(fd, buf, sizeof(buf) - 1, 0);
    } while (n < 0 && errno == EINTR);
    if (n <= 0) {
        if (n == 0) {
            errno = EIO;
        }
        return -1;
    }
    int64_t pages = pmt_statm_parse_resident(buf, (long)n);
    if (pages < 0 || pages > INT64_MAX / (int64_t)pmt_page_size()) {
        errno = EPROTO;
        return -1;
    }
    return pages * (int64_t)pmt_page_size();
}

#ifdef __linux__
#include <pthread.h>
/* The descriptor is tagged with the pid that opened it: a forked child sees a
 * different pid and reopens, because /proc/self at open time named the parent.
 * The fast path is two atomic loads; the slow path (first call, after fork)
 * takes a mutex.  The fd is published before the pid, so a reader that sees
 * its own pid also sees the descriptor opened for it. */
static _Atomic int statm_fd = -1;
static _Atomic pid_t statm_pid = 0;
static pthread_mutex_t statm_lock = PTHREAD_MUTEX_INITIALIZER;

static int
statm_fd_for_this_process(void)
{
    pid_t pid = getpid();
    if (atomic_load_explicit(&statm_pid, memory_order_acquire) == pid) {
        return atomic_load_explicit(&statm_fd, memory_order_relaxed);
    }
    if (pthread_mutex_lock(&statm_lock) != 0) {
        return -1;
    }
    int fd = atomic_load(&statm_fd);
    if (atomic_load(&statm_pid) != pid) {
        int nfd = open("/proc/self/statm", O_RDONLY | O_CLOEXEC);
        if (nfd >= 0) {
            if (fd >= 0) {
                (void)close(fd);    /* inherited from the parent */
            }
            fd = nfd;
            atomic_store_explicit(&statm_fd, nfd, memory_order_relaxed);
            atomic_store_explicit(&statm_pid, pid, memory_order_release);
        }
        else {
            fd = -1;
        }
    }
    (void)pthread_mutex_unlock(&statm_lock);
    return fd;
}
#endif

int64_t
pmt_rss_current(void)
{
#if defined(__linux__)
    int fd = statm_fd_for_this_process();
    if (fd < 0) {
        return -1;
    }
    return pmt_rss_from_statm_fd(fd);
#elif defined(__APPLE__)
    struct mach_task_basic_info info;
    mach_msg_type_number_t count = MACH_TASK_BASIC_INFO_COUNT;
    if (task_info(mach_task_self(), MACH_TASK_BASIC_INFO,
                  (task_info_t)&info, &count) != KERN_SUCCESS) {
        errno = EIO;
        return -1;
    }
    return (int64_t)info.resident_size;
#else
    errno = ENOSYS;
    return -1;
#endif
}

int64_t
pmt_rss_peak_given(int64_t now)
{
    struct rusage ru;
    if (getrusage(RUSAGE_SELF, &ru) != 0) {
        return -1;
    }
#ifdef __APPLE__
    int64_t peak = (int64_t)ru.ru_maxrss;          /* bytes on macOS */
#else
    int64_t peak = (int64_t)ru.ru_maxrss * 1024;   /* kilobytes on Linux */
#endif
    /* The kernel's high-water mark and the statm reading come from counters
     * that are synchronised lazily, so the mark can lag a fresh statm reading
     * by a few pages.  A peak below the current RSS is never true: take the
     * larger of the two. */
    return now > peak ? now : peak;
}

int64_t
pmt_rss_peak(void)
{
    int64_t peak = pmt_rss_peak_given(-1);
    if (peak < 0) {
        return -1;
    }
    int64_t now = pmt_rss_current();
    return now > peak ? now : peak;
}
