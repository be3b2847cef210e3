/* capture_file.c: load a capture file for the reader (mapped, or read
 * where mapping is unsafe: tmpfs), unload it, and let the kernel drop the
 * pages of a mapped capture already read (see capture_read.h). */
#define _GNU_SOURCE 1
#include "capture_read.h"

#include <errno.h>
#include <fcntl.h>
#include <linux/magic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <sys/vfs.h>
#include <unistd.h>

void
pmt_capture_drop_pages(const pmt_capture *c, const uint8_t *p, size_t n)
{
    if (!c->file_mapped || n == 0) {
        return;
    }
    uintptr_t page = (uintptr_t)sysconf(_SC_PAGESIZE);
    uintptr_t lo = ((uintptr_t)p + page - 1) & ~(page - 1);
    uintptr_t hi = ((uintptr_t)p + n) & ~(page - 1);
    if (hi > lo) {
        /* a private read-only file mapping: the pages come back from the file
         * if touched again; failure only leaves them mapped */
        (void)madvise((void *)lo, hi - lo, MADV_DONTNEED);
    }
}

int
pmt_capture_file_load(const char *path, pmt_capture_file *f, char *err, size_t errlen)
{
    memset(f, 0, sizeof(*f));
    int fd = open(path, O_RDONLY | O_CLOEXEC);
    if (fd < 0) {
        snprintf(err, errlen, "cannot open %s: %s", path, strerror(errno));
        return -1;
    }
    struct stat st;
    if (fstat(fd, &st) < 0) {
        snprintf(err, errlen, "cannot stat %s: %s", path, strerror(errno));
        close(fd);
        return -1;
    }
    if (!S_ISREG(st.st_mode)) {
        snprintf(err, errlen, "%s is not a regular file", path);
        close(fd);
        return -1;
    }
    size_t len = (size_t)st.st_size;
    /* On tmpfs a read fault on a hole (a punched chunk tail or checkpoint
     * slot) allocates a page: on a full one that is SIGBUS.  read() gives
     * zeros there. */
    struct statfs sfs;
    int tmpfs = fstatfs(fd, &sfs) == 0 && sfs.f_type == TMPFS_MAGIC;
    if (len > 0 && !tmpfs) {
        /* map it: a capture can be bigger than we would like to copy (a capture
         * still being written only grows; one truncated under us would fault) */
        void *m = mmap(NULL, len, PROT_READ, MAP_PRIVATE, fd, 0);
        if (m != MAP_FAILED) {
            close(fd);
            f->data = m;
            f->len = len;
            f->mapped = 1;
            return 0;
        }
    }
    uint8_t *buf = malloc(len ? len : 1);
    if (!buf) {
        snprintf(err, errlen, "out of memory");
        close(fd);
        return -1;
    }
    size_t got = 0;
    while (got < len) {
        ssize_t n = read(fd, buf + got, len - got);
        if (n < 0 && errno == EINTR) {
            continue;
        }
        if (n < 0) {
            snprintf(err, errlen, "cannot read %s: %s", path, strerror(errno));
            free(buf);
            close(fd);
            return -1;
        }
        if (n == 0) {
            break;  /* shrank under us: read what there is */
        }
        got += (size_t)n;
    }
    close(fd);
    f->data = buf;
    f->len = got;
    return 0;
}

void
pmt_capture_file_unload(pmt_capture_file *f)
{
    if (f->mapped) {
        munmap(f->data, f->len);
    }
    else {
        free(f->data);
    }
    f->data = NULL;
    f->len = 0;
}
