/* malloc_preload.c: the LD_PRELOAD library of `pymemtrace malloc`.
 *
 * Interposes the allocator entry points glibc exports (malloc, calloc,
 * realloc, reallocarray, free, posix_memalign, aligned_alloc, memalign,
 * valloc, pvalloc) and anonymous mmap/munmap, and writes one fixed-size
 * record per event in the capture format of src/core/malloccap.h.
 *
 * Configuration is read from the environment once, at load:
 *   PYMEMTRACE_MALLOC_OUT     capture path (unset or empty: trace nothing)
 *   PYMEMTRACE_MALLOC_NATIVE  "1": also record each caller's return address
 *   PYMEMTRACE_MALLOC_START   "paused": start paused; the program switches
 *                             tracing with pymemtrace_malloc_control()
 *
 * Hot path: a thread-local re-entrancy guard (the tracer's own allocations,
 * and anything the real allocator does inside, are not traced), the real
 * call, then one record appended to the calling thread's buffer (an mmap'd
 * block, found through initial-exec TLS; an uncontended spin lock guards it
 * against flush-all at exit and fork).  Whole buffers go to the file with
 * write(2) under one mutex.  No stdio, no allocation per event.
 *
 * Python attribution reads the calling thread's own frame stack (CPython
 * 3.11 layouts from the headers, compile time only; nothing is linked
 * against libpython): PyGILState_GetThisThreadState() (a TLS lookup, NULL
 * for threads without Python state or before Python started), then
 * tstate->cframe->current_frame, skipping incomplete frames.  The line comes
 * from PyCode_Addr2Line (read-only), cached per thread.  A code object's file
 * and function names are written once, when the object is first seen (a
 * CODE record with a per-run id); an address reused by another code object
 * (different name, file or first line) gets a new id.
 *
 * Processes: the first process opens the capture path itself (O_EXCL); any
 * other process that inherits the environment (a forked child, or a program
 * it starts) writes PATH.<pid> instead, never into another's file.  A forked
 * child opens its file lazily (first full buffer or exit), so a child that
 * execs at once leaves no file of its own beside the exec'd program's.  exec
 * in the same process hands PATH to the next program (see "exec and _exit"
 * below); exec and _exit write the buffers out first, as exit does.
 */
#define Py_BUILD_CORE 1
#include <Python.h>
#include <internal/pycore_frame.h>

#include <dlfcn.h>
#include <stdarg.h>
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <link.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/resource.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "malloccap.h"

#define EXPORT __attribute__((visibility("default")))
#define TLS __thread __attribute__((tls_model("initial-exec")))
#define LIKELY(x) __builtin_expect(!!(x), 1)
#define UNLIKELY(x) __builtin_expect(!!(x), 0)

/* ---- the real allocator ------------------------------------------------- */

static struct {
    void *(*malloc)(size_t);
    void *(*calloc)(size_t, size_t);
    void *(*realloc)(void *, size_t);
    void *(*reallocarray)(void *, size_t, size_t);
    void (*free)(void *);
    int (*posix_memalign)(void **, size_t, size_t);
    void *(*aligned_alloc)(size_t, size_t);
    void *(*memalign)(size_t, size_t);
    void *(*valloc)(size_t);
    void *(*pvalloc)(size_t);
    void *(*mmap)(void *, size_t, int, int, int, off_t);
    void *(*mmap64)(void *, size_t, int, int, int, off_t);
    int (*munmap)(void *, size_t);
    int (*execve)(const char *, char *const[], char *const[]);
    int (*execv)(const char *, char *const[]);
    int (*execvp)(const char *, char *const[]);
    int (*execvpe)(const char *, char *const[], char *const[]);
    int (*fexecve)(int, char *const[], char *const[]);
    void (*exit_)(int);
    void (*Exit_)(int);
} real;

/* 0: not resolved, 1: resolving (dlsym may allocate), 2: resolved */
static _Atomic int resolve_state;

/* Allocations made while dlsym resolves the real functions come from here
 * and are never given back (free ignores them). */
#define BOOT_SIZE (64 * 1024)
static _Alignas(64) unsigned char boot_arena[BOOT_SIZE];
static _Atomic size_t boot_used;

static void *
boot_alloc(size_t n, size_t align)
{
    if (align < 16) {
        align = 16;
    }
    /* 16-byte header before each block holds its size (for realloc). */
    size_t old = atomic_load(&boot_used), start, end;
    do {
        start = (old + 16 + align - 1) & ~(align - 1);
        end = start + n;
        if (end > BOOT_SIZE || end < start) {
            return NULL;
        }
    } while (!atomic_compare_exchange_weak(&boot_used, &old, end));
    *(size_t *)(boot_arena + start - sizeof(size_t)) = n;
    return boot_arena + start;
}

static inline int
in_boot(const void *p)
{
    return (const unsigned char *)p >= boot_arena &&
           (const unsigned char *)p < boot_arena + BOOT_SIZE;
}

static size_t
boot_size(const void *p)
{
    return *(const size_t *)((const unsigned char *)p - sizeof(size_t));
}

