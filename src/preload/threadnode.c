/* threadnode.c: the THREAD node at the root of each thread's stacks.
 *
 * With whole stacks (--stacks, --native) every stack a thread records hangs
 * from one THREAD node: its OS thread id and the kernel's name for it (comm,
 * read once from /proc when the thread first allocates; a name set later is
 * not seen).  So every allocation carries its thread at no cost per event:
 * the reader finds it at the root of the event's stack.  The node is kept in
 * thread-local storage with the pid it was defined for: a forked child's
 * thread defines its own in the child's capture, and each in-process capture
 * (g_epoch) its own.
 */
#define _GNU_SOURCE 1     /* gettid */
#include <errno.h>
#include <fcntl.h>
#include <string.h>
#include <unistd.h>

#include "preload.h"

static TLS uint32_t t_node;
static TLS pid_t t_node_pid;
static TLS unsigned t_node_epoch;

/* The kernel's name of thread tid (at most 15 bytes), or "" if unreadable. */
static size_t
thread_name(pid_t tid, char *out, size_t cap)
{
    char path[64] = "/proc/self/task/";
    size_t n = strlen(path);
    put_u(path, &n, (unsigned long)tid);
    memcpy(path + n, "/comm", 6);
    int fd = open(path, O_RDONLY | O_CLOEXEC);
    if (fd < 0) {
        return 0;
    }
    ssize_t r;
    do {
        r = read(fd, out, cap - 1);
    } while (r < 0 && errno == EINTR);
    close(fd);
    size_t len = r > 0 ? (size_t)r : 0;
    while (len > 0 && (out[len - 1] == '\n' || out[len - 1] == '\0')) {
        len--;
    }
    return len;
}

uint32_t
thread_node(tbuf *tb)
{
    if (LIKELY(t_node != 0 && t_node_pid == g_pid && t_node_epoch == g_epoch)) {
        return t_node;
    }
    pid_t tid = gettid();
    char name[32];
    size_t n = thread_name(tid, name, sizeof(name));
    name[n++] = '\0';
    pthread_mutex_lock(&g_code_lock);
    uint32_t id = g_next_node_id++;
    pthread_mutex_unlock(&g_code_lock);
    uint64_t uv[2] = {id, (uint64_t)tid};
    put_def(tb, PMT_MC_THREAD, uv, 2, name, n);
    t_node = id;
    t_node_pid = g_pid;
    t_node_epoch = g_epoch;
    return id;
}
