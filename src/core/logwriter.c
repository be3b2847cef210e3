/* logwriter.c: buffered append-only writer without stdio (see logwriter.h). */
#include "logwriter.h"

#include <errno.h>
#include <fcntl.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#ifndef O_NOFOLLOW
#define O_NOFOLLOW 0
#endif

static int
write_all(int fd, const char *p, size_t n)
{
    while (n > 0) {
        ssize_t k = write(fd, p, n);
        if (k < 0) {
            if (errno == EINTR) {
                continue;
            }
            return -1;
        }
        if (k == 0) {
            errno = EIO;
            return -1;
        }
        p += k;
        n -= (size_t)k;
    }
    return 0;
}

static int
owned(const pmt_logwriter *w)
{
    return w->fd >= 0 && w->owner == getpid();
}

void
pmt_lw_init(pmt_logwriter *w)
{
    w->fd = -1;
    w->owner = 0;
    w->err = 0;
    w->len = 0;
    w->cap = 0;
    w->buf = NULL;
    w->written = 0;
}

/* A buffer of cap bytes, every page of it written once so that it is
 * resident from here on: through a volatile pointer, so the compiler keeps
 * the stores (malloc + memset 0 may become calloc, which need not touch
 * fresh pages).  Stride 4096: every page whatever the page size (4 KiB or
 * more). */
static char *
alloc_touched(size_t cap)
{
    char *buf = malloc(cap);
    if (buf != NULL) {
        volatile char *p = buf;
        for (size_t i = 0; i < cap; i += 4096) {
            p[i] = 0;
        }
        p[cap - 1] = 0;
    }
    return buf;
}

int
pmt_lw_open_size(pmt_logwriter *w, const char *path, int flags, size_t bufsize)
{
    int oflags = O_WRONLY | O_CREAT | O_CLOEXEC | O_NOFOLLOW;
    if (flags & PMT_LW_EXCLUSIVE) {
        oflags |= O_EXCL;
    }
    oflags |= (flags & PMT_LW_APPEND) ? O_APPEND : O_TRUNC;
    pmt_lw_init(w);
    w->owner = getpid();
    /* The buffer first: no memory leaves no file behind. */
    size_t cap = bufsize ? bufsize : PMT_LW_BUFSIZE;
    char *buf = alloc_touched(cap);
    if (buf == NULL) {
        w->err = errno = ENOMEM;
        return -1;
    }
    int fd;
    do {
        fd = open(path, oflags, 0644);
    } while (fd < 0 && errno == EINTR);
    if (fd < 0) {
        int e = errno;
        free(buf);
        w->err = errno = e;
        return -1;
    }
    w->fd = fd;
    w->buf = buf;
    w->cap = cap;
    return 0;
}

int
pmt_lw_open(pmt_logwriter *w, const char *path, int flags)
{
    return pmt_lw_open_size(w, path, flags, PMT_LW_BUFSIZE);
}

void
pmt_lw_adopt(pmt_logwriter *w, int fd)
{
    pmt_lw_init(w);
    w->fd = fd;
    w->owner = getpid();
    w->buf = alloc_touched(PMT_LW_BUFSIZE);
    if (w->buf == NULL) {
        w->err = ENOMEM;
    }
    else {
        w->cap = PMT_LW_BUFSIZE;
    }
}

/* Write out the buffer if this process owns the writer (mine: owned(w), when
 * the caller knows it already: each asking is a getpid(2)). */
static void
drain_mine(pmt_logwriter *w, int mine)
{
    if (w->len == 0) {
        return;
    }
    if (w->err == 0 && mine) {
        if (write_all(w->fd, w->buf, w->len) != 0) {
            w->err = errno;
        }
        else {
            w->written += w->len;
        }
    }
    w->len = 0;
}

static void
drain(pmt_logwriter *w)
{
    drain_mine(w, w->len != 0 && w->err == 0 && owned(w));
}

void
pmt_lw_bytes(pmt_logwriter *w, const char *s, size_t n)
{
    if (w->err || n == 0) {
        return;
    }
    if (w->len + n > w->cap) {
        drain(w);
        if (n > w->cap) {
            if (w->err == 0 && owned(w)) {
                if (write_all(w->fd, s, n) != 0) {
                    w->err = errno;
                }
                else {
                    w->written += n;
                }
            }
            return;
        }
    }
    memcpy(w->buf + w->len, s, n);
    w->len += n;
}

