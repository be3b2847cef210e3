/* inproc.c: the in-process mode of the malloc tracer (pymemtrace.malloc.Tracker).
 *
 * The same library as the LD_PRELOAD mode, loaded later with dlopen
 * (RTLD_LOCAL | RTLD_NODELETE: never unloaded, since slots and threads may
 * keep pointers to its functions).  Nothing is preloaded, so the real
 * allocator is taken from libc itself, and the program's calls are brought
 * here by rewriting the relocation slots (GOT entries) of every loaded object
 * (src/core/gotpatch.c): the allocator family, anonymous mmap/munmap, exec and
 * _exit (the capture is ended first), and dlopen, so that an object loaded
 * while tracking (an extension module imported in the block) is patched too.
 * Stopping puts every slot back (or counts those someone else rewrote since),
 * writes the header's end fields and unmaps the capture; the caller packs it.
 *
 * Exported for the binding (ctypes) and for a debugger (attach):
 *   int pmt_inproc_start(const char *path, int flags)   0, or -errno
 *   int pmt_inproc_stop(void)                  slots restored, or -errno
 *   const char *pmt_inproc_error(void)         what the last failure was
 *   long pmt_inproc_left(void)                 slots left alone by the last stop
 * flags: PMT_INPROC_NATIVE (native stacks); whole Python stacks always.
 *
 * Limits (the method's): calls inside one object that do not go through its
 * GOT (static functions, hidden aliases) are not seen; the dynamic linker's
 * own allocations are not seen; a dlopen through the hook resolves a bare
 * name with this library's search path, not the caller's DT_RPATH.
 */
#define _GNU_SOURCE 1
#include <dlfcn.h>
#include <errno.h>
#include <link.h>
#include <string.h>
#include <unistd.h>

#include "gotpatch.h"
#include "preload.h"

#define PMT_INPROC_NATIVE 1

static pthread_mutex_t g_inproc_lock = PTHREAD_MUTEX_INITIALIZER;
_Atomic int g_inproc;                   /* 1: tracking in-process now */
int g_inproc_mode;                      /* this image has used the in-process mode */
static pmt_got_patch g_patch;           /* the slots rewritten (kept after a fork) */
static long g_left;
static char g_err[PATH_MAX + 200];
static void *(*real_dlopen)(const char *, int);
static TLS int t_dl_depth;
static int g_once;                      /* key and fork handlers made */

static void *hook_dlopen(const char *file, int mode);

/* What calls are sent where: the entry points of interpose.c and lifecycle.c
 * through hidden aliases (their exported names would bind to libc's). */
static pmt_got_hook g_hooks[] = {
    {"malloc", (void *)pmt_h_malloc},
    {"calloc", (void *)pmt_h_calloc},
    {"realloc", (void *)pmt_h_realloc},
    {"reallocarray", (void *)pmt_h_reallocarray},
    {"free", (void *)pmt_h_free},
    {"posix_memalign", (void *)pmt_h_posix_memalign},
    {"aligned_alloc", (void *)pmt_h_aligned_alloc},
    {"memalign", (void *)pmt_h_memalign},
    {"valloc", (void *)pmt_h_valloc},
    {"pvalloc", (void *)pmt_h_pvalloc},
    {"mmap", (void *)pmt_h_mmap},
    {"mmap64", (void *)pmt_h_mmap64},
    {"munmap", (void *)pmt_h_munmap},
    {"execve", (void *)pmt_h_execve},
    {"execv", (void *)pmt_h_execv},
    {"execvp", (void *)pmt_h_execvp},
    {"execvpe", (void *)pmt_h_execvpe},
    {"fexecve", (void *)pmt_h_fexecve},
    {"execl", (void *)pmt_h_execl},
    {"execlp", (void *)pmt_h_execlp},
    {"execle", (void *)pmt_h_execle},
    {"_exit", (void *)pmt_h_exit},
    {"_Exit", (void *)pmt_h_Exit},
    {"dlopen", (void *)hook_dlopen},
};

static int
fail(int err, const char *a, const char *b)
{
    size_t n = strlen(a), m = b ? strlen(b) : 0;
    if (n > 150) {
        n = 150;
    }
    if (m > sizeof(g_err) - n - 1) {
        m = sizeof(g_err) - n - 1;
    }
    memcpy(g_err, a, n);
    if (m) {
        memcpy(g_err + n, b, m);
    }
    g_err[n + m] = '\0';
    return -err;
}

EXPORT const char *
pmt_inproc_error(void)
{
    return g_err;
}

EXPORT long
pmt_inproc_left(void)
{
    return g_left;
}

/* ---- the real functions: libc's own ------------------------------------------- */

