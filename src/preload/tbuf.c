/* tbuf.c: per-thread record buffers of the malloc tracer.
 *
 * Each thread appends records to its own 80 KiB buffer (mmap'd directly,
 * never from the allocator being traced), found through initial-exec TLS.
 * A full buffer is handed whole to the capture (capfile.c) under one mutex;
 * a thread's buffer is written out when the thread ends (pthread key
 * destructor) and goes back to a free list for the next thread.  The
 * inline hot-path parts (reserve, put_event) are in preload.h.
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

/* Hand tb's records to the file.  Called with tb locked. */
void
flush_locked(tbuf *tb)
{
    if (!tb->len) {
        return;
    }
    pthread_mutex_lock(&g_write_lock);
    write_buffer(tb->data, tb->len);
    pthread_mutex_unlock(&g_write_lock);
    tb->len = 0;
}

void
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
            tb = m;     /* zero-filled: lock clear, caches empty */
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

/* A definition record with a payload (zero-padded to whole records). */
void
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

/* Write every buffer out (they must all be lockable). */
void
flush_all(void)
{
    for (tbuf *tb = g_bufs; tb; tb = tb->next) {
        tb_lock(tb);
        flush_locked(tb);
        tb_unlock(tb);
    }
}
