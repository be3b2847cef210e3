/* capfile.c: the capture file of the malloc tracer.
 *
 * In-process (inproc.c): exactly the path given, created O_EXCL, or an error.
 * Processes: the first process creates the capture path itself; any other
 * process that inherits the environment (a forked child, or a program it
 * starts) writes PATH.<pid> instead, never into another's file.  A forked
 * child creates its file when it first records something, so a child that
 * execs at once, or allocates nothing, leaves no file.  A capture appears
 * under its name with its header already written (made as an unnamed
 * O_TMPFILE, then linked), never as an empty file.
 *
 * No descriptor stays open: the traced program owns every descriptor number
 * (a shell's `exec 3>file`, a daemon's closerange, a child listing what it
 * inherited, a low RLIMIT_NOFILE).  The header page and each thread's chunk
 * are mapped MAP_SHARED (src/core/capture_format.h); a new chunk opens the
 * file by its path for a moment (checked to be the same file: st_dev and
 * st_ino), reserves the chunk's blocks with posix_fallocate, maps it and
 * closes the descriptor.  Reserving first means a full disk is an error
 * returned here, never a SIGBUS in the program: writing stops, and the
 * header says at which event and why.
 */
#define _GNU_SOURCE 1     /* RTLD_NEXT, dl_iterate_phdr, execvpe, reallocarray */
#include <errno.h>
#include <fcntl.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "preload.h"

static dev_t g_dev;                     /* the capture file */
static ino_t g_ino;
static pmt_mc_header *g_hdr;            /* its header page, mapped MAP_SHARED */
static size_t g_hdr_map;                /* the mapping's length */
static uint64_t g_file_end;             /* where the next chunk goes */
static int g_closed;                    /* ended: no new chunk */
int g_open_pending;
int g_stop_err;
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
pwrite_all(int fd, const void *buf, size_t n, off_t off)
{
    const char *p = buf;
    while (n) {
        ssize_t w = pwrite(fd, p, n, off);
        if (w < 0) {
            if (errno == EINTR) {
                continue;
            }
            return -1;
        }
        p += w;
        n -= (size_t)w;
        off += w;
    }
    return 0;
}

uint64_t
events_so_far(void)
{
    if (g_aggregate) {
        return g_agg.events;    /* read unlocked: a lower bound, as below */
    }
    uint64_t events = 0;
    for (tbuf *b = g_bufs; b; b = b->next) {
        events += b->events;    /* other threads may still add: a lower bound */
    }
    return events;
}

/* The candidate names: PATH (unless a forked child), PATH.<pid>, PATH.<pid>.<k>. */
static int
name_candidate(unsigned k)
{
    size_t plen = strlen(g_path);
    memcpy(g_path_used, g_path, plen + 1);
    if (k == 0) {
        return !g_open_pending;
    }
    if (g_inproc_mode) {
        return 0;       /* in-process: exactly the path asked for, or an error */
    }
    size_t n = plen;
    g_path_used[n++] = '.';
    put_u(g_path_used, &n, (unsigned long)g_pid);
    if (k > 1) {
        g_path_used[n++] = '.';
        put_u(g_path_used, &n, k - 1);
    }
    g_path_used[n] = '\0';
    return 1;
}

/* An unnamed file in the capture's directory (-1 if the file system or the
 * kernel cannot make one). */
static int
open_unnamed(void)
{
    char dir[PATH_MAX];
    size_t n = strlen(g_path);
    memcpy(dir, g_path, n + 1);
    char *slash = strrchr(dir, '/');
    if (slash == NULL) {
        memcpy(dir, ".", 2);
    }
    else if (slash == dir) {
        dir[1] = '\0';
    }
    else {
        *slash = '\0';
    }
    return open(dir, O_TMPFILE | O_RDWR | O_CLOEXEC, 0644);
}

/* Give the unnamed file fd the first free candidate name. */
static int
link_unnamed(int fd)
{
    char self[64] = "/proc/self/fd/";
    size_t n = strlen(self);
    put_u(self, &n, (unsigned long)fd);
    self[n] = '\0';
    for (unsigned k = 0; k < 101; k++) {
        if (!name_candidate(k)) {
            continue;
        }
        if (linkat(AT_FDCWD, self, AT_FDCWD, g_path_used, AT_SYMLINK_FOLLOW) == 0) {
            g_owns_main = k == 0;
            return 0;
        }
        if (errno != EEXIST) {
            return -1;
        }
    }
    errno = EEXIST;
    return -1;
}