static int
main_program_cb(struct dl_phdr_info *info, size_t size, void *arg)
{
    (void)size;
    uintptr_t a = *(uintptr_t *)arg;
    for (int i = 0; i < info->dlpi_phnum; i++) {
        const ElfW(Phdr) *ph = &info->dlpi_phdr[i];
        uintptr_t lo = (uintptr_t)info->dlpi_addr + ph->p_vaddr;
        if (ph->p_type == PT_LOAD && a >= lo && a < lo + ph->p_memsz) {
            return 1;
        }
    }
    return 2;           /* the first object listed is the main program: stop */
}

static int
in_main_program(const void *addr)
{
    uintptr_t a = (uintptr_t)addr;
    return dl_iterate_phdr(main_program_cb, &a) == 1;
}

/* Fill `real` from libc.  Refuses a process where another allocator (a
 * preloaded jemalloc, tcmalloc) defines malloc: its blocks are not libc's. */
static int
resolve_libc(void)
{
    void *libc = dlopen("libc.so.6", RTLD_NOW | RTLD_NOLOAD);
    if (libc == NULL) {
        return fail(ENOSYS, "libc.so.6 is not loaded in this process (glibc is required)", NULL);
    }
#define R(field, name) real.field = dlsym(libc, name)
    R(malloc, "malloc");
    R(calloc, "calloc");
    R(realloc, "realloc");
    R(reallocarray, "reallocarray");
    R(free, "free");
    R(posix_memalign, "posix_memalign");
    R(aligned_alloc, "aligned_alloc");
    R(memalign, "memalign");
    R(valloc, "valloc");
    R(pvalloc, "pvalloc");
    R(mmap, "mmap");
    R(mmap64, "mmap64");
    R(munmap, "munmap");
    R(execve, "execve");
    R(execv, "execv");
    R(execvp, "execvp");
    R(execvpe, "execvpe");
    R(fexecve, "fexecve");
    R(exit_, "_exit");
    R(Exit_, "_Exit");
#undef R
    real_dlopen = (void *(*)(const char *, int))dlsym(libc, "dlopen");
    if (real_dlopen == NULL) {
        real_dlopen = dlopen;       /* glibc before 2.34: libdl's, bound in our GOT */
    }
    dlclose(libc);                  /* NOLOAD: drops the reference just taken */
    if (!real.mmap64) {
        real.mmap64 = real.mmap;
    }
    if (!real.malloc || !real.calloc || !real.realloc || !real.free || !real.mmap ||
        !real.munmap || !real.posix_memalign || !real.exit_) {
        return fail(ENOSYS, "cannot find the allocator functions in libc", NULL);
    }
    /* The process's malloc is libc's, or the executable's own PLT entry (a
     * non-PIE python takes malloc's address); any other definer is another
     * allocator (a preloaded jemalloc, tcmalloc): its blocks are not libc's. */
    void *def = dlsym(RTLD_DEFAULT, "malloc");
    Dl_info d1, d2;
    if (def != NULL && def != (void *)real.malloc && !in_main_program(def) &&
        dladdr(def, &d1) != 0 && dladdr((void *)real.malloc, &d2) != 0 &&
        d1.dli_fbase != d2.dli_fbase) {
        return fail(ENOTSUP, "another allocator replaces malloc in this process: ",
                    d1.dli_fname ? d1.dli_fname : "?");
    }
    return 0;
}

/* ---- dlopen while tracking: patch what it loaded ------------------------------- */

static void *
hook_dlopen(const char *file, int mode)
{
    t_dl_depth++;
    void *h = real_dlopen(file, mode);
    t_dl_depth--;
    /* The outermost dlopen only: the loader's lock is free again, and nested
     * loads (constructors that dlopen) are patched with it. */
    if (h != NULL && t_dl_depth == 0 && atomic_load(&g_inproc)) {
        int e = errno;
        t_guard++;
        pthread_mutex_lock(&g_inproc_lock);
        if (atomic_load(&g_inproc)) {
            (void)pmt_got_apply(&g_patch);
        }
        pthread_mutex_unlock(&g_inproc_lock);
        t_guard--;
        errno = e;
    }
    return h;
}

/* ---- start and stop ----------------------------------------------------------- */

/* A capture starts from nothing: ids, caches and sequence numbers of an
 * earlier one in this process are forgotten.  Nothing records now. */
static void
reset_state(void)
{
    atomic_store(&g_seq, 1);
    atomic_store(&g_dropped, 0);
    py_forget_codes();
    py_forget_stacks();
    native_forget();
    pthread_mutex_lock(&g_reg_lock);
    for (tbuf *tb = g_bufs; tb; tb = tb->next) {
        tb_lock(tb);
        drop_chunk(tb);
        tb->events = 0;
        tb_forget(tb);
        tb_unlock(tb);
    }
    pthread_mutex_unlock(&g_reg_lock);
    g_epoch++;
}

