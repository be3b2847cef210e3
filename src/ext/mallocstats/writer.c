/* writer.c: run the interpreter's own allocator statistics writer into
 * memory (what sys._debugmallocstats() calls: _PyObject_DebugMallocStats()
 * then, after a blank line if that returned true, _PyObject_DebugTypeStats()),
 * through an fmemopen(3) stream over a raw-malloc buffer.  File descriptor 2
 * is never touched and no Python object is created, except on an interpreter
 * that hides its free-list writer (CPython 3.13: see type_stats_via_sys).
 */
#define PY_SSIZE_T_CLEAN
#include <Python.h>

#include <errno.h>
#include <stdio.h>
#include <string.h>
#include <sys/mman.h>
#include <unistd.h>

#include "mallocstats_ext.h"

#define INITIAL_TEXT_CAP (32 * 1024)

/* pymalloc's object-domain allocator, recorded at import if the writer then
 * reported pymalloc.  The writer decides whether pymalloc is in use by
 * comparing the object allocator with pymalloc's functions, so while a hook
 * is installed (tracemalloc tracing) sys._debugmallocstats() prints no
 * pymalloc section at all.  The writer allocates nothing, so for the length
 * of its call we present pymalloc's own allocator and put the hook back. */
static PyMemAllocatorEx pymalloc_allocator;
static int have_pymalloc_allocator;

int
msx_write_stats(FILE *f)
{
    int r = _PyObject_DebugMallocStats(f);
    if (r && !have_pymalloc_allocator) {
        /* pymalloc is the object allocator right now (nothing hooked):
         * remember it (the import may have happened under tracemalloc). */
        PyMem_GetAllocator(PYMEM_DOMAIN_OBJ, &pymalloc_allocator);
        have_pymalloc_allocator = 1;
    }
    if (!r && have_pymalloc_allocator) {
        PyMemAllocatorEx current;
        PyMem_GetAllocator(PYMEM_DOMAIN_OBJ, &current);
        if (memcmp(&current, &pymalloc_allocator, sizeof(current)) != 0) {
            PyMem_SetAllocator(PYMEM_DOMAIN_OBJ, &pymalloc_allocator);
            r = _PyObject_DebugMallocStats(f);
            PyMem_SetAllocator(PYMEM_DOMAIN_OBJ, &current);
        }
    }
    return r;
}

int
msx_record_pymalloc_allocator(void)
{
    FILE *f = fopen("/dev/null", "w");
    if (f == NULL) {
        PyErr_SetFromErrnoWithFilename(PyExc_OSError, "/dev/null");
        return -1;
    }
    if (_PyObject_DebugMallocStats(f)) {
        PyMem_GetAllocator(PYMEM_DOMAIN_OBJ, &pymalloc_allocator);
        have_pymalloc_allocator = 1;
    }
    fclose(f);
    return 0;
}

/* CPython 3.13 builds _PyObject_DebugTypeStats but does not export it: the
 * free-list lines are then taken from sys._debugmallocstats() itself, whose
 * stderr is pointed at a memory file for the length of the call (the GIL is
 * held, so no Python thread writes to stderr meanwhile; descriptor 2 is put
 * back before returning).  Only its free-list lines ("N free ...Objects *
 * B bytes each = T") are copied to f; the allocator section comes from our
 * own writer call as on every other version.  0, or -1 with errno set. */
static int
type_stats_via_sys(FILE *f)
{
    PyObject *fn = PySys_GetObject("_debugmallocstats");   /* borrowed */
    if (fn == NULL) {
        errno = ENOSYS;
        return -1;
    }
    int mfd = memfd_create("pymemtrace-mallocstats", MFD_CLOEXEC);
    if (mfd < 0) {
        return -1;
    }
    fflush(stderr);
    int saved = dup(2);
    if (saved < 0 || dup2(mfd, 2) < 0) {
        int e = errno;
        if (saved >= 0) {
            close(saved);
        }
        close(mfd);
        errno = e;
        return -1;
    }
    PyObject *r = PyObject_CallNoArgs(fn);
    fflush(stderr);
    int restore = dup2(saved, 2);
    close(saved);
    Py_XDECREF(r);
    if (r == NULL) {
        PyErr_Clear();
    }
    if (restore < 0 || r == NULL) {
        close(mfd);
        errno = EIO;
        return -1;
    }
    off_t end = lseek(mfd, 0, SEEK_END);
    char *text = end > 0 ? mmap(NULL, (size_t)end, PROT_READ, MAP_PRIVATE, mfd, 0) : NULL;
    close(mfd);
    if (end <= 0 || text == MAP_FAILED) {
        errno = end < 0 ? errno : EIO;
        return -1;
    }
    for (const char *p = text, *stop = text + end; p < stop;) {
        const char *nl = memchr(p, '\n', (size_t)(stop - p));
        size_t n = nl ? (size_t)(nl - p) + 1 : (size_t)(stop - p);
        if (memmem(p, n, " free ", 6) != NULL && memmem(p, n, " bytes each", 11) != NULL) {
            fwrite(p, 1, n, f);
        }
        p += n;
    }
    munmap(text, (size_t)end);
    return 0;
}

/* Into memory (see mallocstats_ext.h). */
int
msx_run_writer(char **buf, size_t *cap, size_t *len, int *pymalloc)
{
    for (;;) {
        if (*buf == NULL || *cap < INITIAL_TEXT_CAP) {
            size_t want = *cap < INITIAL_TEXT_CAP ? INITIAL_TEXT_CAP : *cap;
            char *nb = PyMem_RawRealloc(*buf, want);
            if (nb == NULL) {
                errno = ENOMEM;
                return -1;
            }
            *buf = nb;
            *cap = want;
        }
        FILE *f = fmemopen(*buf, *cap, "w");
        if (f == NULL) {
            return -1;
        }
        int r = msx_write_stats(f);
        if (r) {
            fputc('\n', f);
        }
        int type_err = 0;
        if (!pmt_debug_type_stats(f)) {
            type_err = type_stats_via_sys(f);
        }
        int flush_err = fflush(f);
        long pos = ftell(f);
        int stream_err = ferror(f);
        if (fclose(f) != 0 && !flush_err) {
            flush_err = -1;
        }
        if (type_err < 0) {
            return -1;
        }
        if (pos >= 0 && (size_t)pos + 1 < *cap && !flush_err && !stream_err) {
            *len = (size_t)pos;
            *pymalloc = r;
            return 0;
        }
        if (*cap > ((size_t)1 << 28)) {
            errno = EFBIG;
            return -1;
        }
        /* Possibly truncated: grow and write again. */
        char *nb = PyMem_RawRealloc(*buf, *cap * 2);
        if (nb == NULL) {
            errno = ENOMEM;
            return -1;
        }
        *buf = nb;
        *cap *= 2;
    }
}