void
pmt_lw_str(pmt_logwriter *w, const char *s)
{
    pmt_lw_bytes(w, s, strlen(s));
}

void
pmt_lw_char(pmt_logwriter *w, char c)
{
    if (w->len + 1 > w->cap) {
        drain(w);
        if (w->cap == 0) {
            return;     /* closed, or no buffer */
        }
    }
    if (w->err) {
        return;
    }
    w->buf[w->len++] = c;
}

int
pmt_fmt_int(char *out, int64_t v)
{
    char tmp[24];
    int n = 0;
    uint64_t u = v < 0 ? (uint64_t)0 - (uint64_t)v : (uint64_t)v;
    do {
        tmp[n++] = (char)('0' + (u % 10));
        u /= 10;
    } while (u);
    int k = 0;
    if (v < 0) {
        out[k++] = '-';
    }
    while (n) {
        out[k++] = tmp[--n];
    }
    return k;
}

static void
emit_padded(pmt_logwriter *w, const char *s, int n, int width)
{
    static const char spaces[] = "                                ";
    int pad = (width < 0 ? -width : width) - n;
    if (width > 0) {
        while (pad > 0) {
            int k = pad > 32 ? 32 : pad;
            pmt_lw_bytes(w, spaces, (size_t)k);
            pad -= k;
        }
    }
    pmt_lw_bytes(w, s, (size_t)n);
    if (width < 0) {
        while (pad > 0) {
            int k = pad > 32 ? 32 : pad;
            pmt_lw_bytes(w, spaces, (size_t)k);
            pad -= k;
        }
    }
}

void
pmt_lw_int(pmt_logwriter *w, int64_t v, int width)
{
    char tmp[24];
    emit_padded(w, tmp, pmt_fmt_int(tmp, v), width);
}

void
pmt_lw_sint(pmt_logwriter *w, int64_t v, int width)
{
    char tmp[24];
    int n = 0;
    if (v >= 0) {
        tmp[n++] = '+';
    }
    n += pmt_fmt_int(tmp + n, v);
    emit_padded(w, tmp, n, width);
}

void
pmt_lw_fixed(pmt_logwriter *w, double v, int decimals, int width)
{
    static const int64_t pow10[] = {1, 10, 100, 1000, 10000, 100000, 1000000,
                                    10000000, 100000000, 1000000000};
    char tmp[48];
    int n = 0;
    if (decimals < 0) {
        decimals = 0;
    }
    if (decimals > 9) {
        decimals = 9;
    }
    if (!isfinite(v) || fabs(v) > 9.0e17 / (double)pow10[decimals]) {
        const char *s = isnan(v) ? "nan" : (v < 0 ? "-inf" : "inf");
        emit_padded(w, s, (int)strlen(s), width);
        return;
    }
    int neg = v < 0;
    int64_t scaled = (int64_t)llround(fabs(v) * (double)pow10[decimals]);
    int64_t ip = scaled / pow10[decimals];
    int64_t fp = scaled % pow10[decimals];
    if (neg && scaled != 0) {
        tmp[n++] = '-';
    }
    n += pmt_fmt_int(tmp + n, ip);
    if (decimals) {
        tmp[n++] = '.';
        for (int d = decimals - 1; d >= 0; d--) {
            tmp[n + d] = (char)('0' + fp % 10);
            fp /= 10;
        }
        n += decimals;
    }
    emit_padded(w, tmp, n, width);
}

void
pmt_lw_pad(pmt_logwriter *w, const char *s, int width)
{
    emit_padded(w, s, (int)strlen(s), width);
}

int
pmt_lw_flush(pmt_logwriter *w)
{
    drain(w);
    if (w->err) {
        errno = w->err;
        return -1;
    }
    return 0;
}

int
pmt_lw_close(pmt_logwriter *w)
{
    if (w->fd >= 0) {
        if (owned(w)) {
            drain_mine(w, 1);
        }
        else {
            w->len = 0;     /* a forked child drops its copy of the parent's buffer */
        }
        if (close(w->fd) != 0 && w->err == 0 && errno != EINTR) {
            w->err = errno;
        }
        w->fd = -1;
    }
    free(w->buf);
    w->buf = NULL;
    w->cap = 0;
    w->len = 0;
    if (w->err) {
        errno = w->err;
        return -1;
    }
    return 0;
}

int
pmt_lw_error(const pmt_logwriter *w)
{
    return w->err;
}
