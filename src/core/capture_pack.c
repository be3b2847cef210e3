/* capture_pack.c: packed `pymemtrace malloc` captures (zlib).
 *
 * A capture is written live as mapped chunks with zero tails
 * (capture_format.h); after the run, `pymemtrace malloc` packs it: the
 * header stays, flagged PMT_MC_FLAG_PACKED with the inflated length, and
 * the bytes from data_offset on become one zlib stream.  Packing writes a
 * new file beside the capture and renames it over, so a capture is always
 * whole: packed, or as it was written.  The reader inflates a packed
 * capture into memory; a stream cut short gives what it holds.
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
 * packed_len is corrupt (and is not allocated). */
#define MAX_RATIO 1100u

static size_t
clamp_uint(size_t n)
{
    return n > (1u << 30) ? (1u << 30) : n;     /* zlib counts in uInt */
}

int
pmt_capture_inflate(pmt_capture *c, const uint8_t **area, size_t *n)
{
    const pmt_mc_header *h = &c->header;
    size_t in_len = c->len - PMT_MC_HEADER_SIZE;
    if (h->packed_len > (uint64_t)in_len * MAX_RATIO + 4096 || h->packed_len > SIZE_MAX / 2) {
        snprintf(c->error, sizeof(c->error),
                 "corrupt packed capture (inflated length %llu from %zu bytes)",
                 (unsigned long long)h->packed_len, in_len);
        return -1;
    }
    size_t out_len = (size_t)h->packed_len;
    c->inflated = malloc(out_len ? out_len : 1);
    z_stream z;
    memset(&z, 0, sizeof(z));
    if (!c->inflated || inflateInit(&z) != Z_OK) {
        snprintf(c->error, sizeof(c->error), "out of memory inflating the capture");
        return -1;
    }
    const uint8_t *in = c->data + PMT_MC_HEADER_SIZE;
    size_t used = 0, done = 0;
    for (;;) {
        z.next_in = (Bytef *)(uintptr_t)(in + used);
        z.avail_in = (uInt)clamp_uint(in_len - used);
        z.next_out = c->inflated + done;
        z.avail_out = (uInt)clamp_uint(out_len - done);
        uInt ai = z.avail_in, ao = z.avail_out;
        int rc = inflate(&z, Z_NO_FLUSH);
        used += ai - z.avail_in;
        done += ao - z.avail_out;
        if (rc == Z_STREAM_END || (rc != Z_OK && rc != Z_BUF_ERROR) ||
            (ai == z.avail_in && ao == z.avail_out)) {
            break;  /* the end, corrupt from here, or cut short: keep what came out */
        }
    }
    inflateEnd(&z);
    c->trailing_bytes += out_len - done;
    *area = c->inflated;
    *n = done;
    return 0;
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

/* Deflate data[0..n) into fd. */
static int
deflate_to(int fd, const uint8_t *data, size_t n, int level)
{
    z_stream z;
    memset(&z, 0, sizeof(z));
    if (deflateInit(&z, level) != Z_OK) {
        errno = ENOMEM;
        return -1;
    }
    unsigned char out[1 << 16];
    size_t used = 0;
    int rc;
    do {
        z.next_in = (Bytef *)(uintptr_t)(data + used);
        z.avail_in = (uInt)clamp_uint(n - used);
        uInt ai = z.avail_in;
        int flush = n - used <= (1u << 30) ? Z_FINISH : Z_NO_FLUSH;
        do {
            z.next_out = out;
            z.avail_out = sizeof(out);
            rc = deflate(&z, flush);
            if (rc == Z_STREAM_ERROR || write_all(fd, out, sizeof(out) - z.avail_out) < 0) {
                deflateEnd(&z);
                if (rc == Z_STREAM_ERROR) {
                    errno = EIO;
                }
                return -1;
            }
        } while (z.avail_out == 0);
        used += ai - z.avail_in;
    } while (rc != Z_STREAM_END);
    deflateEnd(&z);
    return 0;
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
             deflate_to(fd, f.data + h.data_offset, body, level) < 0) {
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
