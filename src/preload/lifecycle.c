/* lifecycle.c: the malloc tracer's life in the traced process.
 *
 * Load (read the configuration, create the capture), exit (the header's end
 * fields), fork (the child writes its own capture, created when it first
 * records), exec and _exit (which skip destructors: the end is written
 * first; see "exec and _exit" below for who keeps PATH), and
 * pymemtrace_malloc_control(), the switch the traced program uses.
 */
#define _GNU_SOURCE 1     /* RTLD_NEXT, dl_iterate_phdr, execvpe, reallocarray */
#include <errno.h>
#include <link.h>
#include <stdarg.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "preload.h"

_Atomic int g_ready;
_Atomic int g_on;
int g_native;
int g_stacks;
uint32_t g_rs = PMT_MC_RECORD_BASE;
pid_t g_pid;
TLS int t_guard;
int g_preload_mode;
unsigned g_epoch;

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
    char path[PATH_MAX];
    const char *name = info->dlpi_name;
    size_t n;
    if (name == NULL || name[0] == '\0') {
        ssize_t l = readlink("/proc/self/exe", path, sizeof(path));
        n = l > 0 ? (size_t)l : 0;
        name = path;
    }
    else {
        n = strlen(name);
    }
    uint64_t uv[3] = {lo, (uint64_t)info->dlpi_addr, hi};
    put_def(tb, PMT_MC_MODULE, uv, 3, name, n);
    return 0;
}

/* The end of this image: the modules (for --native) and the header's end
 * fields.  No thread records meanwhile: every buffer is locked. */
void
write_end(uint32_t state)
{
    tbuf *tb = get_tbuf();
    pthread_mutex_lock(&g_reg_lock);
    for (tbuf *b = g_bufs; b; b = b->next) {
        tb_lock(b);
    }
    if (g_native && tb && capture_open()) {
        dl_iterate_phdr(module_cb, tb);
    }
    if (g_aggregate) {
        agg_lock();
        checkpoint_write(1);    /* the final checkpoint: the complete one */
        agg_unlock();
    }
    end_capture(state);
    for (tbuf *b = g_bufs; b; b = b->next) {
        tb_unlock(b);
    }
    pthread_mutex_unlock(&g_reg_lock);
}

/* fork: no thread may be inside a record or a new chunk while the process
 * is copied.  The child unmaps every chunk and the header (they are the
 * parent's file) and creates its own capture when it first records. */
static int g_fork_locked;    /* before_fork took the locks (tracing may stop meanwhile) */

void
before_fork(void)
{
    g_fork_locked = atomic_load(&g_ready);
    if (!g_fork_locked) {
        return;
    }
    t_guard++;
    pthread_mutex_lock(&g_reg_lock);
    for (tbuf *tb = g_bufs; tb; tb = tb->next) {
        tb_lock(tb);
    }
    pthread_mutex_lock(&g_code_lock);
    agg_lock();
    pthread_mutex_lock(&g_write_lock);
}

void
after_fork_parent(void)
{
    if (!g_fork_locked) {
        return;
    }
    pthread_mutex_unlock(&g_write_lock);
    agg_unlock();
    pthread_mutex_unlock(&g_code_lock);
    for (tbuf *tb = g_bufs; tb; tb = tb->next) {
        tb_unlock(tb);
    }
    pthread_mutex_unlock(&g_reg_lock);
    t_guard--;
}

