/* capfile.c: the capture file of the malloc tracer.
 *
 * Processes: the first process opens the capture path itself (O_EXCL); any
 * other process that inherits the environment (a forked child, or a program
 * it starts) writes PATH.<pid> instead, never into another's file.  A forked
 * child opens its file lazily (first full buffer or exit, see lifecycle.c),
 * so a child that execs at once leaves no file of its own beside the exec'd
 * program's.  The file starts with the header and a META record
 * (src/core/capture_format.h); buffers of whole records follow.
 */
#define _GNU_SOURCE 1     /* RTLD_NEXT, dl_iterate_phdr, execvpe, reallocarray */
#include <errno.h>
#include <fcntl.h>
#include <string.h>
#include <sys/resource.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "preload.h"

int g_fd = -1;
static dev_t g_dev;                     /* the capture file open at g_fd */
static ino_t g_ino;
int g_open_pending;
int g_write_err;
char g_path[PATH_MAX];
char g_path_used[PATH_MAX + 32];
int g_owns_main;
pthread_mutex_t g_write_lock = PTHREAD_MUTEX_INITIALIZER;

void
put_u(char *out, size_t *n, unsigned long v)
{
    char tmp[24];
    size_t k = 0;
    do {
        tmp[k++] = (char)('0' + v % 10);
        v /= 10;
    } while (v);
    while (k) {
        out[(*n)++] = tmp[--k];
    }
}

void
say(const char *a, const char *b, int err)
{
    char msg[PATH_MAX + 200];
    size_t n = 0;
    const char *parts[4] = {"pymemtrace malloc: ", a, b, err ? ": " : ""};
    for (int i = 0; i < 4; i++) {
        size_t l = strlen(parts[i]);
        if (n + l >= sizeof(msg) - 100) {
            l = sizeof(msg) - 100 - n;
        }
        memcpy(msg + n, parts[i], l);
        n += l;
    }
    if (err) {
        const char *e = strerror(err);
        size_t l = strlen(e);
        if (l > 80) {
            l = 80;
        }
        memcpy(msg + n, e, l);
        n += l;
    }
    msg[n++] = '\n';
    ssize_t w = write(2, msg, n);
    (void)w;
}

static int
write_all(int fd, const void *buf, size_t n)
{
    const char *p = buf;
    while (n) {
        ssize_t w = write(fd, p, n);
        if (w < 0) {
            if (errno == EINTR) {
                continue;
            }
            return -1;
        }
        p += w;
        n -= (size_t)w;
    }
    return 0;
}

/* ---- the capture's descriptor ---------------------------------------------
 *
 * The traced program owns the low descriptors: a shell's `exec 3>file`, a
 * daemon's closerange(3, ...) followed by open(), a child that lists what it
 * inherited.  The capture's descriptor is therefore moved as high as the
 * soft RLIMIT_NOFILE allows (at most FD_CEILING: a huge descriptor table
 * costs the kernel memory and every fork a copy), is close-on-exec, and is
 * checked to still be the capture file (st_dev/st_ino recorded at open)
 * before every buffer is written.  If the program closed it or put another
 * file there, the capture is reopened by its path (and checked to be the
 * same file); if that fails, writing stops: the program's files are never
 * written, and the capture ends without its END record (the reader reports
 * it cut short).
 */
#define FD_CEILING 4096

static int
place_high(int fd)
{
    struct rlimit rl;
    long top = 1024;
    if (getrlimit(RLIMIT_NOFILE, &rl) == 0 && rl.rlim_cur != RLIM_INFINITY) {
        top = (long)rl.rlim_cur;
    }
    if (top > FD_CEILING) {
        top = FD_CEILING;
    }
    /* F_DUPFD gives the lowest free descriptor >= its argument: try the top
     * one, then further down while those are taken. */
    for (long step = 1; top - step > fd; step *= 2) {
        int h = fcntl(fd, F_DUPFD_CLOEXEC, (int)(top - step));
        if (h >= 0) {
            close(fd);
            return h;
        }
        if (errno != EMFILE && errno != EINVAL) {
            break;
        }
    }
    return fd;      /* no room above it: stay where open() put it */
}

/* Is g_fd still the capture file?  One fstat per buffer written. */
static int
fd_is_capture(void)
{
    struct stat st;
    return g_fd >= 0 && fstat(g_fd, &st) == 0 && st.st_dev == g_dev && st.st_ino == g_ino;
}

/* The program closed g_fd or put another file there: forget the number
 * (never close it: it is the program's now) and reopen the capture by its
 * path, appending.  Called with g_write_lock held. */
