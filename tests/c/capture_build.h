/* capture_build.h: build `pymemtrace malloc` captures (format version 4) in
 * memory for the C tests of capture_read, capture_aggregate and the fuzz
 * seeds.  The capture's chunks are CB_CHUNK bytes and start right after the
 * header; a record that would not fit in the current chunk starts the next
 * (and the delta state starts again, as the writer's does). */
#ifndef PMT_CAPTURE_BUILD_H
#define PMT_CAPTURE_BUILD_H
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "capture_format.h"

#define CB_CHUNK 4096u

static uint8_t buf[1 << 16];
static size_t len;
static struct {
    uint64_t seq, addr, size, native;
    uint32_t code;
    int32_t line;
} cb_d;

static inline void
put(const void *p, size_t n)
{
    memcpy(buf + len, p, n);
    len += n;
}

static inline pmt_mc_header *
hdr(void)
{
    return (pmt_mc_header *)buf;
}

/* A new chunk: zeros up to its start, delta state from 0. */
static inline void
next_chunk(void)
{
    size_t used = (len - PMT_MC_HEADER_SIZE) % CB_CHUNK;
    if (used) {
        memset(buf + len, 0, CB_CHUNK - used);
        len += CB_CHUNK - used;
    }
    memset(&cb_d, 0, sizeof(cb_d));
}

/* Room for n bytes in the current chunk (else the next one). */
static inline void
cb_room(size_t n)
{
    size_t used = (len - PMT_MC_HEADER_SIZE) % CB_CHUNK;
    if (used + n > CB_CHUNK) {
        next_chunk();
    }
}

static inline void
header(uint32_t rs)
{
    memset(buf, 0, sizeof(buf));
    pmt_mc_header *h = hdr();
    memcpy(h->magic, PMT_MC_MAGIC, 8);
    h->version = PMT_MC_VERSION;
    h->header_size = PMT_MC_HEADER_SIZE;
    h->record_size = rs;
    h->flags = rs == PMT_MC_RECORD_NATIVE ? PMT_MC_FLAG_NATIVE : 0;
    h->pid = 7;
    h->endian = PMT_MC_ENDIAN;
    h->page_size = 4096;
    h->chunk_size = CB_CHUNK;
    h->data_offset = PMT_MC_HEADER_SIZE;
    len = PMT_MC_HEADER_SIZE;
    memset(&cb_d, 0, sizeof(cb_d));
}

static inline void
uv(uint64_t v)
{
    len = (size_t)(pmt_put_uv(buf + len, v) - buf);
}

static inline void
event(uint64_t seq, unsigned kind, uint64_t a, uint64_t b, uint32_t code, int32_t line,
      uint64_t ret)
{
    cb_room(PMT_MC_EVENT_MAX);
    size_t at = len++;
    unsigned byte = kind;
    if (seq - cb_d.seq == 1) {
        byte |= PMT_MC_SEQ_NEXT;
    }
    else {
        uv(pmt_zz(seq - cb_d.seq));
    }
    uv(pmt_zz(a - cb_d.addr));
    cb_d.seq = seq;
    cb_d.addr = a;
    if (pmt_mc_is_alloc(kind)) {
        uv(pmt_zz(b - cb_d.size));
        cb_d.size = b;
        if (code == cb_d.code && line == cb_d.line) {
            byte |= PMT_MC_SAME_SITE;
        }
        else {
            uv(pmt_zz((uint64_t)code - cb_d.code));
            uv(pmt_zz((uint64_t)(int64_t)line - (uint64_t)(int64_t)cb_d.line));
            cb_d.code = code;
            cb_d.line = line;
        }
    }
    else if (kind == PMT_MC_MUNMAP) {
        uv(b);
    }
    if (hdr()->flags & PMT_MC_FLAG_NATIVE) {
        uv(pmt_zz(ret - cb_d.native));
        cb_d.native = ret;
    }
    buf[at] = (uint8_t)byte;
}

static inline void
ev(uint64_t seq, unsigned kind, uint64_t a, uint64_t b, uint32_t code, int32_t line)
{
    event(seq, kind, a, b, code, line, 0);
}

/* An event with a native return address (a native capture). */
static inline void
native_ev(uint64_t seq, unsigned kind, uint64_t a, uint64_t b, uint64_t ret)
{
    event(seq, kind, a, b, 0, -1, ret);
}

static inline void
code(uint32_t id, const char *file, const char *name)
{
    size_t f = strlen(file) + 1, n = strlen(name) + 1;
    cb_room(32 + f + n);
    buf[len++] = PMT_MC_CODE;
    uv(id);
    uv(pmt_zz(1));
    uv(f + n);
    put(file, f);
    put(name, n);
}

/* A THREAD node: the root of one thread's stacks (a stacks capture). */
static inline void
thread_node(uint64_t id, uint64_t tid, const char *name)
{
    size_t n = strlen(name) + 1;
    cb_room(32 + n);
    buf[len++] = PMT_MC_THREAD;
    uv(id);
    uv(tid);
    uv(n);
    put(name, n);
}

/* A node of the stack tree (a stacks capture). */
static inline void
node(uint64_t id, uint64_t parent, uint32_t code_id, int32_t line)
{
    cb_room(48);
    buf[len++] = PMT_MC_STACK;
    uv(id);
    uv(parent);
    uv(code_id);
    uv(pmt_zz((uint64_t)(int64_t)line));
}

/* A MODULE definition: [lo, hi) loaded at bias. */
static inline void
module(uint64_t lo, uint64_t bias, uint64_t hi, const char *path)
{
    size_t n = strlen(path);
    cb_room(48 + n);
    buf[len++] = PMT_MC_MODULE;
    uv(lo);
    uv(bias);
    uv(hi);
    uv(n);
    put(path, n);
}

/* A TIME record: ns since the capture opened, RSS bytes, the next number. */
static inline void
time_rec(uint64_t ns, uint64_t rss, uint64_t seq)
{
    cb_room(32);
    buf[len++] = PMT_MC_TIME;
    uv(ns);
    uv(rss);
    uv(seq);
}

/* Write the capture built so far to a new file named from the template
 * path (XXXXXX): 0, or -1 if it could not be made. */
static inline int
cb_write_temp(char *path)
{
    int fd = mkstemp(path);
    if (fd < 0) {
        return -1;
    }
    ssize_t w = write(fd, buf, len);
    close(fd);
    return w == (ssize_t)len ? 0 : -1;
}

/* The process ended (the header's end fields). */
static inline void
end(void)
{
    hdr()->state = PMT_MC_STATE_EXIT;
}

#endif
