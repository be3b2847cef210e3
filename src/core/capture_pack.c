/* capture_pack.c: packed `pymemtrace malloc` captures (zlib).
 *
 * A capture is written live as mapped chunks with zero tails
 * (capture_format.h); after the run, `pymemtrace malloc` packs it: the
 * header stays, flagged PMT_MC_FLAG_PACKED with the inflated length, and
 * each chunk of the bytes from data_offset on becomes its own zlib stream,
 * after an index of their lengths.  Packing writes a new file beside the
 * capture and renames it over, so a capture is always whole: packed, or as
 * it was written.  The reader inflates one chunk at a time (the merge one
 * per thread running); a stream cut short gives what it holds.
 */
#define _GNU_SOURCE 1
#include "capture_read.h"

#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>
#include <zlib.h>

/* zlib never inflates more than about 1032 bytes out of one: a larger
 * packed_len is corrupt. */
#define MAX_RATIO 1100u

static size_t
clamp_uint(size_t n)
{
    return n > (1u << 30) ? (1u << 30) : n;     /* zlib counts in uInt */
}

static uint32_t
u32_at(const uint8_t *p)
{
    uint32_t v;
    memcpy(&v, p, sizeof(v));
    return v;
}

int
pmt_capture_packed_chunks(pmt_capture *c,
                          int (*each)(pmt_capture *, uint64_t, uint32_t, uint32_t, void *),
                          void *ctx)
{
    const pmt_mc_header *h = &c->header;
    size_t in_len = c->len - PMT_MC_HEADER_SIZE;
    uint64_t cs = h->chunk_size;
    uint64_t want = (h->packed_len + cs - 1) / cs;
    if (h->packed_len > (uint64_t)in_len * MAX_RATIO + 4096 || in_len < 4 ||
        u32_at(c->data + PMT_MC_HEADER_SIZE) != want) {
        snprintf(c->error, sizeof(c->error),
                 "corrupt packed capture (index of %llu chunks for %llu bytes in %zu)",
                 (unsigned long long)(in_len < 4 ? 0 : u32_at(c->data + PMT_MC_HEADER_SIZE)),
                 (unsigned long long)h->packed_len, in_len);
        return -1;
    }
    const uint8_t *index = c->data + PMT_MC_HEADER_SIZE + 4;
    uint64_t off = PMT_MC_HEADER_SIZE + 4 + 4 * want;
    for (uint64_t k = 0; k < want; k++) {
        uint32_t len = (uint32_t)(k + 1 < want ? cs : h->packed_len - k * cs);
        uint64_t at = PMT_MC_HEADER_SIZE + 4 + 4 * k;
        uint32_t src = at + 4 <= c->len ? u32_at(index + 4 * k) : 0;
        if (off >= c->len || at + 4 > c->len) {
            c->trailing_bytes += len;   /* cut short before this chunk */
            continue;
        }
        uint32_t have = src > c->len - off ? (uint32_t)(c->len - off) : src;
        if (each(c, off, have, len, ctx) < 0) {
            return -1;
        }
        off += src;
    }
    return 0;
}

size_t
pmt_capture_chunk_bytes(const pmt_capture *c, uint64_t off, uint32_t src_len, uint32_t len,
                        uint8_t *buf, const uint8_t **out)
{
    if (!(c->header.flags & PMT_MC_FLAG_PACKED)) {
        *out = c->data + off;
        return src_len;
    }
    *out = buf;
    z_stream z;
    memset(&z, 0, sizeof(z));
    if (inflateInit(&z) != Z_OK) {
        return 0;
    }
    z.next_in = (Bytef *)(uintptr_t)(c->data + off);
    z.avail_in = src_len;
    z.next_out = buf;
    z.avail_out = len;
    (void)inflate(&z, Z_FINISH);    /* the end, corrupt or cut short: keep what came out */
    size_t done = len - z.avail_out;
    inflateEnd(&z);
    pmt_capture_drop_pages(c, c->data + off, src_len);
    return done;
}

static int
write_all(int fd, const void *buf, size_t n)
{
    const char *p = buf;
    while (n) {
        ssize_t w = write(fd, p, n);
        if (w < 0 && errno == EINTR) {
            continue;
        }
        if (w < 0) {
            return -1;
        }
        p += w;
        n -= (size_t)w;
    }
    return 0;
}

