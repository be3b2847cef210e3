/* nativestack.c: each allocation's native stack, with its Python frames interleaved.
 *
 * With PYMEMTRACE_MALLOC_NATIVE=1 every allocation records the return
 * addresses of its thread's native stack (at most NATIVE_MAX, innermost
 * first), unwound in place without allocating: libunwind's unw_backtrace
 * (its per-thread cache of frame layouts makes a frame cost ~35 ns here),
 * or, when the build found no libunwind, libgcc's _Unwind_Backtrace (which
 * reads the DWARF tables again for every frame: ~100 times slower).  Frame
 * pointers are not used: libc and CPython are built without them.
 *
 * Where a return address is inside the interpreter's evaluation function
 * (_PyEval_EvalFrameDefault, its range found at load with dladdr1), that
 * native frame is replaced by the Python frames that call of the function
 * runs (py_stack_marked() marks where each call's frames end: every frame
 * on 3.9/3.10, is_entry on 3.11, a C-stack shim frame on 3.12/3.13): the
 * innermost evaluation call gets the innermost Python frames.  Python frames
 * left over (the native stack was cut at NATIVE_MAX, or the function was not
 * found) go at the outer end; an evaluation call without started frames
 * stays a native frame.
 *
 * The mixed stack is interned as a path in the same tree as pystack.c's
 * (rooted at the thread's THREAD node): a NATIVE_FRAME record the first time
 * a return address appears under a given parent, a STACK record likewise
 * for a Python frame; an event names the innermost node.  Each thread keeps
 * its last stacks by a hash of their frames (tb->stacks: --native replaces
 * --stacks' use of it).  The first time a native node falls in a loaded
 * object not yet described, a MODULE record says where it is loaded, its
 * path, GNU build-id, size and mtime (the reporter symbolises from the file
 * and checks it is the same), so a capture cut short still symbolises.
 * Tables are guarded by g_code_lock.
 */
#define _GNU_SOURCE 1     /* dladdr1, dl_iterate_phdr */
#include <dlfcn.h>
#include <link.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "preload.h"

#ifdef PMT_HAVE_LIBUNWIND
#define UNW_LOCAL_ONLY
#include <libunwind.h>
#else
#include <unwind.h>
#endif

static uintptr_t g_self_lo, g_self_hi;  /* this library: its frames are skipped */
static uintptr_t g_eval_lo, g_eval_hi;  /* _PyEval_EvalFrameDefault */

/* ---- unwinding ------------------------------------------------------------------ */

#ifndef PMT_HAVE_LIBUNWIND
typedef struct {
    void **ips;
    int n, max;
} unwind_acc;

static _Unwind_Reason_Code
unwind_one(struct _Unwind_Context *ctx, void *arg)
{
    unwind_acc *a = arg;
    if (a->n >= a->max) {
        return _URC_END_OF_STACK;
    }
    uintptr_t ip = _Unwind_GetIP(ctx);
    if (ip == 0) {
        return _URC_END_OF_STACK;
    }
    a->ips[a->n++] = (void *)ip;
    return _URC_NO_REASON;
}
#endif

static inline int
unwind(void **ips, int max)
{
#ifdef PMT_HAVE_LIBUNWIND
    int n = unw_backtrace(ips, max);
    return n > 0 ? n : 0;
#else
    unwind_acc a = {ips, 0, max};
    _Unwind_Backtrace(unwind_one, &a);
    return a.n;
#endif
}

static inline int
is_eval(uintptr_t ip)
{
    /* a return address points after the call: ip - 1 is inside the caller */
    return ip - 1 >= g_eval_lo && ip - 1 < g_eval_hi;
}

/* ---- the loaded objects ------------------------------------------------------------ */

typedef struct {
    uintptr_t want;         /* an address to find */
    uintptr_t lo, hi, bias;
    const struct dl_phdr_info *info;
} find_obj;