static void
resolve_real(void)
{
    int expected = 0;
    if (!atomic_compare_exchange_strong(&resolve_state, &expected, 1)) {
        return;     /* resolved, or being resolved (by us, re-entered) */
    }
    real.malloc = dlsym(RTLD_NEXT, "malloc");
    real.calloc = dlsym(RTLD_NEXT, "calloc");
    real.realloc = dlsym(RTLD_NEXT, "realloc");
    real.reallocarray = dlsym(RTLD_NEXT, "reallocarray");
    real.free = dlsym(RTLD_NEXT, "free");
    real.posix_memalign = dlsym(RTLD_NEXT, "posix_memalign");
    real.aligned_alloc = dlsym(RTLD_NEXT, "aligned_alloc");
    real.memalign = dlsym(RTLD_NEXT, "memalign");
    real.valloc = dlsym(RTLD_NEXT, "valloc");
    real.pvalloc = dlsym(RTLD_NEXT, "pvalloc");
    _Static_assert(sizeof(off_t) == 8, "64-bit off_t expected");
    real.mmap = dlsym(RTLD_NEXT, "mmap");
    real.mmap64 = dlsym(RTLD_NEXT, "mmap64");
    real.munmap = dlsym(RTLD_NEXT, "munmap");
    if (!real.mmap64) {
        real.mmap64 = real.mmap;
    }
    real.execve = dlsym(RTLD_NEXT, "execve");
    real.execv = dlsym(RTLD_NEXT, "execv");
    real.execvp = dlsym(RTLD_NEXT, "execvp");
    real.execvpe = dlsym(RTLD_NEXT, "execvpe");
    real.fexecve = dlsym(RTLD_NEXT, "fexecve");
    real.exit_ = dlsym(RTLD_NEXT, "_exit");
    real.Exit_ = dlsym(RTLD_NEXT, "_Exit");
    atomic_store(&resolve_state, 2);
}

static inline int
resolving(void)
{
    return atomic_load_explicit(&resolve_state, memory_order_relaxed) == 1;
}

/* ---- global state -------------------------------------------------------- */

static _Atomic int g_ready;             /* the capture is set up */
static _Atomic int g_on;                /* tracing (0 while paused) */
static _Atomic uint64_t g_seq = 1;      /* next sequence number (0: none) */
static _Atomic uint64_t g_dropped;      /* events that could not be written */
static uint32_t g_rs = PMT_MC_RECORD_BASE;  /* record size */
static int g_native;
static int g_fd = -1;
static dev_t g_dev;                     /* the capture file open at g_fd */
static ino_t g_ino;
static int g_open_pending;              /* forked child: open on first flush */
static int g_write_err;
static pid_t g_pid;
static char g_path[PATH_MAX];
static char g_path_used[PATH_MAX + 32];
static int g_owns_main;                 /* this image created g_path itself */
static pthread_mutex_t g_write_lock = PTHREAD_MUTEX_INITIALIZER;
static pthread_mutex_t g_reg_lock = PTHREAD_MUTEX_INITIALIZER;
static pthread_mutex_t g_code_lock = PTHREAD_MUTEX_INITIALIZER;
static pthread_key_t g_key;

/* Python, resolved at load with dlsym (never linked). */
static PyThreadState *(*py_this_tstate)(void);
static int (*py_addr2line)(PyCodeObject *, int);
static int (*py_finalizing)(void);
static int g_py_on;
static uint64_t g_py_hex;
static uint32_t g_py_status = PMT_MC_PY_NONE;

static TLS int t_guard;
static TLS struct tbuf *t_buf;

/* ---- per-thread buffers -------------------------------------------------- */

#define CODE_CACHE 64
#define LINE_CACHE 256
#define TB_BYTES (80 * 1024)     /* a multiple of 32 and of 40 */
#define PAYLOAD_MAX 2048

typedef struct {
    const void *co, *file, *name;
    uint32_t id;
} code_slot;

typedef struct {
    const void *co;
    uint32_t id;
    int lasti;
    int line;
} line_slot;

typedef struct tbuf {
    atomic_flag lock;
    _Atomic int in_use;
    struct tbuf *next;
    size_t len;
    uint64_t events;        /* recorded through this buffer */
    code_slot codes[CODE_CACHE];
    line_slot lines[LINE_CACHE];
    unsigned char data[TB_BYTES];
} tbuf;

static tbuf *g_bufs;

static inline void
tb_lock(tbuf *tb)
{
    while (atomic_flag_test_and_set_explicit(&tb->lock, memory_order_acquire)) {
        /* only contended by flush-all at exit or fork */
    }
}

static inline void
tb_unlock(tbuf *tb)
{
    atomic_flag_clear_explicit(&tb->lock, memory_order_release);
}

static void
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

static void
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
static void
close_capture(void)
{
    if (fd_is_capture()) {
        close(g_fd);
    }
    g_fd = -1;
}

/* Open the capture.  Called with g_write_lock held (or before threads). */
static int
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
    h.version = PMT_MC_VERSION;
    h.header_size = PMT_MC_HEADER_SIZE;
    h.record_size = g_rs;
    h.flags = g_native ? PMT_MC_FLAG_NATIVE : 0;
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

/* Hand tb's records to the file.  Called with tb locked. */
static void
flush_locked(tbuf *tb)
{
    if (!tb->len) {
        return;
    }
    pthread_mutex_lock(&g_write_lock);
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
    if (g_fd < 0 || g_write_err || write_all(g_fd, tb->data, tb->len) < 0) {
        if (!g_write_err && g_fd >= 0) {
            g_write_err = errno;
            say("writing the capture failed: ", g_path_used, g_write_err);
        }
        /* every record is g_rs bytes; count events roughly as records */
        atomic_fetch_add(&g_dropped, tb->len / g_rs);
    }
    pthread_mutex_unlock(&g_write_lock);
    tb->len = 0;
}

