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
 *   nativestack.c  native stacks (libunwind), Python frames interleaved
 *   threadnode.c the THREAD node at the root of each thread's stacks
 *   aggregate.c  --aggregate: totals per stack and the live blocks, no events
 *   checkpoint.c --aggregate: the totals written as checkpoints
 *   lifecycle.c  load, exit, fork, exec, _exit, and control from the program
 *   inproc.c     the in-process mode: dlopen'd, slots rewritten (Tracker)
 * Everything here is hidden (-fvisibility=hidden); only the interposed
 * functions and pymemtrace_malloc_control are exported (EXPORT).
 *
 * Configuration is read from the environment once, at load:
 *   PYMEMTRACE_MALLOC_OUT     capture path (unset or empty: trace nothing)
 *   PYMEMTRACE_MALLOC_NATIVE  "1": every allocation carries its native stack
 *                             with its Python frames interleaved (and the
 *                             caller's return address); implies STACKS
 *   PYMEMTRACE_MALLOC_STACKS  "1": every allocation carries its whole Python
 *                             stack (format version 2, pystack.c)
 *   PYMEMTRACE_MALLOC_START   "paused": start paused; the program switches
 *                             tracing with pymemtrace_malloc_control()
 *   PYMEMTRACE_MALLOC_AGGREGATE  "1": no events; totals per stack written as
 *                             checkpoints (aggregate.c); implies STACKS
 *   PYMEMTRACE_MALLOC_CHECKPOINT  seconds between checkpoints (default 1)
 *
 * Hot path: a thread-local re-entrancy guard (the tracer's own allocations,
 * and anything the real allocator does inside, are not traced), the real
 * call, then one delta-encoded record appended to the calling thread's
 * chunk: a piece of the capture file mapped MAP_SHARED (capfile.c), found
 * through initial-exec TLS, so what is recorded is in the file at once (no
 * write(2), nothing lost to SIGKILL) and no descriptor stays open.  An
 * uncontended spin lock guards a thread's state against exit and fork.  A
 * full chunk is replaced by a new one (open by path, fallocate, mmap,
 * close) under one mutex.  No stdio, no allocation per event.
 */
#ifndef PMT_PRELOAD_H
#define PMT_PRELOAD_H

#include <limits.h>
#include <pthread.h>
#include <sched.h>
#include <stdatomic.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/types.h>

#include "capture_format.h"

#define EXPORT __attribute__((visibility("default")))
/* A hidden name for an exported entry point: its address is ours, never the
 * definition the exported name binds to (libc's, when dlopen'd). */
#define HIDDEN_ALIAS(alias_, target) \
    extern __typeof(target) alias_ __attribute__((alias(#target), visibility("hidden")))
/* (glibc's prototypes carry attributes the aliases need not repeat) */
#if defined(__GNUC__) && !defined(__clang__)
#define HIDDEN_ALIASES_BEGIN _Pragma("GCC diagnostic ignored \"-Wmissing-attributes\"")
#else
#define HIDDEN_ALIASES_BEGIN
#endif
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
extern pid_t g_pid;                     /* the process the state belongs to */
extern TLS int t_guard;                 /* > 0: inside the tracer, do not trace */
extern int g_preload_mode;              /* configured from the environment at load */
extern unsigned g_epoch;                /* a new capture (fork child, in-process start) */

void write_end(uint32_t state);         /* modules (--native), header end fields */
void before_fork(void);
void after_fork_parent(void);
void after_fork_child(void);

/* ---- inproc.c: the in-process mode ------------------------------------------ */

extern _Atomic int g_inproc;            /* tracking in-process now */
extern int g_inproc_mode;               /* this image has used the in-process mode */
void inproc_fork_child(void);
/* the entry points under hidden names (interpose.c, lifecycle.c) */
void *pmt_h_malloc(size_t);
void *pmt_h_calloc(size_t, size_t);
void *pmt_h_realloc(void *, size_t);
void *pmt_h_reallocarray(void *, size_t, size_t);
void pmt_h_free(void *);
int pmt_h_posix_memalign(void **, size_t, size_t);
void *pmt_h_aligned_alloc(size_t, size_t);
void *pmt_h_memalign(size_t, size_t);
void *pmt_h_valloc(size_t);
void *pmt_h_pvalloc(size_t);
void *pmt_h_mmap(void *, size_t, int, int, int, off_t);
void *pmt_h_mmap64(void *, size_t, int, int, int, off_t);
int pmt_h_munmap(void *, size_t);
int pmt_h_execve(const char *, char *const[], char *const[]);
int pmt_h_execv(const char *, char *const[]);
int pmt_h_execvp(const char *, char *const[]);
int pmt_h_execvpe(const char *, char *const[], char *const[]);
int pmt_h_fexecve(int, char *const[], char *const[]);
int pmt_h_execl(const char *, const char *, ...);
int pmt_h_execlp(const char *, const char *, ...);
int pmt_h_execle(const char *, const char *, ...);
void pmt_h_exit(int) __attribute__((noreturn));
void pmt_h_Exit(int) __attribute__((noreturn));

/* ---- capfile.c: the capture file -------------------------------------------- */

struct tbuf;
extern int g_open_pending;              /* forked child: open on its first chunk */
extern int g_stop_err;                  /* writing stopped (errno; 0: writing) */
extern char g_path[PATH_MAX];           /* PYMEMTRACE_MALLOC_OUT */
extern char g_path_used[PATH_MAX + 32]; /* the file this process writes */
extern int g_owns_main;                 /* this image created g_path itself */
extern pthread_mutex_t g_write_lock;    /* the file: chunks, header, stop */

void put_u(char *out, size_t *n, unsigned long v);
void say(const char *a, const char *b, int err);
int open_capture(void);                 /* g_write_lock held, or before threads */
int new_chunk(struct tbuf *tb);         /* tb locked; 0, or -1: no chunk (stopped) */
void drop_chunk(struct tbuf *tb);       /* unmap it (fork child: the parent's file) */
void end_capture(uint32_t state);       /* header end fields, trim the chunks' tails */
void resume_capture(void);              /* exec failed: record on */
void forget_capture(void);              /* forked child: the parent's file is not ours */
void close_capture(void);               /* in-process stop: unmap the ended capture */
int capture_open(void);                 /* this process has its capture file */
uint64_t events_so_far(void);

/* ---- tbuf.c: per-thread state and chunks ------------------------------------ */

#define CODE_CACHE 64
#define LINE_CACHE 256
#define CHUNK_BYTES (128 * 1024) /* a multiple of every page size we run on */
#define PAYLOAD_MAX 2048
#define DEF_MAX (PAYLOAD_MAX + 64)  /* the longest definition record */
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
    unsigned char *chunk;   /* this thread's chunk of the file (NULL: none yet) */
    uint64_t chunk_off;     /* its offset in the file */
    size_t len;             /* bytes of records in it */
    uint64_t events;        /* recorded through this buffer */
    /* delta state of the chunk */
    uint64_t p_seq, p_addr, p_size, p_native;
    uint32_t p_code;
    int32_t p_line;
    code_slot codes[CODE_CACHE];
    line_slot lines[LINE_CACHE];
    stack_slot stacks[STACK_CACHE];
} tbuf;

extern tbuf *g_bufs;
extern pthread_mutex_t g_reg_lock;      /* the list g_bufs */
extern pthread_key_t g_key;             /* its destructor releases a thread's buffer */
extern _Atomic uint64_t g_seq;          /* next sequence number (0: none) */
extern _Atomic uint64_t g_dropped;      /* events that could not be recorded */
extern TLS tbuf *t_buf;

tbuf *acquire_tbuf(void);
void thread_exit(void *arg);

/* timerec.c: TIME records (clock and RSS), never per event. */
#define TIME_CHECK_EVERY 4          /* a thread reads the clock every this many events ... */
#define TIME_CHECK_BIG (1u << 20)   /* ... and at every event of at least this many bytes */
void time_start(void);              /* the capture opened: its clock starts */
enum { TIME_IF_DUE, TIME_NEW_CHUNK, TIME_AT_END };
/* A TIME record if one is due (or how says), placed before the event
 * numbered seq (0: after what was numbered so far); tb locked. */
void time_note(tbuf *tb, int how, uint64_t seq);
void put_def(tbuf *tb, unsigned kind, const uint64_t *uv, int nuv, const void *payload,
             size_t plen);

static inline void
tb_lock(tbuf *tb)
{
    while (atomic_flag_test_and_set_explicit(&tb->lock, memory_order_acquire)) {
        /* only contended by exit and fork */
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

/* Room for n bytes of records in tb's chunk (a new chunk if needed); NULL
 * if there is none (writing stopped).  tb locked. */
static inline unsigned char *
room(tbuf *tb, size_t n)
{
    if (UNLIKELY(tb->chunk == NULL || tb->len + n > CHUNK_BYTES) && new_chunk(tb) < 0) {
        return NULL;
    }
    return tb->chunk + tb->len;
}

/* Publish the record at p (its body written up to end): the kind byte goes
 * last, so a record cut short by a kill reads as the end of the chunk. */
static inline void
commit(tbuf *tb, unsigned char *p, unsigned char *end, unsigned kind)
{
    atomic_signal_fence(memory_order_release);
    *p = (unsigned char)kind;
    tb->len += (size_t)(end - p);
}

static inline void
put_event(tbuf *tb, uint64_t seq, unsigned base, const void *a, uint64_t b,
          uint32_t code, int32_t line, const void *ret)
{
    unsigned kind = base;       /* with its flags */
    if (UNLIKELY(tb->events % TIME_CHECK_EVERY == 0 || b >= TIME_CHECK_BIG)) {
        time_note(tb, TIME_IF_DUE, seq);    /* before the event: it is placed after */
    }
    unsigned char *p = room(tb, PMT_MC_EVENT_MAX);
    if (UNLIKELY(p == NULL)) {
        atomic_fetch_add_explicit(&g_dropped, 1, memory_order_relaxed);
        return;
    }
    uint64_t addr = (uint64_t)(uintptr_t)a;
    unsigned char *q = p + 1;
    if (LIKELY(seq - tb->p_seq == 1)) {
        kind |= PMT_MC_SEQ_NEXT;
    }
    else {
        q = pmt_put_uv(q, pmt_zz(seq - tb->p_seq));
    }
    q = pmt_put_uv(q, pmt_zz(addr - tb->p_addr));
    tb->p_seq = seq;
    tb->p_addr = addr;
    if (pmt_mc_is_alloc(base)) {
        q = pmt_put_uv(q, pmt_zz(b - tb->p_size));
        tb->p_size = b;
        if (code == tb->p_code && line == tb->p_line) {
            kind |= PMT_MC_SAME_SITE;
        }
        else {
            q = pmt_put_uv(q, pmt_zz((uint64_t)code - tb->p_code));
            q = pmt_put_uv(q, pmt_zz((uint64_t)(int64_t)line - (uint64_t)(int64_t)tb->p_line));
            tb->p_code = code;
            tb->p_line = line;
        }
    }
    else if (base == PMT_MC_MUNMAP) {
        q = pmt_put_uv(q, b);
    }
    if (g_native) {
        uint64_t r = (uint64_t)(uintptr_t)ret;
        q = pmt_put_uv(q, pmt_zz(r - tb->p_native));
        tb->p_native = r;
    }
    commit(tb, p, q, kind);
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
    const void *code;       /* NULL (py_stack_marked): an evaluation call with no started frame */
    int addr;
    int entry;              /* py_stack_marked: the outermost frame of its evaluation call */
} pmt_pyframe;

void resolve_python(void);
/* The calling thread's Python stack, innermost first: at most max frames.
 * Only when g_py_on. */
int py_stack(pmt_pyframe *out, int max);
/* The same with each evaluation call's frames marked (entry), for native stacks. */
int py_stack_marked(pmt_pyframe *out, int max);
/* The innermost frame's (code id, line), or the innermost node of the whole
 * stack (pystack.c, with g_stacks).  tb locked; nothing set if no frame. */
void py_site(tbuf *tb, uint32_t *code, int32_t *line);
void py_stack_site(tbuf *tb, uint32_t *node, int32_t *line);
uint32_t py_frame_site(tbuf *tb, const pmt_pyframe *fr, int32_t *line);
uint64_t py_frame_hash(const pmt_pyframe *fr);
void py_forget_codes(void);             /* a forked child defines them again */
void py_forget_stacks(void);
/* The node (parent, code, line) of the stack tree, its STACK record written
 * if new (0: out of memory).  tb locked. */
uint32_t py_stack_node(tbuf *tb, uint32_t parent, uint32_t code, int32_t line);
extern uint32_t g_next_node_id;         /* node ids of every kind; g_code_lock */

/* ---- nativestack.c, threadnode.c: native stacks (--native) ---------------------- */

#define NATIVE_MAX 256           /* native frames per stack (the innermost ones) */

void native_init(void);                 /* at load, after resolve_python() */
/* The innermost node of the calling thread's native stack with its Python
 * frames interleaved, and the innermost Python line.  tb locked. */
void native_stack_site(tbuf *tb, uint32_t *node, int32_t *line);
void native_forget(void);               /* a forked child defines them again */
/* The calling thread's THREAD node (the root of its stacks; 0: none).  tb locked. */
uint32_t thread_node(tbuf *tb);
void tb_forget(tbuf *tb);               /* empty a buffer's caches */

/* ---- aggregate.c, checkpoint.c: the bounded mode (--aggregate) ------------------ */

#define CKPT_EVERY 64           /* events between looks at the clock */
#define CKPT_POINTS 1024        /* heap samples kept (halved when full) */

typedef struct {
    uint64_t alloc_bytes, alloc_count;  /* ever allocated */
    uint64_t live_bytes, live_count;    /* live now */
    uint64_t peak_bytes, peak_count;    /* live at the peak, if seen == epoch */
    uint64_t seen;
} agg_stack;

typedef struct {
    agg_stack *stacks;      /* by node id (dense; 0: no Python frame) */
    size_t stacks_cap;
    uint64_t n_used;        /* stacks that allocated */
    uint64_t heap, peak, peak_events, epoch, events, unknown, dropped;
    uint64_t window;        /* the highest heap since the last checkpoint */
    pmt_mc_tally sizes[PMT_MC_SIZE_CLASSES];
    pmt_mc_tally kinds[PMT_MC_KINDS];
} agg_state;

typedef struct {
    uint64_t size;
    uint32_t node, kind;
} agg_taken;

extern int g_aggregate;                 /* --aggregate */
extern atomic_flag g_agg_lock;          /* the table (taken after a tbuf's lock) */
extern agg_state g_agg;
extern uint64_t g_ckpt_interval_ns;

void agg_alloc(unsigned kind, const void *p, uint64_t size, uint32_t node);
void agg_release(unsigned kind, const void *p, uint64_t len);
int agg_take(const void *p, agg_taken *t);     /* realloc: 1 if p was live */
void agg_put_back(const void *p, const agg_taken *t);
void agg_forget(void);                  /* forked child */
void checkpoint_due(void);              /* g_agg_lock held: write one if it is time */
int checkpoint_write(int final);        /* g_agg_lock held: 0, or -1 (not written) */
void checkpoint_forget(void);           /* forked child: the slots are the parent's */

/* The table's lock: a spin lock (an uncontended pthread mutex cost ~170
 * instructions an event under callgrind here); a holder that stays long (a
 * checkpoint being written, a preempted thread) is waited for with sched_yield. */
static inline void
agg_lock(void)
{
    for (unsigned n = 0; atomic_flag_test_and_set_explicit(&g_agg_lock, memory_order_acquire);
         n++) {
        if (n >= 64) {
            sched_yield();
        }
    }
}

static inline void
agg_unlock(void)
{
    atomic_flag_clear_explicit(&g_agg_lock, memory_order_release);
}

/* capfile.c: a checkpoint slot's extent of the file (whole chunks, mapped
 * MAP_SHARED, its head's kind and length written), and the commit. */
int ckpt_extent(size_t bytes, uint64_t *area_off, unsigned char **map);
void ckpt_extent_drop(uint64_t area_off, unsigned char *map, size_t bytes, int punch);
void ckpt_commit(unsigned slot, uint64_t area_off, uint64_t seq);

#endif
