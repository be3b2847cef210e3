/* capgen.c: write a synthetic `pymemtrace malloc --stacks` capture of N
 * events, as the preload library lays one out (src/core/capture_format.h),
 * for measuring the reporter on captures of 1 to 100 million events
 * (bench/bench_malloc_reader.py).  Not part of the package.
 *
 *   capgen PATH EVENTS [THREADS [STACKS [VERSION]]]
 *
 * THREADS threads (default 4) take sequence numbers in a random interleaving,
 * each writing its own 128 KiB chunks; their allocations come from STACKS
 * distinct stacks (default 2000) of depth 2..9 over 200 functions; each
 * thread keeps a window of 512 live blocks (a free for every allocation)
 * and leaks one allocation in 1000, so live blocks grow with events / 1000.
 * A TIME record every 100000 events (1 ms apart) makes a clock.  VERSION
 * (default: this tree's) writes that format number in the header, so the
 * same bytes can be given to an older reader when no TIME is written (3).
 */
#include <fcntl.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "../src/core/capture_format.h"

#define CHUNK (128 * 1024)
#define WINDOW 512
#define FUNCS 200

typedef struct {
    uint8_t buf[CHUNK];
    size_t len;
    uint64_t seq, addr, size, code, line;
    uint32_t root;
    uint64_t live[WINDOW];
    uint64_t live_size[WINDOW];
    uint64_t next_addr;
} thread_buf;

static int fd;
static uint64_t file_end;

static void
die(const char *what)
{
    perror(what);
    exit(2);
}

static void
put_at(int where, const void *p, size_t n, uint64_t off)
{
    (void)where;
    const uint8_t *q = p;
    while (n) {
        ssize_t w = pwrite(fd, q, n, (off_t)off);
        if (w <= 0) {
            die("pwrite");
        }
        q += w;
        n -= (size_t)w;
        off += (uint64_t)w;
    }
}

static void
flush_chunk(thread_buf *t)
{
    if (t->len == 0) {
        return;
    }
    memset(t->buf + t->len, 0, CHUNK - t->len);
    put_at(0, t->buf, CHUNK, file_end);
    file_end += CHUNK;
    t->len = 0;
    t->seq = t->addr = t->size = t->code = t->line = 0;
}

static void
room(thread_buf *t, size_t n)
{
    if (t->len + n > CHUNK) {
        flush_chunk(t);
    }
}

static void
uv(thread_buf *t, uint64_t v)
{
    t->len = (size_t)(pmt_put_uv(t->buf + t->len, v) - t->buf);
}

static void
def(thread_buf *t, unsigned kind, const uint64_t *v, int nv, const char *payload, size_t plen)
{
    room(t, 64 + plen);
    t->buf[t->len++] = (uint8_t)kind;
    for (int i = 0; i < nv; i++) {
        uv(t, v[i]);
    }
    memcpy(t->buf + t->len, payload, plen);
    t->len += plen;
}

static void
event(thread_buf *t, uint64_t seq, unsigned kind, uint64_t a, uint64_t b, uint64_t code)
{
    room(t, PMT_MC_EVENT_MAX);
    size_t at = t->len++;
    unsigned byte = kind;
    if (seq - t->seq == 1) {
        byte |= PMT_MC_SEQ_NEXT;
    }
    else {
        uv(t, pmt_zz(seq - t->seq));
    }
    uv(t, pmt_zz(a - t->addr));
    t->seq = seq;
    t->addr = a;
    if (pmt_mc_is_alloc(kind)) {
        uv(t, pmt_zz(b - t->size));
        t->size = b;
        uint64_t line = 10 + code % 50;
        if (code == t->code && line == t->line) {
            byte |= PMT_MC_SAME_SITE;
        }
        else {
            uv(t, pmt_zz(code - t->code));
            uv(t, pmt_zz(line - t->line));
            t->code = code;
            t->line = line;
        }
    }
    t->buf[at] = (uint8_t)byte;
}

static uint64_t rng_state = 1;

static uint64_t
next_rand(void)     /* splitmix64 */
{
    uint64_t z = (rng_state += 0x9e3779b97f4a7c15ull);
    z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ull;
    z = (z ^ (z >> 27)) * 0x94d049bb133111ebull;
    return z ^ (z >> 31);
}