static int
reopen_capture(void)
{
    g_fd = -1;
    int fd = open(g_path_used, O_WRONLY | O_APPEND | O_CLOEXEC | O_NOFOLLOW);
    if (fd < 0) {
        return -1;
    }
    struct stat st;
    if (fstat(fd, &st) != 0 || st.st_dev != g_dev || st.st_ino != g_ino) {
        close(fd);      /* another file under that name now */
        errno = ESTALE;
        return -1;
    }
    g_fd = place_high(fd);
    return 0;
}

/* Close the capture if g_fd is still it. */
void
close_capture(void)
{
    if (fd_is_capture()) {
        close(g_fd);
    }
    g_fd = -1;
}

/* Open the capture.  Called with g_write_lock held (or before threads). */
int
open_capture(void)
{
    int flags = O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC | O_NOFOLLOW;
    int fd = -1;
    size_t plen = strlen(g_path);
    memcpy(g_path_used, g_path, plen + 1);
    g_owns_main = 0;
    if (!g_open_pending) {
        fd = open(g_path_used, flags, 0644);
        g_owns_main = fd >= 0;
    }
    for (unsigned k = 0; fd < 0 && (k == 0 || errno == EEXIST) && k < 100; k++) {
        /* PATH.<pid>, then PATH.<pid>.<k> */
        size_t n = plen;
        g_path_used[n++] = '.';
        put_u(g_path_used, &n, (unsigned long)g_pid);
        if (k) {
            g_path_used[n++] = '.';
            put_u(g_path_used, &n, k);
        }
        g_path_used[n] = '\0';
        fd = open(g_path_used, flags, 0644);
    }
    if (fd < 0) {
        return -1;
    }
    pmt_mc_header h;
    memset(&h, 0, sizeof(h));
    memcpy(h.magic, PMT_MC_MAGIC, 8);
    h.version = g_stacks ? PMT_MC_VERSION_STACKS : PMT_MC_VERSION;
    h.header_size = PMT_MC_HEADER_SIZE;
    h.record_size = g_rs;
    h.flags = (g_native ? PMT_MC_FLAG_NATIVE : 0) | (g_stacks ? PMT_MC_FLAG_STACKS : 0);
    h.pid = (uint32_t)g_pid;
    h.ppid = (uint32_t)getppid();
    struct timespec ts;
    if (clock_gettime(CLOCK_REALTIME, &ts) == 0) {
        h.start_ns = (uint64_t)ts.tv_sec * 1000000000u + (uint64_t)ts.tv_nsec;
    }
    h.endian = PMT_MC_ENDIAN;
    long ps = sysconf(_SC_PAGESIZE);
    h.page_size = ps > 0 ? (uint32_t)ps : 4096;
    unsigned char meta[PMT_MC_RECORD_NATIVE];
    memset(meta, 0, sizeof(meta));
    pmt_mc_record *m = (pmt_mc_record *)meta;
    m->seq_kind = PMT_MC_META;
    m->a = g_py_hex;
    m->code = g_py_status;
    m->line = -1;
    struct stat st;
    if (fstat(fd, &st) != 0 || write_all(fd, &h, sizeof(h)) < 0 ||
        write_all(fd, meta, g_rs) < 0) {
        int e = errno;
        close(fd);
        errno = e;
        return -1;
    }
    g_dev = st.st_dev;
    g_ino = st.st_ino;
    g_fd = place_high(fd);
    g_open_pending = 0;
    return 0;
}

/* Append len bytes of whole records to the capture, or count them dropped.
 * Called with g_write_lock held. */
void
write_buffer(const void *data, size_t len)
{
    if (g_fd < 0 && g_open_pending && !g_write_err) {
        if (open_capture() < 0) {
            g_write_err = errno ? errno : EIO;
            say("cannot create a capture for a forked child near ", g_path, g_write_err);
        }
    }
    if (g_fd >= 0 && !g_write_err && UNLIKELY(!fd_is_capture()) && reopen_capture() < 0) {
        g_write_err = errno ? errno : EBADF;
        say("the program closed or replaced the capture's descriptor and the capture "
            "cannot be reopened; it stops here: ", g_path_used, g_write_err);
    }
    if (g_fd < 0 || g_write_err || write_all(g_fd, data, len) < 0) {
        if (!g_write_err && g_fd >= 0) {
            g_write_err = errno;
            say("writing the capture failed: ", g_path_used, g_write_err);
        }
        /* every record is g_rs bytes; count events roughly as records */
        atomic_fetch_add(&g_dropped, len / g_rs);
    }
}