/* Deflate data[0..n) into fd as one zlib stream; *out_len its length. */
static int
deflate_to(int fd, const uint8_t *data, size_t n, int level, uint32_t *out_len)
{
    z_stream z;
    memset(&z, 0, sizeof(z));
    if (deflateInit(&z, level) != Z_OK) {
        errno = ENOMEM;
        return -1;
    }
    unsigned char out[1 << 16];
    uint64_t total = 0;
    int rc;
    z.next_in = (Bytef *)(uintptr_t)data;
    z.avail_in = (uInt)clamp_uint(n);    /* a chunk: at most 64 MiB */
    do {
        z.next_out = out;
        z.avail_out = sizeof(out);
        rc = deflate(&z, Z_FINISH);
        size_t got = sizeof(out) - z.avail_out;
        total += got;
        if (rc == Z_STREAM_ERROR || total > UINT32_MAX || write_all(fd, out, got) < 0) {
            deflateEnd(&z);
            if (rc == Z_STREAM_ERROR || total > UINT32_MAX) {
                errno = EIO;
            }
            return -1;
        }
    } while (rc != Z_STREAM_END);
    deflateEnd(&z);
    *out_len = (uint32_t)total;
    return 0;
}

/* The index (a count, then each chunk's stream length), then each chunk of
 * body[0..n) deflated alone. */
static int
deflate_chunks(int fd, const uint8_t *body, size_t n, size_t cs, int level)
{
    uint64_t k = (n + cs - 1) / cs;
    if (k > UINT32_MAX - 1) {
        errno = EFBIG;
        return -1;
    }
    uint32_t *index = calloc(k + 1, sizeof(uint32_t));
    if (!index) {
        errno = ENOMEM;
        return -1;
    }
    index[0] = (uint32_t)k;
    int rc = write_all(fd, index, (k + 1) * sizeof(uint32_t));
    for (uint64_t i = 0; i < k && rc == 0; i++) {
        size_t at = (size_t)(i * cs);
        rc = deflate_to(fd, body + at, n - at < cs ? n - at : cs, level, &index[i + 1]);
    }
    if (rc == 0 && pwrite(fd, index, (k + 1) * sizeof(uint32_t), PMT_MC_HEADER_SIZE) !=
                       (ssize_t)((k + 1) * sizeof(uint32_t))) {
        rc = -1;
    }
    free(index);
    return rc;
}

int
pmt_capture_pack(const char *path, int level, char *err, size_t errlen)
{
    pmt_capture_file f;
    if (pmt_capture_file_load(path, &f, err, errlen) < 0) {
        return -1;
    }
    pmt_mc_header h;
    if (f.len < sizeof(h)) {
        snprintf(err, errlen, "%s: not a whole capture header", path);
        pmt_capture_file_unload(&f);
        return -1;
    }
    memcpy(&h, f.data, sizeof(h));
    if (memcmp(h.magic, PMT_MC_MAGIC, 8) != 0 || h.version != PMT_MC_VERSION ||
        h.endian != PMT_MC_ENDIAN || h.data_offset < sizeof(h)) {
        snprintf(err, errlen, "%s: not a version %d capture", path, PMT_MC_VERSION);
        pmt_capture_file_unload(&f);
        return -1;
    }
    if (h.flags & PMT_MC_FLAG_PACKED) {
        pmt_capture_file_unload(&f);
        return 0;
    }
    size_t body = f.len > h.data_offset ? f.len - h.data_offset : 0;
    h.flags |= PMT_MC_FLAG_PACKED;
    h.packed_len = body;
    char tmp[4096];
    if ((size_t)snprintf(tmp, sizeof(tmp), "%s.packing-XXXXXX", path) >= sizeof(tmp)) {
        snprintf(err, errlen, "%s: path too long", path);
        pmt_capture_file_unload(&f);
        return -1;
    }
    int fd = mkstemp(tmp);
    int rc = -1;
    if (fd < 0) {
        snprintf(err, errlen, "cannot pack %s: %s", path, strerror(errno));
    }
    else if (fchmod(fd, 0644) != 0 || write_all(fd, &h, sizeof(h)) < 0 ||
             deflate_chunks(fd, f.data + h.data_offset, body, h.chunk_size, level) < 0) {
        snprintf(err, errlen, "cannot pack %s: %s (left as it was)", path, strerror(errno));
    }
    else if (rename(tmp, path) != 0) {
        snprintf(err, errlen, "cannot pack %s: %s (left as it was)", path, strerror(errno));
    }
    else {
        rc = 0;
    }
    if (fd >= 0) {
        close(fd);
        if (rc < 0) {
            unlink(tmp);
        }
    }
    pmt_capture_file_unload(&f);
    return rc;
}
