/* preload.h: what the files of the LD_PRELOAD malloc tracer share (internal).
 *
 * The library (libpymemtrace_malloc.so, the engine of `pymemtrace malloc`)
 * is built from one file per concern:
 *   interpose.c  the allocator entry points the program calls, and recording
 *   boot.c       the real allocator (dlsym RTLD_NEXT) and the bootstrap arena
 *   capfile.c    the capture file: creation, header, its descriptor, writes
 *   tbuf.c       per-thread record buffers, handed whole to the capture
 *   pyinterp.c   which Python this is, and whether its frames can be read
 *   pyframe.c    the calling thread's Python frames -> (code id, line)
 *   pystack.c    whole stacks, interned as a tree of STACK records
 *   lifecycle.c  load, exit, fork, exec, _exit, and control from the program
 * Everything here is hidden (-fvisibility=hidden); only the interposed
 * functions and pymemtrace_malloc_control are exported (EXPORT).
 *
 * Configuration is read from the environment once, at load:
 *   PYMEMTRACE_MALLOC_OUT     capture path (unset or empty: trace nothing)
 *   PYMEMTRACE_MALLOC_NATIVE  "1": also record each caller's return address
 *   PYMEMTRACE_MALLOC_STACKS  "1": every allocation carries its whole Python
 *                             stack (format version 2, pystack.c)
 *   PYMEMTRACE_MALLOC_START   "paused": start paused; the program switches
 *                             tracing with pymemtrace_malloc_control()
 *
 * Hot path: a thread-local re-entrancy guard (the tracer's own allocations,
 * and anything the real allocator does inside, are not traced), the real
 * call, then one record appended to the calling thread's buffer (an mmap'd
 * block, found through initial-exec TLS; an uncontended spin lock guards it
 * against flush-all at exit and fork).  Whole buffers go to the file with
 * write(2) under one mutex.  No stdio, no allocation per event.
 */
#ifndef PMT_PRELOAD_H
#define PMT_PRELOAD_H

#include <limits.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/types.h>

#include "capture_format.h"

#define EXPORT __attribute__((visibility("default")))
#define TLS __thread __attribute__((tls_model("initial-exec")))
#define LIKELY(x) __builtin_expect(!!(x), 1)
#define UNLIKELY(x) __builtin_expect(!!(x), 0)

/* ---- boot.c: the real allocator --------------------------------------------- */

struct pmt_real {
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
};
extern struct pmt_real real;

/* 0: not resolved, 1: resolving (dlsym may allocate), 2: resolved */
extern _Atomic int resolve_state;

#define BOOT_SIZE (64 * 1024)
extern unsigned char boot_arena[BOOT_SIZE];

void resolve_real(void);
void *boot_alloc(size_t n, size_t align);
size_t boot_size(const void *p);
int table_grow(void **table, size_t *cap, size_t esize, int (*used)(const void *entry),
               void *(*place)(void *table, size_t cap, const void *entry));

static inline int
in_boot(const void *p)
{
    return (const unsigned char *)p >= boot_arena &&
           (const unsigned char *)p < boot_arena + BOOT_SIZE;
}

static inline int
resolving(void)
{
    return atomic_load_explicit(&resolve_state, memory_order_relaxed) == 1;
}

/* ---- lifecycle.c: whether and how we trace ------------------------------------ */

extern _Atomic int g_ready;             /* the capture is set up */
extern _Atomic int g_on;                /* tracing (0 while paused) */
extern int g_native;                    /* records carry the return address */
extern int g_stacks;                    /* events carry whole Python stacks */
extern uint32_t g_rs;                   /* record size */
extern pid_t g_pid;                     /* the process the state belongs to */
extern TLS int t_guard;                 /* > 0: inside the tracer, do not trace */

/* ---- capfile.c: the capture file -------------------------------------------- */

extern int g_fd;
extern int g_open_pending;              /* forked child: open on first flush */
extern int g_write_err;
extern char g_path[PATH_MAX];           /* PYMEMTRACE_MALLOC_OUT */
extern char g_path_used[PATH_MAX + 32]; /* the file this process writes */
extern int g_owns_main;                 /* this image created g_path itself */
extern pthread_mutex_t g_write_lock;