int
main(int argc, char **argv)
{
    if (argc < 3) {
        fprintf(stderr, "usage: capgen PATH EVENTS [THREADS [STACKS [VERSION]]]\n");
        return 2;
    }
    uint64_t events = strtoull(argv[2], NULL, 10);
    unsigned nthreads = argc > 3 ? (unsigned)atoi(argv[3]) : 4;
    unsigned nstacks = argc > 4 ? (unsigned)atoi(argv[4]) : 2000;
    unsigned version = argc > 5 ? (unsigned)atoi(argv[5]) : PMT_MC_VERSION;
    if (nthreads < 1 || nthreads > 64 || nstacks < 1) {
        fprintf(stderr, "capgen: THREADS 1..64, STACKS >= 1\n");
        return 2;
    }
    fd = open(argv[1], O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
    if (fd < 0) {
        die(argv[1]);
    }
    pmt_mc_header h;
    memset(&h, 0, sizeof(h));
    memcpy(h.magic, PMT_MC_MAGIC, 8);
    h.version = version;
    h.header_size = PMT_MC_HEADER_SIZE;
    h.record_size = PMT_MC_RECORD_BASE;
    h.flags = PMT_MC_FLAG_STACKS;
    h.pid = 4242;
    h.endian = PMT_MC_ENDIAN;
    h.page_size = 4096;
    h.chunk_size = CHUNK;
    h.data_offset = 4096;
    h.python_hex = 0x030b07f0;
    h.python_status = PMT_MC_PY_ON;
    h.state = PMT_MC_STATE_EXIT;
    h.events = events;
    file_end = h.data_offset;
    thread_buf *ts = calloc(nthreads, sizeof(thread_buf));
    if (!ts) {
        die("calloc");
    }
    /* definitions: functions in thread 0's first chunk; each thread its root */
    uint32_t next_id = 1;
    for (unsigned f = 1; f <= FUNCS; f++) {
        char payload[64];
        int n = snprintf(payload, sizeof(payload), "mod%u.py%cfunc%u", f % 17, 0, f);
        uint64_t v[3] = {f, pmt_zz(1), (uint64_t)n + 1};
        def(&ts[0], PMT_MC_CODE, v, 3, payload, (size_t)n + 1);
    }
    for (unsigned t = 0; t < nthreads; t++) {
        ts[t].root = next_id++;
        uint64_t v[3] = {ts[t].root, 1000 + t, 8};
        def(&ts[t], PMT_MC_THREAD, v, 3, "worker\0", 8);
        ts[t].next_addr = 0x10000000ull * (t + 1);
    }
    /* stacks: each thread defines its own nodes the first time it uses one */
    uint32_t *leaf = calloc((size_t)nthreads * nstacks, sizeof(uint32_t));
    if (!leaf) {
        die("calloc");
    }
    uint64_t seq = 1;
    for (uint64_t i = 0; i < events;) {
        if (i % 100000 == 0 && version >= 4) {
            uint64_t v[3] = {i / 100 * 1000, (64ull << 20) + i * 8, seq};
            def(&ts[next_rand() % nthreads], PMT_MC_TIME, v, 3, "", 0);
        }
        thread_buf *t = &ts[next_rand() % nthreads];
        unsigned ti = (unsigned)(t - ts);
        uint64_t r = next_rand();
        unsigned slot = (unsigned)(r % WINDOW);
        if (t->live[slot] && i + 1 < events && (r >> 32) % 1000 != 0) {
            event(t, seq++, PMT_MC_FREE, t->live[slot], 0, 0);
            i++;
        }
        unsigned s = (unsigned)((r >> 16) % nstacks);
        uint32_t *lf = &leaf[(size_t)ti * nstacks + s];
        if (!*lf) {
            unsigned depth = 2 + s % 8;
            uint32_t parent = t->root;
            for (unsigned d = 0; d < depth; d++) {
                uint32_t id = next_id++;
                uint64_t v[4] = {id, parent, 1 + (s * 7 + d * 13) % FUNCS, pmt_zz(20 + d)};
                def(t, PMT_MC_STACK, v, 4, "", 0);
                parent = id;
            }
            *lf = parent;
        }
        uint64_t size = 16 + (r >> 40) % 512;
        uint64_t addr = t->next_addr;
        t->next_addr += 1024;
        event(t, seq++, PMT_MC_MALLOC, addr, size, *lf);
        t->live[slot] = addr;
        t->live_size[slot] = size;
        i++;
    }
    for (unsigned t = 0; t < nthreads; t++) {
        flush_chunk(&ts[t]);
    }
    put_at(0, &h, sizeof(h), 0);
    if (ftruncate(fd, (off_t)file_end) != 0 || close(fd) != 0) {
        die("close");
    }
    printf("%s: %llu events, %llu bytes\n", argv[1], (unsigned long long)events,
           (unsigned long long)file_end);
    free(ts);
    free(leaf);
    return 0;
}