/* Create a named file directly (O_EXCL), for where O_TMPFILE is not to be had. */
static int
open_named(void)
{
    int fd = -1;
    for (unsigned k = 0; fd < 0 && k < 101; k++) {
        if (!name_candidate(k)) {
            continue;
        }
        fd = open(g_path_used, O_RDWR | O_CREAT | O_EXCL | O_CLOEXEC | O_NOFOLLOW, 0644);
        if (fd < 0 && errno != EEXIST) {
            return -1;
        }
        g_owns_main = fd >= 0 && k == 0;
    }
    return fd;
}

/* Create the capture and map its header.  Called with g_write_lock held (or
 * before threads). */
int
open_capture(void)
{
    g_owns_main = 0;
    long ps = sysconf(_SC_PAGESIZE);
    size_t page = ps > 0 ? (size_t)ps : 4096;
    pmt_mc_header h;
    memset(&h, 0, sizeof(h));
    memcpy(h.magic, PMT_MC_MAGIC, 8);
    h.version = PMT_MC_VERSION;
    h.header_size = PMT_MC_HEADER_SIZE;
    h.record_size = g_native ? PMT_MC_RECORD_NATIVE : PMT_MC_RECORD_BASE;
    h.flags = (g_native ? PMT_MC_FLAG_NATIVE : 0) | (g_stacks ? PMT_MC_FLAG_STACKS : 0);
    h.pid = (uint32_t)g_pid;
    h.ppid = (uint32_t)getppid();
    struct timespec ts;
    if (clock_gettime(CLOCK_REALTIME, &ts) == 0) {
        h.start_ns = (uint64_t)ts.tv_sec * 1000000000u + (uint64_t)ts.tv_nsec;
    }
    time_start();
    h.endian = PMT_MC_ENDIAN;
    h.page_size = (uint32_t)page;
    h.chunk_size = CHUNK_BYTES;
    h.data_offset = (uint32_t)page;
    h.python_hex = g_py_hex;
    h.python_status = g_py_status;
    h.state = PMT_MC_STATE_RUNNING;
    h.flags |= g_aggregate ? PMT_MC_FLAG_AGGREGATE : 0;

    int unnamed = 1;
    int fd = open_unnamed();
    if (fd < 0) {
        unnamed = 0;
        fd = open_named();
        if (fd < 0) {
            return -1;
        }
    }
    struct stat st;
    void *m = MAP_FAILED;
    int e = 0;
    if (fstat(fd, &st) != 0 || pwrite_all(fd, &h, sizeof(h), 0) < 0 ||
        (e = posix_fallocate(fd, 0, (off_t)page)) != 0 ||
        (m = real.mmap(NULL, page, PROT_READ | PROT_WRITE, MAP_SHARED, fd, 0)) == MAP_FAILED ||
        (unnamed && link_unnamed(fd) < 0)) {
        e = e ? e : errno;
        if (m != MAP_FAILED) {
            real.munmap(m, page);
        }
        if (!unnamed) {
            unlink(g_path_used);
        }
        close(fd);
        errno = e;
        return -1;
    }
    close(fd);
    g_dev = st.st_dev;
    g_ino = st.st_ino;
    g_hdr = m;
    g_hdr_map = page;
    g_file_end = page;
    g_open_pending = 0;
    g_closed = 0;
    return 0;
}

/* Open the capture by its path, checked to be the file we created. */
static int
reopen_capture(void)
{
    int fd = open(g_path_used, O_RDWR | O_CLOEXEC | O_NOFOLLOW);
    if (fd < 0) {
        return -1;
    }
    struct stat st;
    if (fstat(fd, &st) != 0 || st.st_dev != g_dev || st.st_ino != g_ino) {
        close(fd);
        errno = ESTALE;     /* another file under that name now */
        return -1;
    }
    return fd;
}

/* Writing stops for good: say so in the header and once on stderr.
 * g_write_lock held. */