void put_u(char *out, size_t *n, unsigned long v);
void say(const char *a, const char *b, int err);
int open_capture(void);                 /* g_write_lock held, or before threads */
void close_capture(void);
void write_buffer(const void *data, size_t len);  /* g_write_lock held */

/* ---- tbuf.c: per-thread buffers ---------------------------------------------- */

#define CODE_CACHE 64
#define LINE_CACHE 256
#define TB_BYTES (80 * 1024)     /* a multiple of 32 and of 40 */
#define PAYLOAD_MAX 2048
#define STACK_MAX 128            /* frames per stack (the innermost ones) */
#define STACK_CACHE 256

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

typedef struct {
    uint64_t hash;
    uint32_t node;
    int32_t line;
} stack_slot;

typedef struct tbuf {
    atomic_flag lock;
    _Atomic int in_use;
    struct tbuf *next;
    size_t len;
    uint64_t events;        /* recorded through this buffer */
    code_slot codes[CODE_CACHE];
    line_slot lines[LINE_CACHE];
    stack_slot stacks[STACK_CACHE];
    unsigned char data[TB_BYTES];
} tbuf;

extern tbuf *g_bufs;
extern pthread_mutex_t g_reg_lock;      /* the list g_bufs */
extern pthread_key_t g_key;             /* its destructor flushes a thread's buffer */
extern _Atomic uint64_t g_seq;          /* next sequence number (0: none) */
extern _Atomic uint64_t g_dropped;      /* events that could not be written */
extern TLS tbuf *t_buf;

tbuf *acquire_tbuf(void);
void flush_locked(tbuf *tb);            /* tb locked */
void flush_all(void);                   /* g_reg_lock held */
void thread_exit(void *arg);
void put_def(tbuf *tb, unsigned kind, uint64_t a, uint32_t code, int32_t line,
             const void *payload, size_t plen);

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

static inline uint64_t
next_seq(void)
{
    return atomic_fetch_add_explicit(&g_seq, 1, memory_order_relaxed);
}

/* ---- pyinterp.c, pyframe.c: Python attribution ----------------------------------- */

struct pmt_pylayout_s;

/* The interpreter this process runs, found at load (pyinterp.c). */
typedef struct {
    const struct pmt_pylayout_s *layout;    /* NULL: frames are not read */
    void *(*this_tstate)(void);             /* PyGILState_GetThisThreadState */
    int (*addr2line)(const void *code, int addr);   /* PyCode_Addr2Line */
    int (*finalizing)(void);                /* Py_IsFinalizing / _Py_IsFinalizing */
    const void *code_type;                  /* &PyCode_Type */
    const void *str_type;                   /* &PyUnicode_Type */
} pmt_py_api;

extern pmt_py_api g_py;
extern int g_py_on;                     /* frames are read (a known interpreter) */
extern uint64_t g_py_hex;               /* its version (0: unknown) */
extern uint32_t g_py_status;            /* PMT_MC_PY_* for the META record */
extern pthread_mutex_t g_code_lock;

/* One Python frame: its code object and the byte offset of its current
 * instruction (what PyCode_Addr2Line takes; negative: not started). */
typedef struct {
    const void *code;
    int addr;
} pmt_pyframe;

void resolve_python(void);
/* The calling thread's Python stack, innermost first: at most max frames.
 * Only when g_py_on. */
int py_stack(pmt_pyframe *out, int max);
/* The innermost frame's (code id, line), or the innermost node of the whole
 * stack (pystack.c, with g_stacks).  tb locked; nothing set if no frame. */
void py_site(tbuf *tb, uint32_t *code, int32_t *line);
void py_stack_site(tbuf *tb, uint32_t *node, int32_t *line);
uint32_t py_frame_site(tbuf *tb, const pmt_pyframe *fr, int32_t *line);
uint64_t py_frame_hash(const pmt_pyframe *fr);
void py_forget_codes(void);             /* a forked child defines them again */
void py_forget_stacks(void);
void tb_forget(tbuf *tb);               /* empty a buffer's caches */

#endif