static void
obj_range(const struct dl_phdr_info *info, uintptr_t *lo, uintptr_t *hi)
{
    *lo = UINTPTR_MAX;
    *hi = 0;
    for (int i = 0; i < info->dlpi_phnum; i++) {
        const ElfW(Phdr) *ph = &info->dlpi_phdr[i];
        if (ph->p_type == PT_LOAD) {
            uintptr_t s = info->dlpi_addr + ph->p_vaddr;
            *lo = s < *lo ? s : *lo;
            *hi = s + ph->p_memsz > *hi ? s + ph->p_memsz : *hi;
        }
    }
}

/* The GNU build-id of a loaded object, read from its notes in memory. */
static size_t
build_id(const struct dl_phdr_info *info, unsigned char *out, size_t cap)
{
    for (int i = 0; i < info->dlpi_phnum; i++) {
        const ElfW(Phdr) *ph = &info->dlpi_phdr[i];
        if (ph->p_type != PT_NOTE) {
            continue;
        }
        size_t align = ph->p_align == 8 ? 8 : 4;
        const unsigned char *p = (const unsigned char *)(info->dlpi_addr + ph->p_vaddr);
        size_t left = ph->p_memsz;
        while (left >= sizeof(ElfW(Nhdr))) {
            const ElfW(Nhdr) *nh = (const ElfW(Nhdr) *)(const void *)p;
            size_t name = (nh->n_namesz + align - 1) & ~(align - 1);
            size_t desc = (nh->n_descsz + align - 1) & ~(align - 1);
            if (sizeof(*nh) + name + desc > left) {
                break;
            }
            if (nh->n_type == NT_GNU_BUILD_ID && nh->n_namesz == 4 &&
                memcmp(p + sizeof(*nh), "GNU", 4) == 0) {
                size_t n = nh->n_descsz < cap ? nh->n_descsz : cap;
                memcpy(out, p + sizeof(*nh) + name, n);
                return n;
            }
            p += sizeof(*nh) + name + desc;
            left -= sizeof(*nh) + name + desc;
        }
    }
    return 0;
}

static int
find_cb(struct dl_phdr_info *info, size_t size, void *arg)
{
    (void)size;
    find_obj *f = arg;
    uintptr_t lo, hi;
    obj_range(info, &lo, &hi);
    if (f->want >= lo && f->want < hi) {
        f->lo = lo;
        f->hi = hi;
        f->bias = info->dlpi_addr;
        f->info = info;
        return 1;
    }
    return 0;
}

#define MODS_MAX 4096
static struct {
    uintptr_t lo, hi;
} g_mods[MODS_MAX];
static size_t g_n_mods;
static tbuf *g_mod_tb;      /* the buffer module_cb writes into (g_code_lock held) */

/* Write the MODULE record of the object holding f->want (called by
 * dl_iterate_phdr, which holds the loader's lock while info is valid). */
static int
module_cb(struct dl_phdr_info *info, size_t size, void *arg)
{
    find_obj *f = arg;
    if (!find_cb(info, size, arg)) {
        return 0;
    }
    char payload[PAYLOAD_MAX];
    size_t cap = PAYLOAD_MAX - 1 - 1 - 32 - 16;     /* room for the tail */
    char *path = payload;
    size_t n;
    if (info->dlpi_name == NULL || info->dlpi_name[0] == '\0') {
        ssize_t l = readlink("/proc/self/exe", path, cap);
        n = l > 0 ? (size_t)l : 0;
    }
    else {
        n = strnlen(info->dlpi_name, cap);
        memcpy(path, info->dlpi_name, n);
    }
    path[n] = '\0';
    size_t at = n + 1;
    unsigned char id[32];
    size_t idn = build_id(info, id, sizeof(id));
    payload[at++] = (char)idn;
    memcpy(payload + at, id, idn);
    at += idn;
    uint64_t fsize = 0, mtime = 0;
    struct stat st;
    if (n > 0 && stat(path, &st) == 0) {
        fsize = (uint64_t)st.st_size;
        mtime = (uint64_t)st.st_mtim.tv_sec * 1000000000u + (uint64_t)st.st_mtim.tv_nsec;
    }
    memcpy(payload + at, &fsize, 8);
    memcpy(payload + at + 8, &mtime, 8);
    at += 16;
    uint64_t uv[3] = {f->lo, f->bias, f->hi};
    put_def(g_mod_tb, PMT_MC_MODULE, uv, 3, payload, at);
    return 1;
}