static void
thread_exit(void *arg)
{
    tbuf *tb = arg;
    t_guard++;
    tb_lock(tb);
    flush_locked(tb);
    tb_unlock(tb);
    t_buf = NULL;
    atomic_store(&tb->in_use, 0);
    t_guard--;
}

static tbuf *
acquire_tbuf(void)
{
    tbuf *tb;
    pthread_mutex_lock(&g_reg_lock);
    for (tb = g_bufs; tb; tb = tb->next) {
        int expected = 0;
        if (atomic_compare_exchange_strong(&tb->in_use, &expected, 1)) {
            break;
        }
    }
    if (!tb) {
        void *m = real.mmap(NULL, sizeof(tbuf), PROT_READ | PROT_WRITE,
                            MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
        if (m != MAP_FAILED) {
            tb = m;     /* zero-filled: lock clear, caches empty */
            atomic_store(&tb->in_use, 1);
            tb->next = g_bufs;
            g_bufs = tb;
        }
    }
    pthread_mutex_unlock(&g_reg_lock);
    if (tb) {
        memset(tb->codes, 0, sizeof(tb->codes));
        memset(tb->lines, 0, sizeof(tb->lines));
        t_buf = tb;
        pthread_setspecific(g_key, tb);
    }
    return tb;
}

static inline tbuf *
get_tbuf(void)
{
    tbuf *tb = t_buf;
    return LIKELY(tb != NULL) ? tb : acquire_tbuf();
}

static inline unsigned char *
reserve(tbuf *tb, size_t n)
{
    if (UNLIKELY(tb->len + n > TB_BYTES)) {
        flush_locked(tb);
    }
    unsigned char *p = tb->data + tb->len;
    tb->len += n;
    return p;
}

/* A definition record with a payload (zero-padded to whole records). */
static void
put_def(tbuf *tb, unsigned kind, uint64_t a, uint32_t code, int32_t line,
        const void *payload, size_t plen)
{
    size_t nrec = 1 + (plen + g_rs - 1) / g_rs;
    unsigned char *p = reserve(tb, nrec * g_rs);
    memset(p, 0, nrec * g_rs);
    pmt_mc_record *r = (pmt_mc_record *)p;
    r->seq_kind = kind;
    r->a = a;
    r->b = plen;
    r->code = code;
    r->line = line;
    memcpy(p + g_rs, payload, plen);
}

static inline void
put_event(tbuf *tb, uint64_t seq, unsigned kind, const void *a, uint64_t b,
          uint32_t code, int32_t line, const void *ret)
{
    pmt_mc_record *r = (pmt_mc_record *)reserve(tb, g_rs);
    r->seq_kind = seq << 8 | kind;
    r->a = (uint64_t)(uintptr_t)a;
    r->b = b;
    r->code = code;
    r->line = line;
    if (g_native) {
        r->native = (uint64_t)(uintptr_t)ret;
    }
    tb->events++;
}

/* ---- Python frames --------------------------------------------------------- */

/* UTF-8 of a str object, read without calling into Python (the thread may
 * not hold the GIL).  Returns the length written (no NUL). */
static size_t
str_utf8(PyObject *s, char *out, size_t cap)
{
    if (s == NULL || !PyUnicode_Check(s) || !PyUnicode_IS_READY(s)) {
        memcpy(out, "?", 1);
        return 1;
    }
    Py_ssize_t len = PyUnicode_GET_LENGTH(s);
    int kind = PyUnicode_KIND(s);
    const void *data = PyUnicode_DATA(s);
    size_t n = 0;
    for (Py_ssize_t i = 0; i < len; i++) {
        Py_UCS4 c = PyUnicode_READ(kind, data, i);
        if (n + 4 >= cap) {
            break;
        }
        if (c < 0x80) {
            out[n++] = (char)c;
        }
        else if (c < 0x800) {
            out[n++] = (char)(0xC0 | (c >> 6));
            out[n++] = (char)(0x80 | (c & 0x3F));
        }
        else if (c < 0x10000) {
            if (c >= 0xD800 && c <= 0xDFFF) {
                c = 0xFFFD;     /* lone surrogate (surrogateescape'd name) */
            }
            out[n++] = (char)(0xE0 | (c >> 12));
            out[n++] = (char)(0x80 | ((c >> 6) & 0x3F));
            out[n++] = (char)(0x80 | (c & 0x3F));
        }
        else {
            out[n++] = (char)(0xF0 | (c >> 18));
            out[n++] = (char)(0x80 | ((c >> 12) & 0x3F));
            out[n++] = (char)(0x80 | ((c >> 6) & 0x3F));
            out[n++] = (char)(0x80 | (c & 0x3F));
        }
    }
    return n;
}

/* Global table: code object address -> id (open addressing, never shrinks). */
typedef struct {
    const void *co, *file, *name;
    int firstlineno;
    uint32_t id;
} code_entry;

static code_entry *g_codes;
static size_t g_codes_cap, g_codes_len;
static uint32_t g_next_code_id = 1;

static inline size_t
ptr_hash(const void *p)
{
    uint64_t x = (uint64_t)(uintptr_t)p;
    x ^= x >> 29;
    x *= 0xbf58476d1ce4e5b9ull;
    x ^= x >> 32;
    return (size_t)x;
}

static code_entry *
code_find(const void *co)
{
    size_t mask = g_codes_cap - 1;
    for (size_t i = ptr_hash(co) & mask;; i = (i + 1) & mask) {
        if (g_codes[i].co == co || g_codes[i].co == NULL) {
            return &g_codes[i];
        }
    }
}

static int
code_grow(void)
{
    size_t ncap = g_codes_cap ? g_codes_cap * 2 : 4096;
    code_entry *old = g_codes;
    size_t ocap = g_codes_cap;
    code_entry *n = real.calloc(ncap, sizeof(code_entry));
    if (!n) {
        return -1;
    }
    g_codes = n;
    g_codes_cap = ncap;
    for (size_t i = 0; i < ocap; i++) {
        if (old[i].co) {
            *code_find(old[i].co) = old[i];
        }
    }
    real.free(old);
    return 0;
}

/* The id of code object co, writing its definition if new.  tb is locked. */
static uint32_t
code_id_slow(tbuf *tb, PyCodeObject *co)
{
    uint32_t id = 0;
    pthread_mutex_lock(&g_code_lock);
    if ((g_codes_len + 1) * 10 >= g_codes_cap * 7 && code_grow() < 0) {
        pthread_mutex_unlock(&g_code_lock);
        return 0;
    }
    code_entry *e = code_find(co);
    if (e->co == co && e->file == co->co_filename && e->name == co->co_name &&
        e->firstlineno == co->co_firstlineno) {
        id = e->id;
    }
    else {
        if (e->co == NULL) {
            g_codes_len++;
        }
        id = g_next_code_id++;
        e->co = co;
        e->file = co->co_filename;
        e->name = co->co_name;
        e->firstlineno = co->co_firstlineno;
        e->id = id;
        char payload[PAYLOAD_MAX];
        size_t n = str_utf8(co->co_filename, payload, PAYLOAD_MAX / 2);
        payload[n++] = '\0';
        n += str_utf8(co->co_name, payload + n, PAYLOAD_MAX / 2 - 1);
        payload[n++] = '\0';
        put_def(tb, PMT_MC_CODE, (uint64_t)(uintptr_t)co, id, co->co_firstlineno,
                payload, n);
    }
    pthread_mutex_unlock(&g_code_lock);
    return id;
}

static inline void
py_site(tbuf *tb, uint32_t *code, int32_t *line)
{
    if (py_finalizing()) {
        return;
    }
    PyThreadState *ts = py_this_tstate();
    if (ts == NULL || ts->cframe == NULL) {
        return;
    }
    _PyInterpreterFrame *f = ts->cframe->current_frame;
    while (f && _PyFrame_IsIncomplete(f)) {
        f = f->previous;
    }
    if (f == NULL) {
        return;
    }
    PyCodeObject *co = f->f_code;
    code_slot *cs = &tb->codes[(ptr_hash(co) >> 3) & (CODE_CACHE - 1)];
    uint32_t id;
    if (LIKELY(cs->co == co && cs->file == co->co_filename && cs->name == co->co_name)) {
        id = cs->id;
    }
    else {
        id = code_id_slow(tb, co);
        if (!id) {
            return;
        }
        cs->co = co;
        cs->file = co->co_filename;
        cs->name = co->co_name;
        cs->id = id;
    }
    int lasti = _PyInterpreterFrame_LASTI(f);
    line_slot *ls = &tb->lines[(ptr_hash(co) ^ ((size_t)lasti * 0x9E3779B1u)) & (LINE_CACHE - 1)];
    if (!(ls->co == co && ls->id == id && ls->lasti == lasti)) {
        ls->co = co;
        ls->id = id;
        ls->lasti = lasti;
        ls->line = py_addr2line(co, lasti * (int)sizeof(_Py_CODEUNIT));
    }
    *code = id;
    *line = ls->line;
}

static void
resolve_python(void)
{
    const unsigned long *ver = dlsym(RTLD_DEFAULT, "Py_Version");
    void *ts = dlsym(RTLD_DEFAULT, "PyGILState_GetThisThreadState");
    void *a2l = dlsym(RTLD_DEFAULT, "PyCode_Addr2Line");
    void *fin = dlsym(RTLD_DEFAULT, "_Py_IsFinalizing");
    if (!ts || !a2l) {
        g_py_status = PMT_MC_PY_NONE;
        return;
    }
    g_py_hex = ver ? *ver : 0;
    if (!ver || !fin || (*ver >> 16) != ((unsigned long)PY_VERSION_HEX >> 16)) {
        g_py_status = PMT_MC_PY_MISMATCH;
        return;
    }
    py_this_tstate = (PyThreadState * (*)(void)) ts;
    py_addr2line = (int (*)(PyCodeObject *, int))a2l;
    py_finalizing = (int (*)(void))fin;
    g_py_status = PMT_MC_PY_ON;
    g_py_on = 1;
}

/* ---- recording ------------------------------------------------------------- */

static inline uint64_t
next_seq(void)
{
    return atomic_fetch_add_explicit(&g_seq, 1, memory_order_relaxed);
}

/* Record an allocation that has just been made (its number is taken now,
 * after the allocator handed the block out). */
static void
trace_alloc(unsigned kind, const void *p, uint64_t size, const void *ret)
{
    tbuf *tb = get_tbuf();
    if (UNLIKELY(!tb)) {
        atomic_fetch_add(&g_dropped, 1);
        return;
    }
    tb_lock(tb);
    uint32_t code = 0;
    int32_t line = -1;
    if (g_py_on) {
        py_site(tb, &code, &line);
    }
    put_event(tb, next_seq(), kind, p, size, code, line, ret);
    tb_unlock(tb);
}

/* Record a release with a number taken before the memory goes back. */
static void
trace_release_seq(unsigned kind, uint64_t seq, const void *p, uint64_t len, const void *ret)
{
    tbuf *tb = get_tbuf();
    if (UNLIKELY(!tb)) {
        atomic_fetch_add(&g_dropped, 1);
        return;
    }
    tb_lock(tb);
    put_event(tb, seq, kind, p, len, 0, -1, ret);
    tb_unlock(tb);
}

#define ENTER_OR(passthrough) \
    if (UNLIKELY(t_guard) || !atomic_load_explicit(&g_on, memory_order_relaxed)) { \
        passthrough; \
    } \
    t_guard++

#define LEAVE() t_guard--

/* ---- the interposed entry points ----------------------------------------- */

EXPORT void *
malloc(size_t n)
{
    if (UNLIKELY(!real.malloc)) {
        if (resolving()) {
            return boot_alloc(n, 16);
        }
        resolve_real();
    }
    ENTER_OR(return real.malloc(n));
    void *p = real.malloc(n);
    if (p) {
        trace_alloc(PMT_MC_MALLOC, p, n, __builtin_return_address(0));
    }
    LEAVE();
    return p;
}

EXPORT void *
calloc(size_t n, size_t m)
{
    if (UNLIKELY(!real.calloc)) {
        if (resolving()) {
            size_t t;
            if (__builtin_mul_overflow(n, m, &t)) {
                return NULL;
            }
            return boot_alloc(t, 16);   /* the arena is zero and never reused */
        }
        resolve_real();
    }
    ENTER_OR(return real.calloc(n, m));
    void *p = real.calloc(n, m);
    if (p) {
        trace_alloc(PMT_MC_CALLOC, p, (uint64_t)n * m, __builtin_return_address(0));
    }
    LEAVE();
    return p;
}

EXPORT void
free(void *p)
{
    if (p == NULL || UNLIKELY(in_boot(p))) {
        return;
    }
    if (UNLIKELY(!real.free)) {
        if (resolving()) {
            return;     /* cannot free yet: leak it */
        }
        resolve_real();
    }
    ENTER_OR(real.free(p); return);
    trace_release_seq(PMT_MC_FREE, next_seq(), p, 0, __builtin_return_address(0));
    real.free(p);
    LEAVE();
}

static void *
realloc_common(void *old, size_t n, const void *ret)
{
    uint64_t seq_free = old ? next_seq() : 0;
    void *p = real.realloc(old, n);
    if (old && (p || n == 0)) {
        trace_release_seq(PMT_MC_REALLOC_FREE, seq_free, old, 0, ret);
    }
    if (p) {
        trace_alloc(PMT_MC_REALLOC, p, n, ret);
    }
    return p;
}

EXPORT void *
realloc(void *old, size_t n)
{
    if (UNLIKELY(!real.realloc || in_boot(old))) {
        if (!real.realloc) {
            if (resolving()) {
                void *p = boot_alloc(n, 16);
                if (p && old) {
                    size_t o = boot_size(old);
                    memcpy(p, old, o < n ? o : n);
                }
                return p;
            }
            resolve_real();
        }
        if (in_boot(old)) {
            void *p = malloc(n);
            if (p) {
                size_t o = boot_size(old);
                memcpy(p, old, o < n ? o : n);
            }
            return p;
        }
    }
    ENTER_OR(return real.realloc(old, n));
    void *p = realloc_common(old, n, __builtin_return_address(0));
    LEAVE();
    return p;
}

EXPORT void *
reallocarray(void *old, size_t n, size_t m)
{
    size_t t;
    if (__builtin_mul_overflow(n, m, &t)) {
        errno = ENOMEM;
        return NULL;
    }
    if (UNLIKELY(!real.realloc || in_boot(old))) {
        return realloc(old, t);
    }
    ENTER_OR(return real.reallocarray(old, n, m));
    void *p = realloc_common(old, t, __builtin_return_address(0));
    LEAVE();
    return p;
}

EXPORT int
posix_memalign(void **out, size_t align, size_t n)
{
    if (UNLIKELY(!real.posix_memalign)) {
        if (resolving()) {
            *out = boot_alloc(n, align);
            return *out ? 0 : ENOMEM;
        }
        resolve_real();
    }
    ENTER_OR(return real.posix_memalign(out, align, n));
    int r = real.posix_memalign(out, align, n);
    if (r == 0) {
        trace_alloc(PMT_MC_MEMALIGN, *out, n, __builtin_return_address(0));
    }
    LEAVE();
    return r;
}

#define ALIGNED_ENTRY(name, params, args, bootexpr, size) \
    EXPORT void * \
    name params \
    { \
        if (UNLIKELY(!real.name)) { \
            if (resolving()) { \
                return bootexpr; \
            } \
            resolve_real(); \
        } \
        ENTER_OR(return real.name args); \
        void *p = real.name args; \
        if (p) { \
            trace_alloc(PMT_MC_MEMALIGN, p, (size), __builtin_return_address(0)); \
        } \
        LEAVE(); \
        return p; \
    }

ALIGNED_ENTRY(aligned_alloc, (size_t align, size_t n), (align, n), boot_alloc(n, align), n)
ALIGNED_ENTRY(memalign, (size_t align, size_t n), (align, n), boot_alloc(n, align), n)
ALIGNED_ENTRY(valloc, (size_t n), (n), boot_alloc(n, 4096), n)
ALIGNED_ENTRY(pvalloc, (size_t n), (n), boot_alloc(n, 4096), n)

static void *
mmap_common(void *(*fn)(void *, size_t, int, int, int, off_t), void *addr, size_t len,
            int prot, int flags, int fd, off_t off, const void *ret)
{
    void *p = fn(addr, len, prot, flags, fd, off);
    if (p != MAP_FAILED && (flags & MAP_ANONYMOUS)) {
        trace_alloc(PMT_MC_MMAP, p, len, ret);
    }
    return p;
}

/* Python.h asks for 64-bit file offsets, so <sys/mman.h> renames mmap to
 * mmap64: the two entry points are defined under explicit symbol names. */
EXPORT void *pmt_mmap(void *, size_t, int, int, int, off_t) __asm__("mmap");
EXPORT void *pmt_mmap64(void *, size_t, int, int, int, off_t) __asm__("mmap64");

EXPORT void *
pmt_mmap(void *addr, size_t len, int prot, int flags, int fd, off_t off)
{
    if (UNLIKELY(!real.mmap)) {
        resolve_real();
        if (!real.mmap) {
            errno = ENOMEM;
            return MAP_FAILED;
        }
    }
    ENTER_OR(return real.mmap(addr, len, prot, flags, fd, off));
    void *p = mmap_common(real.mmap, addr, len, prot, flags, fd, off,
                          __builtin_return_address(0));
    LEAVE();
    return p;
}

EXPORT void *
pmt_mmap64(void *addr, size_t len, int prot, int flags, int fd, off_t off)
{
    if (UNLIKELY(!real.mmap64)) {
        resolve_real();
        if (!real.mmap64) {
            errno = ENOMEM;
            return MAP_FAILED;
        }
    }
    ENTER_OR(return real.mmap64(addr, len, prot, flags, fd, off));
    void *p = mmap_common(real.mmap64, addr, len, prot, flags, fd, off,
                          __builtin_return_address(0));
    LEAVE();
    return p;
}

EXPORT int
munmap(void *addr, size_t len)
{
    if (UNLIKELY(!real.munmap)) {
        resolve_real();
        if (!real.munmap) {
            errno = ENOSYS;
            return -1;
        }
    }
    ENTER_OR(return real.munmap(addr, len));
    trace_release_seq(PMT_MC_MUNMAP, next_seq(), addr, len, __builtin_return_address(0));
    int r = real.munmap(addr, len);
    LEAVE();
    return r;
}

/* ---- modules (for --native), fork, exit ---------------------------------- */

static int
module_cb(struct dl_phdr_info *info, size_t size, void *arg)
{
    (void)size;
    tbuf *tb = arg;
    uint64_t lo = UINT64_MAX, hi = 0;
    for (int i = 0; i < info->dlpi_phnum; i++) {
        const ElfW(Phdr) *ph = &info->dlpi_phdr[i];
        if (ph->p_type != PT_LOAD) {
            continue;
        }
        uint64_t s = info->dlpi_addr + ph->p_vaddr;
        if (s < lo) {
            lo = s;
        }
        if (s + ph->p_memsz > hi) {
            hi = s + ph->p_memsz;
        }
    }
    if (hi == 0) {
        return 0;
    }
    char payload[16 + PATH_MAX];
    uint64_t bias = info->dlpi_addr;
    memcpy(payload, &bias, 8);
    memcpy(payload + 8, &hi, 8);
    const char *name = info->dlpi_name;
    size_t n;
    if (name == NULL || name[0] == '\0') {
        ssize_t l = readlink("/proc/self/exe", payload + 16, PATH_MAX - 1);
        n = l > 0 ? (size_t)l : 0;
    }
    else {
        n = strlen(name);
        if (n > PATH_MAX - 1) {
            n = PATH_MAX - 1;
        }
        memcpy(payload + 16, name, n);
    }
    payload[16 + n] = '\0';
    size_t plen = 16 + n + 1;
    if (plen > PAYLOAD_MAX) {
        plen = PAYLOAD_MAX;
        payload[plen - 1] = '\0';
    }
    put_def(tb, PMT_MC_MODULE, lo, 0, 0, payload, plen);
    return 0;
}

/* Write every buffer out (they must all be lockable). */
static void
flush_all(void)
{
    for (tbuf *tb = g_bufs; tb; tb = tb->next) {
        tb_lock(tb);
        flush_locked(tb);
        tb_unlock(tb);
    }
}

static void
write_end(uint32_t reason)
{
    tbuf *tb = get_tbuf();
    if (!tb) {
        return;
    }
    tb_lock(tb);
    if (g_native) {
        dl_iterate_phdr(module_cb, tb);
    }
    unsigned char *p = reserve(tb, g_rs);
    memset(p, 0, g_rs);
    pmt_mc_record *r = (pmt_mc_record *)p;
    r->seq_kind = PMT_MC_END;
    uint64_t events = 0;
    for (tbuf *b = g_bufs; b; b = b->next) {
        events += b->events;    /* other threads may still add: a lower bound */
    }
    r->a = events;
    r->b = atomic_load(&g_dropped);
    r->code = reason;
    r->line = -1;
    tb_unlock(tb);
}

static void
before_fork(void)
{
    if (!atomic_load(&g_ready)) {
        return;
    }
    t_guard++;
    pthread_mutex_lock(&g_reg_lock);
    for (tbuf *tb = g_bufs; tb; tb = tb->next) {
        tb_lock(tb);
        flush_locked(tb);
    }
    pthread_mutex_lock(&g_code_lock);
    pthread_mutex_lock(&g_write_lock);
}

static void
after_fork_parent(void)
{
    if (!atomic_load(&g_ready)) {
        return;
    }
    pthread_mutex_unlock(&g_write_lock);
    pthread_mutex_unlock(&g_code_lock);
    for (tbuf *tb = g_bufs; tb; tb = tb->next) {
        tb_unlock(tb);
    }
    pthread_mutex_unlock(&g_reg_lock);
    t_guard--;
}

static void
after_fork_child(void)
{
    if (!atomic_load(&g_ready)) {
        return;
    }
    /* Only this thread exists now: nothing can contend. */
    pthread_mutex_init(&g_write_lock, NULL);
    pthread_mutex_init(&g_code_lock, NULL);
    pthread_mutex_init(&g_reg_lock, NULL);
    g_pid = getpid();
    close_capture();        /* the parent's capture: never written by a child */
    g_open_pending = 1;
    g_write_err = 0;
    atomic_store(&g_dropped, 0);
    /* Code ids must be defined again in the child's own capture. */
    if (g_codes) {
        memset(g_codes, 0, g_codes_cap * sizeof(code_entry));
    }
    g_codes_len = 0;
    for (tbuf *tb = g_bufs; tb; tb = tb->next) {
        tb->len = 0;
        tb->events = 0;
        memset(tb->codes, 0, sizeof(tb->codes));
        memset(tb->lines, 0, sizeof(tb->lines));
        if (tb != t_buf) {
            atomic_store(&tb->in_use, 0);
        }
        tb_unlock(tb);
    }
    t_guard--;
}

__attribute__((constructor)) static void
pmt_preload_init(void)
{
    resolve_real();
    t_guard++;
    const char *out = getenv("PYMEMTRACE_MALLOC_OUT");
    if (out == NULL || out[0] == '\0') {
        t_guard--;
        return;
    }
    size_t n = strlen(out);
    if (n >= sizeof(g_path)) {
        say("capture path too long: ", out, 0);
        t_guard--;
        return;
    }
    memcpy(g_path, out, n + 1);
    const char *nat = getenv("PYMEMTRACE_MALLOC_NATIVE");
    g_native = nat != NULL && strcmp(nat, "1") == 0;
    g_rs = g_native ? PMT_MC_RECORD_NATIVE : PMT_MC_RECORD_BASE;
    g_pid = getpid();
    if (!real.malloc || !real.free || !real.mmap || !real.munmap) {
        say("cannot find the real allocator; not tracing", "", 0);
        t_guard--;
        return;
    }
    resolve_python();
    if (pthread_key_create(&g_key, thread_exit) != 0) {
        say("pthread_key_create failed; not tracing", "", 0);
        t_guard--;
        return;
    }
    if (open_capture() < 0) {
        say("cannot create the capture ", g_path, errno);
        t_guard--;
        return;
    }
    if (pthread_atfork(before_fork, after_fork_parent, after_fork_child) != 0) {
        say("pthread_atfork failed; not tracing", "", 0);
        close_capture();
        t_guard--;
        return;
    }
    const char *start = getenv("PYMEMTRACE_MALLOC_START");
    atomic_store(&g_ready, 1);
    atomic_store(&g_on, !(start != NULL && strcmp(start, "paused") == 0));
    t_guard--;
}

__attribute__((destructor)) static void
pmt_preload_fini(void)
{
    if (!atomic_load(&g_ready)) {
        return;
    }
    t_guard++;
    atomic_store(&g_on, 0);
    atomic_store(&g_ready, 0);
    write_end(PMT_MC_END_EXIT);
    pthread_mutex_lock(&g_reg_lock);
    flush_all();
    pthread_mutex_unlock(&g_reg_lock);
    pthread_mutex_lock(&g_write_lock);
    close_capture();
    g_write_err = EBADF;    /* late events are dropped, not written */
    pthread_mutex_unlock(&g_write_lock);
    t_guard--;
}

/* ---- exec and _exit -----------------------------------------------------------
 *
 * exec replaces this image without running destructors, and _exit skips
 * them: both would lose the buffered tail.  Before either, the buffers are
 * written out with an END record.  Before an exec the image that created the
 * capture path also moves its capture aside (to PATH.<pid>.<k>, never
 * overwriting anything) so that the program it becomes, which keeps the pid,
 * writes PATH: the capture at PATH is the last program the traced process
 * ran (a shell or launcher script that execs Python leaves Python's capture
 * at PATH).  If the exec fails, everything is put back and tracing goes on.
 * A vfork child (it shares our memory; getpid() differs) does nothing here.
 */

static char g_path_aside[PATH_MAX + 32];

static int
finish_image(uint32_t reason)
{
    if (!atomic_load(&g_ready) || t_guard || getpid() != g_pid) {
        return 0;
    }
    t_guard++;
    int was_on = atomic_exchange(&g_on, 0);
    write_end(reason);
    pthread_mutex_lock(&g_reg_lock);
    flush_all();
    pthread_mutex_unlock(&g_reg_lock);
    int moved = 0;
    if (reason == PMT_MC_END_EXEC && g_owns_main) {
        size_t plen = strlen(g_path);
        for (unsigned k = 1; k < 100 && !moved; k++) {
            memcpy(g_path_aside, g_path, plen);
            size_t n = plen;
            g_path_aside[n++] = '.';
            put_u(g_path_aside, &n, (unsigned long)g_pid);
            g_path_aside[n++] = '.';
            put_u(g_path_aside, &n, k);
            g_path_aside[n] = '\0';
            if (link(g_path, g_path_aside) == 0) {
                if (unlink(g_path) == 0) {
                    moved = 1;
                }
                else {
                    unlink(g_path_aside);
                    break;
                }
            }
            else if (errno != EEXIST) {
                break;
            }
        }
    }
    t_guard--;
    return 1 | moved << 1 | was_on << 2;
}

/* exec failed: put the capture back and trace on (the END record stays:
 * the reader treats records after it as more of the same capture). */
static void
exec_failed(int state)
{
    int e = errno;
    if ((state & 2) && link(g_path_aside, g_path) == 0) {
        unlink(g_path_aside);
    }
    if (state & 4) {
        atomic_store(&g_on, 1);
    }
    errno = e;
}

EXPORT int
execve(const char *path, char *const argv[], char *const envp[])
{
    if (UNLIKELY(!real.execve)) {
        resolve_real();
    }
    int st = finish_image(PMT_MC_END_EXEC);
    int r = real.execve(path, argv, envp);
    exec_failed(st);
    return r;
}

EXPORT int
execv(const char *path, char *const argv[])
{
    if (UNLIKELY(!real.execv)) {
        resolve_real();
    }
    int st = finish_image(PMT_MC_END_EXEC);
    int r = real.execv(path, argv);
    exec_failed(st);
    return r;
}

EXPORT int
execvp(const char *file, char *const argv[])
{
    if (UNLIKELY(!real.execvp)) {
        resolve_real();
    }
    int st = finish_image(PMT_MC_END_EXEC);
    int r = real.execvp(file, argv);
    exec_failed(st);
    return r;
}

EXPORT int
execvpe(const char *file, char *const argv[], char *const envp[])
{
    if (UNLIKELY(!real.execvpe)) {
        resolve_real();
    }
    int st = finish_image(PMT_MC_END_EXEC);
    int r = real.execvpe(file, argv, envp);
    exec_failed(st);
    return r;
}

EXPORT int
fexecve(int fd, char *const argv[], char *const envp[])
{
    if (UNLIKELY(!real.fexecve)) {
        resolve_real();
    }
    int st = finish_image(PMT_MC_END_EXEC);
    int r = real.fexecve(fd, argv, envp);
    exec_failed(st);
    return r;
}

/* execl, execlp, execle: gather the arguments and use the vector forms. */
#define GATHER_ARGS(first, ap, argv) \
    size_t argc_ = 1; \
    va_start(ap, first); \
    while (va_arg(ap, char *) != NULL) { \
        argc_++; \
    } \
    va_end(ap); \
    char *argv[argc_ + 1]; \
    argv[0] = (char *)(first); \
    va_start(ap, first); \
    for (size_t i_ = 1; i_ <= argc_; i_++) { \
        argv[i_] = va_arg(ap, char *); \
    }

EXPORT int
execl(const char *path, const char *arg, ...)
{
    va_list ap;
    GATHER_ARGS(arg, ap, argv);
    va_end(ap);
    return execv(path, argv);
}

EXPORT int
execlp(const char *file, const char *arg, ...)
{
    va_list ap;
    GATHER_ARGS(arg, ap, argv);
    va_end(ap);
    return execvp(file, argv);
}

EXPORT int
execle(const char *path, const char *arg, ...)
{
    va_list ap;
    GATHER_ARGS(arg, ap, argv);
    char *const *envp = va_arg(ap, char *const *);
    va_end(ap);
    return execve(path, argv, envp);
}

EXPORT void
_exit(int status)
{
    if (UNLIKELY(!real.exit_)) {
        resolve_real();
    }
    finish_image(PMT_MC_END_EXIT);
    real.exit_(status);
    __builtin_unreachable();
}

EXPORT void
_Exit(int status)
{
    if (UNLIKELY(!real.Exit_)) {
        resolve_real();
    }
    finish_image(PMT_MC_END_EXIT);
    real.Exit_(status);
    __builtin_unreachable();
}

/* ---- control from the traced program ----------------------------------------
 *
 * pymemtrace_malloc_control(op): 1 resume tracing, 0 pause it (and write the
 * buffers out, so the capture holds everything up to the pause), -1 only
 * ask.  Returns whether tracing was on before the call, or -1 if this
 * process has no capture (not started by `pymemtrace malloc`, or the capture
 * could not be created).  Used by pymemtrace.malloc_trace.MallocTrace
 * through the _malloccap extension (found with dlsym: no link dependency).
 */
EXPORT int
pymemtrace_malloc_control(int op)
{
    if (!atomic_load(&g_ready) || getpid() != g_pid) {
        return -1;
    }
    if (op < 0) {
        return atomic_load(&g_on);
    }
    int was = atomic_exchange(&g_on, op ? 1 : 0);
    if (!op && was) {
        t_guard++;
        pthread_mutex_lock(&g_reg_lock);
        flush_all();
        pthread_mutex_unlock(&g_reg_lock);
        t_guard--;
    }
    return was;
}
