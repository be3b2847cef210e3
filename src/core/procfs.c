/* procfs.c: open, read and parse the files of /proc/PID, no stdio (see procfs.h). */
#include "procfs.h"
#include "logwriter.h"      /* pmt_fmt_int */
#include "rss.h"            /* pmt_page_size */

#include <errno.h>
#include <fcntl.h>
#include <string.h>
#include <unistd.h>
#ifdef __linux__
#include <sys/syscall.h>
#endif

/* ---- descriptors and constants -------------------------------------------- */

long
pmt_clock_hz(void)
{
    static long hz;
    if (hz <= 0) {
        long v = sysconf(_SC_CLK_TCK);
        hz = v > 0 ? v : 100;
    }
    return hz;
}

/* "/proc/<pid>/<leaf>" into out (which must hold 64 bytes). */
static void
proc_path(char *out, pid_t pid, const char *leaf)
{
    static const char prefix[] = "/proc/";
    size_t n = sizeof(prefix) - 1;
    memcpy(out, prefix, n);
    n += (size_t)pmt_fmt_int(out + n, (int64_t)pid);
    out[n++] = '/';
    size_t k = strlen(leaf);
    if (k > 40) {
        k = 40;
    }
    memcpy(out + n, leaf, k);
    out[n + k] = '\0';
}

struct pmt_dirent64 {
    uint64_t d_ino;
    int64_t d_off;
    unsigned short d_reclen;
    unsigned char d_type;
    char d_name[];
};

int
pmt_procfs_each_entry(int dfd, void (*fn)(const char *name, void *arg), void *arg)
{
    char buf[8192] __attribute__((aligned(8)));
    for (;;) {
#ifdef SYS_getdents64
        long n = syscall(SYS_getdents64, dfd, buf, sizeof(buf));
#else
        long n = -1;
        errno = ENOSYS;
#endif
        if (n < 0) {
            if (errno == EINTR) {
                continue;
            }
            int e = errno;
            (void)close(dfd);
            errno = e;
            return -1;
        }
        if (n == 0) {
            break;
        }
        for (long off = 0; off < n;) {
            const struct pmt_dirent64 *d = (const struct pmt_dirent64 *)(buf + off);
            off += d->d_reclen;
            fn(d->d_name, arg);
        }
    }
    (void)close(dfd);
    return 0;
}

int
pmt_procfs_open(pid_t pid, const char *leaf)
{
    char path[64];
    proc_path(path, pid, leaf);
    int fd;
    do {
        fd = open(path, O_RDONLY | O_CLOEXEC);
    } while (fd < 0 && errno == EINTR);
    if (fd < 0 && errno == ENOENT) {
        errno = ESRCH;
    }
    return fd;
}

/* Read the whole (small) file at offset 0 into buf; NUL-terminates.  Returns
 * the length, or -1 with errno (ESRCH for a process that has gone). */
ssize_t
pmt_procfs_read(int fd, char *buf, size_t cap)
{
    size_t len = 0;
    while (len + 1 < cap) {
        ssize_t n = pread(fd, buf + len, cap - 1 - len, (off_t)len);
        if (n < 0) {
            if (errno == EINTR) {
                continue;
            }
            if (errno == ENOENT) {
                errno = ESRCH;
            }
            return -1;
        }
        if (n == 0) {
            break;
        }
        len += (size_t)n;
    }
    buf[len] = '\0';
    return (ssize_t)len;
}

ssize_t
pmt_procfs_read_file(pid_t pid, const char *leaf, char *buf, size_t cap)
{
    int fd = pmt_procfs_open(pid, leaf);
    if (fd < 0) {
        return -1;
    }
    ssize_t n = pmt_procfs_read(fd, buf, cap);
    int e = errno;
    (void)close(fd);
    errno = e;
    return n;
}

void
pmt_procfs_close(int *fd)
{
    if (*fd >= 0) {
        (void)close(*fd);
        *fd = -1;
    }
}

/* Unsigned decimal at text[*i]; skips leading spaces.  -1 if none, or if it
 * does not fit 64 bits (the kernel writes none such: the text is not its). */