/* Describe the object holding ip in the capture, once.  g_code_lock held. */
static void
note_module(tbuf *tb, uintptr_t ip)
{
    for (size_t i = 0; i < g_n_mods; i++) {
        if (ip >= g_mods[i].lo && ip < g_mods[i].hi) {
            return;
        }
    }
    find_obj f = {.want = ip};
    g_mod_tb = tb;
    if (dl_iterate_phdr(module_cb, &f) && g_n_mods < MODS_MAX) {
        g_mods[g_n_mods].lo = f.lo;
        g_mods[g_n_mods].hi = f.hi;
        g_n_mods++;
    }
}

/* ---- the native nodes --------------------------------------------------------------- */

typedef struct {
    uint64_t addr;
    uint32_t parent, id;
} nat_entry;

static nat_entry *g_nat;
static size_t g_nat_cap, g_nat_len;

static inline size_t
nat_hash(uint32_t parent, uint64_t addr)
{
    uint64_t x = (addr ^ (uint64_t)parent << 40) * 0x9E3779B97F4A7C15ull;
    x ^= x >> 31;
    return (size_t)x;
}

static nat_entry *
nat_find(nat_entry *table, size_t cap, uint32_t parent, uint64_t addr)
{
    size_t mask = cap - 1;
    for (size_t i = nat_hash(parent, addr) & mask;; i = (i + 1) & mask) {
        nat_entry *e = &table[i];
        if (e->id == 0 || (e->parent == parent && e->addr == addr)) {
            return e;
        }
    }
}

static int
nat_used(const void *e)
{
    return ((const nat_entry *)e)->id != 0;
}

static void *
nat_place(void *table, size_t cap, const void *e)
{
    const nat_entry *n = e;
    return nat_find(table, cap, n->parent, n->addr);
}

/* The native node (parent, return address), defined if new (0: out of memory). */
static uint32_t
native_node(tbuf *tb, uint32_t parent, uintptr_t ip)
{
    pthread_mutex_lock(&g_code_lock);
    void *tab = g_nat;
    if ((g_nat_len + 1) * 10 >= g_nat_cap * 7 &&
        table_grow(&tab, &g_nat_cap, sizeof(nat_entry), nat_used, nat_place) < 0) {
        pthread_mutex_unlock(&g_code_lock);
        return 0;
    }
    g_nat = tab;
    nat_entry *e = nat_find(g_nat, g_nat_cap, parent, ip);
    if (e->id == 0) {
        note_module(tb, ip);
        e->parent = parent;
        e->addr = ip;
        e->id = g_next_node_id++;
        g_nat_len++;
        uint64_t uv[3] = {e->id, parent, ip};
        put_def(tb, PMT_MC_NATIVE_FRAME, uv, 3, NULL, 0);
    }
    uint32_t id = e->id;
    pthread_mutex_unlock(&g_code_lock);
    return id;
}

/* ---- one allocation's stack ----------------------------------------------------------- */

typedef struct {
    tbuf *tb;
    const pmt_pyframe *py;
    uint32_t parent;
    int32_t line;           /* the innermost Python line so far */
    int ok;
} builder;

/* Python frames py[from..to) (innermost first) under the current node. */
static void
put_python(builder *b, int from, int to)
{
    for (int j = to - 1; j >= from && b->ok; j--) {
        if (b->py[j].code == NULL) {
            continue;
        }
        int32_t l = -1;
        uint32_t code = py_frame_site(b->tb, &b->py[j], &l);
        b->parent = code ? py_stack_node(b->tb, b->parent, code, l) : 0;
        b->ok = b->parent != 0;
        b->line = l;
    }
}

/* Intern native frames ips[0..n) (innermost first) with the Python frames
 * py[0..m) interleaved at the evaluation calls. */