static void
stop_writing(int err, const char *why)
{
    g_stop_err = err ? err : EIO;
    uint64_t n = events_so_far();
    if (g_hdr) {
        g_hdr->stop_events = n;
        g_hdr->stop_errno = (uint32_t)g_stop_err;
    }
    char at[64] = "the capture stopped at event ";
    size_t k = strlen(at);
    put_u(at, &k, (unsigned long)n);
    memcpy(at + k, " (", 3);
    char what[PATH_MAX + 100];
    size_t w = strlen(why);
    memcpy(what, why, w);
    memcpy(what + w, g_path_used, strlen(g_path_used) + 1);
    w = strlen(what);
    memcpy(what + w, ")", 2);
    say(at, what, g_stop_err);
}

/* len more bytes at the end of the file, reserved and mapped (NULL: none;
 * writing stops unless descriptors ran out).  g_write_lock held. */
static void *
map_extent(size_t len, uint64_t *at)
{
    int fd = reopen_capture();
    if (fd < 0 && (errno == EMFILE || errno == ENFILE)) {
        /* the program holds every descriptor it may: drop events until one
         * is free again (counted; the report says how many) */
        return NULL;
    }
    if (fd < 0) {
        stop_writing(errno, "the capture file was removed or replaced: ");
        return NULL;
    }
    uint64_t off = g_file_end;
    int e = posix_fallocate(fd, (off_t)off, (off_t)len);
    void *m = MAP_FAILED;
    if (e == 0) {
        m = real.mmap(NULL, len, PROT_READ | PROT_WRITE, MAP_SHARED, fd, (off_t)off);
        e = m == MAP_FAILED ? errno : 0;
    }
    close(fd);
    if (e != 0) {
        stop_writing(e, e == ENOSPC ? "the disk is full: " : "cannot extend the capture: ");
        return NULL;
    }
    g_file_end = off + len;
    *at = off;
    return m;
}

/* A new chunk for tb (its old one is unmapped: what it holds is in the
 * file).  tb locked. */
int
new_chunk(tbuf *tb)
{
    if (UNLIKELY(g_stop_err || g_closed)) {
        return -1;
    }
    pthread_mutex_lock(&g_write_lock);
    if (g_stop_err || g_closed) {
        pthread_mutex_unlock(&g_write_lock);
        return -1;
    }
    if (g_hdr == NULL) {
        if (!g_open_pending) {      /* never opened: nothing to write to */
            pthread_mutex_unlock(&g_write_lock);
            return -1;
        }
        if (open_capture() < 0) {
            g_stop_err = errno ? errno : EIO;
            say("cannot create a capture for a forked child near ", g_path, g_stop_err);
            pthread_mutex_unlock(&g_write_lock);
            return -1;
        }
    }
    uint64_t off;
    void *m = map_extent(CHUNK_BYTES, &off);
    pthread_mutex_unlock(&g_write_lock);
    if (m == NULL) {
        return -1;
    }
    drop_chunk(tb);
    tb->chunk = m;
    tb->chunk_off = off;
    tb->len = 0;
    tb->p_seq = tb->p_addr = tb->p_size = tb->p_native = 0;
    tb->p_code = 0;
    tb->p_line = 0;
    time_note(tb, TIME_NEW_CHUNK, 0);  /* each chunk starts with the time */
    return 0;
}

void
drop_chunk(tbuf *tb)
{
    if (tb->chunk) {
        real.munmap(tb->chunk, CHUNK_BYTES);
    }
    tb->chunk = NULL;
    tb->len = 0;
}

/* The end of this image: the header's end fields, and the unused tails of
 * the chunks given back to the file system (the last chunk of the file is
 * cut at its last record).  Every buffer is unmapped; events after this are
 * dropped.  Called with every buffer locked (or no other thread tracing). */
void
end_capture(uint32_t state)
{
    if (t_buf && t_buf->chunk && g_hdr && !g_closed) {
        time_note(t_buf, TIME_AT_END, 0);  /* the clock and RSS at the end */
    }
    pthread_mutex_lock(&g_write_lock);
    if (g_hdr == NULL) {
        pthread_mutex_unlock(&g_write_lock);
        return;
    }
    g_closed = 1;
    int fd = reopen_capture();
    uint64_t end = g_file_end;
    for (tbuf *tb = g_bufs; tb; tb = tb->next) {
        if (tb->chunk && fd >= 0) {
            if (tb->chunk_off + CHUNK_BYTES == g_file_end) {
                end = tb->chunk_off + tb->len;
            }
            else if (fallocate(fd, FALLOC_FL_PUNCH_HOLE | FALLOC_FL_KEEP_SIZE,
                               (off_t)(tb->chunk_off + tb->len),
                               (off_t)(CHUNK_BYTES - tb->len)) != 0) {
                /* not supported here: the tail stays zeros */
            }
        }
        drop_chunk(tb);
    }
    if (fd >= 0) {
        if (end < g_file_end && ftruncate(fd, (off_t)end) != 0) {
            /* the zeros stay: they read as the end of the chunk */
        }
        close(fd);
    }
    g_hdr->events = events_so_far();
    g_hdr->dropped = atomic_load(&g_dropped);
    g_hdr->state = state;
    pthread_mutex_unlock(&g_write_lock);
}