static int
parse_u64(const char *text, size_t len, size_t *i, uint64_t *out)
{
    size_t k = *i;
    while (k < len && text[k] == ' ') {
        k++;
    }
    if (k >= len || text[k] < '0' || text[k] > '9') {
        return -1;
    }
    uint64_t v = 0;
    while (k < len && text[k] >= '0' && text[k] <= '9') {
        uint64_t d = (uint64_t)(text[k] - '0');
        if (v > (UINT64_MAX - d) / 10) {
            return -1;
        }
        v = v * 10 + d;
        k++;
    }
    *i = k;
    *out = v;
    return 0;
}

/* Signed decimal (stat has a few signed fields); -1 outside int64_t. */
static int
parse_i64(const char *text, size_t len, size_t *i, int64_t *out)
{
    size_t k = *i;
    while (k < len && text[k] == ' ') {
        k++;
    }
    int neg = 0;
    if (k < len && text[k] == '-') {
        neg = 1;
        k++;
    }
    uint64_t u;
    if (parse_u64(text, len, &k, &u) != 0) {
        return -1;
    }
    if (u > (uint64_t)INT64_MAX + (uint64_t)neg) {
        return -1;      /* outside int64_t */
    }
    *i = k;
    *out = !neg ? (int64_t)u : u > (uint64_t)INT64_MAX ? INT64_MIN : -(int64_t)u;
    return 0;
}

/* ---- parsing -------------------------------------------------------------- */

int
pmt_parse_stat(const char *text, size_t len, long hz, pmt_procsample *s,
               uint64_t *starttime)
{
    /* "pid (comm) state ppid ...": comm may hold spaces and parentheses, so
     * the fields start after the last ')'. */
    size_t close = len;
    for (size_t k = len; k > 0; k--) {
        if (text[k - 1] == ')') {
            close = k - 1;
            break;
        }
    }
    if (close >= len || close + 3 >= len || text[close + 1] != ' ') {
        return -1;
    }
    if (hz <= 0) {
        hz = 100;
    }
    size_t i = close + 2;
    s->state = text[i++];
    /* fields 4..22 (1-based, as in proc(5)) */
    int64_t f[23];
    for (int field = 4; field <= 22; field++) {
        if (parse_i64(text, len, &i, &f[field]) != 0) {
            return -1;
        }
    }
    s->ppid = (int32_t)f[4];
    s->minflt = f[10];
    s->cminflt = f[11];
    s->majflt = f[12];
    s->cmajflt = f[13];
    s->utime = (double)f[14] / (double)hz;
    s->stime = (double)f[15] / (double)hz;
    s->cutime = (double)f[16] / (double)hz;
    s->cstime = (double)f[17] / (double)hz;
    s->num_threads = f[20];
    *starttime = (uint64_t)f[22];
    return 0;
}

int
pmt_parse_statm(const char *text, size_t len, long page, pmt_procsample *s)
{
    /* size resident shared text lib data dt, in pages */
    uint64_t f[6];
    size_t i = 0;
    for (int k = 0; k < 6; k++) {
        if (parse_u64(text, len, &i, &f[k]) != 0) {
            return -1;
        }
    }
    s->vms = (int64_t)(f[0] * (uint64_t)page);
    s->rss = (int64_t)(f[1] * (uint64_t)page);
    s->shared = (int64_t)(f[2] * (uint64_t)page);
    s->text = (int64_t)(f[3] * (uint64_t)page);
    s->data = (int64_t)(f[5] * (uint64_t)page);
    return 0;
}

int64_t
pmt_parse_num(const char *text, size_t len, const char *key)
{
    size_t klen = strlen(key);
    size_t i = 0;
    while (i + klen <= len) {
        /* i is at the start of a line */
        if (memcmp(text + i, key, klen) == 0) {
            size_t k = i + klen;
            while (k < len && (text[k] == ' ' || text[k] == '\t')) {
                k++;
            }
            uint64_t v;
            if (parse_u64(text, len, &k, &v) != 0 || v > (uint64_t)INT64_MAX) {
                return -1;
            }
            return (int64_t)v;
        }
        const char *nl = memchr(text + i, '\n', len - i);
        if (nl == NULL) {
            break;
        }
        i = (size_t)(nl - text) + 1;
    }
    return -1;
}

int64_t
pmt_parse_kb(const char *text, size_t len, const char *key)
{
    int64_t v = pmt_parse_num(text, len, key);
    if (v < 0 || v > INT64_MAX / 1024) {
        return -1;  /* absent, malformed, or more kB than bytes can count */
    }
    return v * 1024;
}