static void
build(builder *b, void *const *ips, int n, int m)
{
    /* the evaluation calls' Python frames: group k = py[gs[k]..gs[k+1]) */
    int gs[STACK_MAX + 2], ng = 0;
    gs[0] = 0;
    for (int j = 0; j < m; j++) {
        if (b->py[j].entry) {
            gs[++ng] = j + 1;
        }
    }
    if (gs[ng] < m) {
        gs[++ng] = m;
    }
    int evals = 0;
    for (int i = 0; i < n; i++) {
        evals += is_eval((uintptr_t)ips[i]);
    }
    for (int k = ng - 1; k >= evals && b->ok; k--) {
        put_python(b, gs[k], gs[k + 1]);     /* no evaluation call of theirs was seen */
    }
    int k = evals;
    for (int i = n - 1; i >= 0 && b->ok; i--) {
        uintptr_t ip = (uintptr_t)ips[i];
        if (is_eval(ip) && --k < ng) {
            int has = 0;
            for (int j = gs[k]; j < gs[k + 1]; j++) {
                has |= b->py[j].code != NULL;
            }
            if (has) {
                put_python(b, gs[k], gs[k + 1]);
                continue;
            }
        }
        b->parent = native_node(b->tb, b->parent, ip);
        b->ok = b->parent != 0;
    }
}

__attribute__((noinline)) void
native_stack_site(tbuf *tb, uint32_t *node, int32_t *line)
{
    void *ips[NATIVE_MAX];
    int n = unwind(ips, NATIVE_MAX), s = 0;
    while (s < n && (uintptr_t)ips[s] >= g_self_lo && (uintptr_t)ips[s] < g_self_hi) {
        s++;    /* the tracer's own frames */
    }
    pmt_pyframe py[STACK_MAX];
    int m = g_py_on ? py_stack_marked(py, STACK_MAX) : 0;
    uint64_t h = (uint64_t)(n - s) << 32 | (uint64_t)m;
    for (int i = s; i < n; i++) {
        h = (h ^ (uint64_t)(uintptr_t)ips[i]) * 0x100000001B3ull;
    }
    for (int j = 0; j < m; j++) {
        uint64_t f = py[j].code ? py_frame_hash(&py[j]) : 0x5bd1e995u;
        h = (h ^ f ^ (uint64_t)py[j].entry) * 0x100000001B3ull;
    }
    stack_slot *ss = &tb->stacks[(h ^ h >> 32) & (STACK_CACHE - 1)];
    if (LIKELY(ss->hash == h && ss->node != 0)) {
        *node = ss->node;
        *line = ss->line;
        return;
    }
    builder b = {.tb = tb, .py = py, .parent = thread_node(tb), .line = -1, .ok = 1};
    build(&b, ips + s, n - s, m);
    if (!b.ok || b.parent == 0) {
        return;     /* out of memory: no attribution */
    }
    ss->hash = h;
    ss->node = b.parent;
    ss->line = b.line;
    *node = b.parent;
    *line = b.line;
}

/* ---- set-up --------------------------------------------------------------------------- */

void
native_init(void)
{
    find_obj f = {.want = (uintptr_t)&native_init};
    if (dl_iterate_phdr(find_cb, &f)) {
        g_self_lo = f.lo;
        g_self_hi = f.hi;
    }
    void *ev = dlsym(RTLD_DEFAULT, "_PyEval_EvalFrameDefault");
    Dl_info di;
    const ElfW(Sym) *sym = NULL;
    if (ev && dladdr1(ev, &di, (void **)&sym, RTLD_DL_SYMENT) && sym && sym->st_size) {
        g_eval_lo = (uintptr_t)ev;
        g_eval_hi = (uintptr_t)ev + sym->st_size;
    }
#ifdef PMT_HAVE_LIBUNWIND
    unw_set_caching_policy(unw_local_addr_space, UNW_CACHE_PER_THREAD);
#endif
}

/* A forked child writes its own capture: every node and module is defined again. */
void
native_forget(void)
{
    if (g_nat) {
        memset(g_nat, 0, g_nat_cap * sizeof(nat_entry));
    }
    g_nat_len = 0;
    g_n_mods = 0;
}