void
after_fork_child(void)
{
    if (!g_fork_locked) {
        return;
    }
    /* Only this thread exists now: nothing can contend. */
    pthread_mutex_init(&g_write_lock, NULL);
    pthread_mutex_init(&g_reg_lock, NULL);
    g_pid = getpid();
    g_epoch++;
    checkpoint_forget();    /* before forget_capture: the slots are the parent's file */
    forget_capture();       /* PATH is the parent's: an exec here must not move it */
    agg_forget();           /* the child counts its own allocations */
    if (g_inproc_mode) {
        g_open_pending = 0; /* in-process: the child traces nothing */
        inproc_fork_child();
    }
    atomic_store(&g_dropped, 0);
    py_forget_codes();      /* code ids and stacks are defined again in the child's capture */
    py_forget_stacks();
    native_forget();
    for (tbuf *tb = g_bufs; tb; tb = tb->next) {
        drop_chunk(tb);
        tb->events = 0;
        tb_forget(tb);
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
    const char *pre = getenv("LD_PRELOAD");
    /* dlopen'd (the in-process mode) with the variable inherited: not ours */
    if (pre == NULL || strstr(pre, "libpymemtrace_malloc") == NULL) {
        out = NULL;
    }
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
    g_preload_mode = 1;
    const char *nat = getenv("PYMEMTRACE_MALLOC_NATIVE");
    g_native = nat != NULL && strcmp(nat, "1") == 0;
    const char *stk = getenv("PYMEMTRACE_MALLOC_STACKS");
    const char *agg = getenv("PYMEMTRACE_MALLOC_AGGREGATE");
    g_aggregate = agg != NULL && strcmp(agg, "1") == 0;
    const char *every = getenv("PYMEMTRACE_MALLOC_CHECKPOINT");
    if (every != NULL && every[0] != '\0') {
        char *end;
        double sec = strtod(every, &end);
        if (*end != '\0' || !(sec >= 0.05 && sec <= 86400.0)) {
            say("PYMEMTRACE_MALLOC_CHECKPOINT must be seconds from 0.05 to 86400, not ", every,
                0);
            t_guard--;
            return;
        }
        g_ckpt_interval_ns = (uint64_t)(sec * 1e9);
    }
    g_stacks = (stk != NULL && strcmp(stk, "1") == 0) || g_native || g_aggregate;
    g_pid = getpid();
    if (!real.malloc || !real.free || !real.mmap || !real.munmap) {
        say("cannot find the real allocator; not tracing", "", 0);
        t_guard--;
        return;
    }
    resolve_python();
    if (g_native) {
        native_init();
    }
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
        end_capture(PMT_MC_STATE_EXIT);
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
    write_end(PMT_MC_STATE_EXIT);
    t_guard--;
}

/* ---- exec and _exit -----------------------------------------------------------
 *
 * exec replaces this image without running destructors, and _exit skips
 * them.  Before either, the header's end fields are written.  Before an
 * exec the image that created the capture path also moves its capture aside (to PATH.<pid>.<k>, never
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
    /* A forked child that has recorded nothing has no file (and makes
     * none): the program it execs writes its own capture. */
    write_end(reason);
    int moved = 0;
    if (reason == PMT_MC_STATE_EXEC && g_owns_main && !g_inproc_mode) {
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

/* exec failed: put the capture back and trace on. */
static void
exec_failed(int state)
{
    int e = errno;
    if (state & 1) {
        resume_capture();
    }
    if ((state & 2) && link(g_path_aside, g_path) == 0) {
        unlink(g_path_aside);
    }
    if (state & 4) {
        atomic_store(&g_on, 1);
    }
    errno = e;
}

/* The vector forms: write everything out, exec, trace on if it failed. */
#define EXEC_ENTRY(name, params, args) \
    EXPORT int \
    name params \
    { \
        if (UNLIKELY(!real.name)) { \
            resolve_real(); \
        } \
        int st = finish_image(PMT_MC_STATE_EXEC); \
        int r = real.name args; \
        exec_failed(st); \
        return r; \
    }

EXEC_ENTRY(execve, (const char *path, char *const argv[], char *const envp[]),
           (path, argv, envp))
EXEC_ENTRY(execv, (const char *path, char *const argv[]), (path, argv))
EXEC_ENTRY(execvp, (const char *file, char *const argv[]), (file, argv))
EXEC_ENTRY(execvpe, (const char *file, char *const argv[], char *const envp[]),
           (file, argv, envp))
EXEC_ENTRY(fexecve, (int fd, char *const argv[], char *const envp[]), (fd, argv, envp))

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
    finish_image(PMT_MC_STATE_EXIT);
    real.exit_(status);
    __builtin_unreachable();
}

EXPORT void
_Exit(int status)
{
    if (UNLIKELY(!real.Exit_)) {
        resolve_real();
    }
    finish_image(PMT_MC_STATE_EXIT);
    real.Exit_(status);
    __builtin_unreachable();
}

/* Hidden aliases: where the in-process mode (inproc.c) sends the slots. */
HIDDEN_ALIASES_BEGIN
HIDDEN_ALIAS(pmt_h_execve, execve);
HIDDEN_ALIAS(pmt_h_execv, execv);
HIDDEN_ALIAS(pmt_h_execvp, execvp);
HIDDEN_ALIAS(pmt_h_execvpe, execvpe);
HIDDEN_ALIAS(pmt_h_fexecve, fexecve);
HIDDEN_ALIAS(pmt_h_execl, execl);
HIDDEN_ALIAS(pmt_h_execlp, execlp);
HIDDEN_ALIAS(pmt_h_execle, execle);
HIDDEN_ALIAS(pmt_h_exit, _exit);
HIDDEN_ALIAS(pmt_h_Exit, _Exit);

/* ---- control from the traced program ----------------------------------------
 *
 * pymemtrace_malloc_control(op): 1 resume tracing, 0 pause it (what was
 * recorded is in the file already), -1 only ask.  Returns whether tracing was on before the call, or -1 if this
 * process has no capture (not started by `pymemtrace malloc`, or the capture
 * could not be created).  Used by pymemtrace.malloc.Tracing
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
    return atomic_exchange(&g_on, op ? 1 : 0);
}
