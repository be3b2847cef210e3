/* tbuf.c: per-thread state of the malloc tracer.
 *
 * Each thread records into its own chunk of the capture file (mapped
 * MAP_SHARED by capfile.c) and keeps its caches (code ids, lines, stacks)
 * and the chunk's delta state in a block mmap'd directly, never from the
 * allocator being traced, found through initial-exec TLS.  When a thread
 * ends (pthread key destructor) its block goes back to a free list for the
 * next thread, chunk and all: what it recorded is already in the file.  The
 * inline hot-path parts (room, commit, put_event) are in preload.h.
 */
#define _GNU_SOURCE 1     /* RTLD_NEXT, dl_iterate_phdr, execvpe, reallocarray */
#include <string.h>
#include <sys/mman.h>

#include "preload.h"

tbuf *g_bufs;
pthread_mutex_t g_reg_lock = PTHREAD_MUTEX_INITIALIZER;
pthread_key_t g_key;
_Atomic uint64_t g_seq = 1;
_Atomic uint64_t g_dropped;
TLS tbuf *t_buf;

void
thread_exit(void *arg)
{
    tbuf *tb = arg;
    t_guard++;
    t_buf = NULL;
    atomic_store(&tb->in_use, 0);
    t_guard--;
}

tbuf *
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
            tb = m;     /* zero-filled: lock clear, no chunk, caches empty */
            atomic_store(&tb->in_use, 1);
            tb->next = g_bufs;
            g_bufs = tb;
        }
    }
    pthread_mutex_unlock(&g_reg_lock);
    if (tb) {
        tb_forget(tb);
        t_buf = tb;
        pthread_setspecific(g_key, tb);
    }
    return tb;
}

void
tb_forget(tbuf *tb)
{
    memset(tb->codes, 0, sizeof(tb->codes));
    memset(tb->lines, 0, sizeof(tb->lines));
    memset(tb->stacks, 0, sizeof(tb->stacks));
}

/* A definition record: kind, nuv varints (already zigzagged where signed),
 * then, if payload is not NULL, its length and its bytes.  tb locked. */
void
put_def(tbuf *tb, unsigned kind, const uint64_t *uv, int nuv, const void *payload, size_t plen)
{
    if (plen > PAYLOAD_MAX) {
        plen = PAYLOAD_MAX;
    }
    unsigned char *p = room(tb, DEF_MAX);
    if (p == NULL) {
        return;
    }
    unsigned char *q = p + 1;
    for (int i = 0; i < nuv; i++) {
        q = pmt_put_uv(q, uv[i]);
    }
    if (payload != NULL) {
        q = pmt_put_uv(q, plen);
        memcpy(q, payload, plen);
        q += plen;
    }
    commit(tb, p, q, kind);
}