/* A forked child keeps the parent's patched slots: put them back now. */
static void
restore_inherited(void)
{
    if (g_patch.nslots) {
        long left = 0;
        (void)pmt_got_restore(&g_patch, &left);
        pmt_got_free(&g_patch);
        g_left = left;
    }
}

EXPORT int
pmt_inproc_start(const char *path, int flags)
{
    int rc = 0;
    if (path == NULL || path[0] == '\0') {
        return fail(EINVAL, "no capture path given", NULL);
    }
    if (strlen(path) >= sizeof(g_path)) {
        return fail(ENAMETOOLONG, "capture path too long: ", path);
    }
    t_guard++;
    pthread_mutex_lock(&g_inproc_lock);
    if (g_preload_mode) {
        rc = fail(EALREADY, "this process runs under 'pymemtrace malloc' (LD_PRELOAD); "
                  "use pymemtrace.malloc.Tracing() to trace a block there", NULL);
        goto out;
    }
    if (atomic_load(&g_inproc)) {
        rc = fail(EBUSY, "already tracking in-process into ", g_path);
        goto out;
    }
    restore_inherited();
    if ((rc = resolve_libc()) < 0) {
        goto out;
    }
    atomic_store(&resolve_state, 2);
    if (!g_once) {
        if (pthread_key_create(&g_key, thread_exit) != 0 ||
            pthread_atfork(before_fork, after_fork_parent, after_fork_child) != 0) {
            rc = fail(EAGAIN, "cannot set up thread keys or fork handlers", NULL);
            goto out;
        }
        g_once = 1;
    }
    g_inproc_mode = 1;
    resolve_python();
    g_native = (flags & PMT_INPROC_NATIVE) != 0;
    g_stacks = 1;
    if (g_native) {
        native_init();
    }
    g_pid = getpid();
    reset_state();
    memcpy(g_path, path, strlen(path) + 1);
    g_open_pending = 0;
    g_stop_err = 0;
    pthread_mutex_lock(&g_write_lock);
    int orc = open_capture();
    int oe = errno;
    pthread_mutex_unlock(&g_write_lock);
    if (orc < 0) {
        rc = fail(oe, "cannot create the capture ", path);
        goto out;
    }
    if (pmt_got_init(&g_patch, g_hooks, sizeof(g_hooks) / sizeof(g_hooks[0]),
                     (const void *)pmt_inproc_start) != 0) {
        rc = fail(errno, "cannot prepare the relocation patch", NULL);
        goto undo;
    }
    atomic_store(&g_ready, 1);
    atomic_store(&g_inproc, 1);
    atomic_store(&g_on, 1);
    if (pmt_got_apply(&g_patch) < 0) {
        int e = errno;
        atomic_store(&g_on, 0);
        atomic_store(&g_inproc, 0);
        (void)pmt_got_restore(&g_patch, NULL);
        pmt_got_free(&g_patch);
        atomic_store(&g_ready, 0);
        rc = fail(e, e == ENOSYS ? "relocation patching is not supported on this machine"
                                 : "cannot rewrite the relocation slots", NULL);
        goto undo;
    }
    goto out;
undo:
    end_capture(PMT_MC_STATE_EXIT);
    close_capture();
    unlink(g_path_used);
out:
    pthread_mutex_unlock(&g_inproc_lock);
    t_guard--;
    return rc;
}

EXPORT int
pmt_inproc_stop(void)
{
    int rc;
    t_guard++;
    pthread_mutex_lock(&g_inproc_lock);
    if (!atomic_load(&g_inproc)) {
        if (g_patch.nslots && g_pid != getpid()) {
            restore_inherited();    /* a forked child: nothing of it is written */
            rc = fail(ECHILD, "forked while tracking: this child traced nothing", NULL);
        }
        else {
            rc = fail(ESRCH, "not tracking in-process", NULL);
        }
        goto out;
    }
    atomic_store(&g_on, 0);
    long left = 0;
    long restored = pmt_got_restore(&g_patch, &left);
    pmt_got_free(&g_patch);
    g_left = left;
    atomic_store(&g_inproc, 0);
    atomic_store(&g_ready, 0);
    write_end(PMT_MC_STATE_EXIT);
    close_capture();
    rc = restored < 0 ? fail(errno ? errno : EIO, "cannot restore the relocation slots", NULL)
                      : (int)restored;
out:
    pthread_mutex_unlock(&g_inproc_lock);
    t_guard--;
    return rc;
}

/* The fork child (called from after_fork_child, only this thread exists):
 * stop before any event, never touch the parent's file.  The slots stay
 * patched (passing straight through) until a stop or start puts them back:
 * that needs the loader's lock, which is not to be taken here. */
void
inproc_fork_child(void)
{
    pthread_mutex_init(&g_inproc_lock, NULL);
    atomic_store(&g_on, 0);
    atomic_store(&g_inproc, 0);
    atomic_store(&g_ready, 0);
}