/* ---- checkpoint slots (--aggregate) --------------------------------------- */

/* A new extent of whole chunks at the end of the file for a checkpoint slot
 * (at least bytes long), mapped, its head's kind and length written. */
int
ckpt_extent(size_t bytes, uint64_t *area_off, unsigned char **map)
{
    size_t chunks = (bytes + CHUNK_BYTES - 1) / CHUNK_BYTES;
    size_t len = chunks * CHUNK_BYTES;
    pthread_mutex_lock(&g_write_lock);
    if (g_hdr == NULL || g_stop_err || g_closed || chunks > UINT32_MAX) {
        pthread_mutex_unlock(&g_write_lock);
        return -1;
    }
    uint64_t off;
    pmt_mc_ckpt_head *h = map_extent(len, &off);
    if (h == NULL) {
        pthread_mutex_unlock(&g_write_lock);
        return -1;
    }
    h->chunks = (uint32_t)chunks;
    atomic_signal_fence(memory_order_release);
    h->kind = PMT_MC_CHECKPOINT;
    pthread_mutex_unlock(&g_write_lock);
    *area_off = off - g_hdr->data_offset;
    *map = (unsigned char *)h;
    return 0;
}

/* An extent no slot uses any more: unmapped, and (punch) its blocks given back
 * (zeros read as empty chunks). */
void
ckpt_extent_drop(uint64_t area_off, unsigned char *map, size_t bytes, int punch)
{
    size_t len = (bytes + CHUNK_BYTES - 1) / CHUNK_BYTES * CHUNK_BYTES;
    real.munmap(map, len);
    if (!punch) {
        return;
    }
    pthread_mutex_lock(&g_write_lock);
    int fd = g_hdr ? reopen_capture() : -1;
    if (fd >= 0) {
        if (fallocate(fd, FALLOC_FL_PUNCH_HOLE | FALLOC_FL_KEEP_SIZE,
                      (off_t)(area_off + g_hdr->data_offset), (off_t)len) != 0) {
            /* not supported here: its head still says to skip it */
        }
        close(fd);
    }
    pthread_mutex_unlock(&g_write_lock);
}

/* The checkpoint in slot (its extent at area_off) is whole: name it, then
 * commit its number last. */
void
ckpt_commit(unsigned slot, uint64_t area_off, uint64_t seq)
{
    if (g_hdr == NULL) {
        return;
    }
    g_hdr->ckpt_slot[slot & 1] = area_off;
    atomic_thread_fence(memory_order_release);
    g_hdr->ckpt_commit = (uint32_t)seq;
}

/* exec failed: the same image records on, into new chunks. */
void
resume_capture(void)
{
    pthread_mutex_lock(&g_write_lock);
    if (g_hdr) {
        g_hdr->state = PMT_MC_STATE_RUNNING;
        g_closed = 0;
    }
    pthread_mutex_unlock(&g_write_lock);
}

/* A forked child: the mappings are the parent's file; never write them. */
void
forget_capture(void)
{
    if (g_hdr) {
        real.munmap(g_hdr, g_hdr_map);
    }
    g_hdr = NULL;
    g_file_end = 0;
    g_closed = 0;
    g_stop_err = 0;
    g_open_pending = 1;
    g_owns_main = 0;
}

/* In-process stop: the ended capture is no longer ours to write. */
void
close_capture(void)
{
    pthread_mutex_lock(&g_write_lock);
    if (g_hdr) {
        real.munmap(g_hdr, g_hdr_map);
    }
    g_hdr = NULL;
    g_file_end = 0;
    g_closed = 0;
    pthread_mutex_unlock(&g_write_lock);
}

int
capture_open(void)
{
    return g_hdr != NULL;
}
