/* cpmt_rowbench.c: how fast the cPyMemTrace row writer (src/core/cpmtfmt.c)
 * turns events into log text, against what memory and the kernel do with the
 * same bytes.
 *
 * Formats N rows of a Profile(0)-like stream (calls and returns of a few
 * functions, C calls, RSS moving now and then) through a pmt_logwriter into
 * a file (default /dev/null), then again into a file on tmpfs, and measures
 * references for the same bytes: memcpy through a buffer of the writer's size
 * (from cache), memset and memcpy of a buffer much larger than the last-level
 * cache (DRAM), and write(2) of them in the writer's 64 KiB pieces to a file
 * on tmpfs.  Prints one JSON line (CPU time of this process, system time
 * included).  Built and run by bench/bench_cpmt_rows.py.
 *
 * Usage: cpmt_rowbench [rows] [path] [tmpfs-dir]   (tmpfs-dir: /dev/shm; "-": format
 * into path only, no references: what callgrind counts)
 */
#include <fcntl.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "cpmtlog.h"
#include "logwriter.h"

enum { CHUNK = 65536 };
#define DRAM_BYTES ((size_t)256 << 20)     /* 8 times this machine's 32 MiB L3 */

static double
now_s(void)
{
    struct timespec ts;
    if (clock_gettime(CLOCK_PROCESS_CPUTIME_ID, &ts) != 0) {
        return 0;
    }
    return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

/* Format rows rows into path; the bytes written go to *bytes.  Returns the
 * CPU seconds, or -1 on an error (reported). */
static double
format_rows(long rows, const char *path, long long *bytes)
{
    static const char *const files[] = {"/home/user/project/app/models.py", "json/decoder.py"};
    static const char *const funcs[] = {"create_string", "__init__", "depth", "append", "loads"};
    static const int whats[] = {0, 3, 4, 6};
    size_t file_len[2], func_len[5];
    for (int k = 0; k < 5; k++) {
        func_len[k] = strlen(funcs[k]);
        file_len[k & 1] = strlen(files[k & 1]);
    }
    static pmt_logwriter w;
    if (pmt_lw_open(&w, path, 0) != 0) {
        perror(path);
        return -1;
    }
    pmt_cpmt_fmtcache cache;
    memset(&cache, 0, sizeof cache);
    int64_t rss = 9101312, last_rss = rss;
    double t0 = now_s();
    for (long i = 0; i < rows; i++) {
        pmt_cpmt_row r;
        r.next = 1;
        r.event = i;
        r.d_event = 1;
        r.clock_ns = 66718000 + i * 350;
        r.what = whats[i & 3];
        r.file = files[(i >> 4) & 1];
        r.file_len = file_len[(i >> 4) & 1];
        r.line = 9 + (int)((i >> 2) % 40);
        r.function = funcs[(i >> 2) % 5];
        r.function_len = func_len[(i >> 2) % 5];
        if (i % 97 == 0) {
            rss += 4096;
        }
        r.rss = rss;
        r.d_rss = rss - last_rss;
        last_rss = rss;
        pmt_cpmt_write_row(&w, &r, &cache);
    }
    if (pmt_lw_flush(&w) != 0) {
        perror(path);
        return -1;
    }
    double t = now_s() - t0;
    *bytes = (long long)w.written;
    if (pmt_lw_close(&w) != 0) {
        perror(path);
        return -1;
    }
    return t;
}

static void
keep(void *p)
{
    __asm__ __volatile__("" : : "r"(p) : "memory");
}

/* write(2) of bytes bytes in CHUNK pieces to a new file in dir (removed
 * after).  Returns the CPU seconds, or -1 on an error (reported). */
static double
write_file(const char *dir, long long bytes)
{
    static char chunk[CHUNK];
    char path[4096];
    snprintf(path, sizeof path, "%s/cpmt_rowbench.XXXXXX", dir);
    int fd = mkstemp(path);
    if (fd < 0) {
        perror(path);
        return -1;
    }
    memset(chunk, 'x', sizeof chunk);
    double t0 = now_s();
    for (long long done = 0; done < bytes; done += CHUNK) {
        size_t n = bytes - done < CHUNK ? (size_t)(bytes - done) : CHUNK;
        if (write(fd, chunk, n) != (ssize_t)n) {
            perror(path);
            close(fd);
            unlink(path);
            return -1;
        }
    }
    double t = now_s() - t0;
    if (close(fd) != 0 || unlink(path) != 0) {
        perror(path);
        return -1;
    }
    return t;
}

int
main(int argc, char **argv)
{
    long rows = argc > 1 ? atol(argv[1]) : 1000000;
    const char *path = argc > 2 ? argv[2] : "/dev/null";
    const char *tmpfs = argc > 3 ? argv[3] : "/dev/shm";
    if (rows <= 0) {
        fprintf(stderr, "cpmt_rowbench: rows must be a positive number, not %s\n", argv[1]);
        return 2;
    }
    long long bytes, bytes2;
    double t_fmt = format_rows(rows, path, &bytes);
    if (t_fmt >= 0 && strcmp(tmpfs, "-") == 0) {
        printf("{\"rows\": %ld, \"bytes\": %lld}\n", rows, bytes);
        return 0;
    }
    char tpath[4096];
    snprintf(tpath, sizeof tpath, "%s/cpmt_rowbench.%ld.log", tmpfs, (long)getpid());
    double t_fmt_tmpfs = t_fmt < 0 ? -1 : format_rows(rows, tpath, &bytes2);
    if (t_fmt_tmpfs < 0 || unlink(tpath) != 0) {
        perror(tpath);
        return 1;
    }
    /* memcpy from cache: the same bytes through a buffer of the writer's size */
    static char src[CHUNK], dst[CHUNK];
    memset(src, 'x', sizeof src);
    double t1 = now_s();
    for (long long done = 0; done < bytes; done += CHUNK) {
        memcpy(dst, src, CHUNK);
        keep(dst);
    }
    double t_copy = now_s() - t1;
    /* DRAM: memset, then memcpy, of buffers much larger than the LLC (their
     * pages faulted in first, outside the timing) */
    char *big = malloc(DRAM_BYTES), *big2 = malloc(DRAM_BYTES);
    if (big == NULL || big2 == NULL) {
        perror("malloc");
        return 1;
    }
    memset(big, 1, DRAM_BYTES);
    memset(big2, 2, DRAM_BYTES);
    double t2 = now_s();
    memset(big, 'x', DRAM_BYTES);
    keep(big);
    double t_set = now_s() - t2;
    t2 = now_s();
    memcpy(big2, big, DRAM_BYTES);
    keep(big2);
    double t_dcopy = now_s() - t2;
    free(big);
    free(big2);
    double t_write = write_file(tmpfs, bytes);
    if (t_write < 0) {
        return 1;
    }
    double mb = (double)bytes / 1e6, dmb = (double)DRAM_BYTES / 1e6;
    printf("{\"rows\": %ld, \"bytes\": %lld, \"bytes_per_row\": %.1f, \"ns_per_row\": %.1f, "
           "\"format_MB_s\": %.0f, \"format_to_tmpfs_MB_s\": %.0f, \"memcpy_cache_MB_s\": %.0f, "
           "\"memcpy_dram_MB_s\": %.0f, \"memset_dram_MB_s\": %.0f, \"write_tmpfs_MB_s\": %.0f, "
           "\"format_vs_memset_dram\": %.3f, \"format_vs_write_tmpfs\": %.3f}\n",
           rows, bytes, (double)bytes / (double)rows, t_fmt * 1e9 / (double)rows, mb / t_fmt,
           mb / t_fmt_tmpfs, mb / t_copy, dmb / t_dcopy, dmb / t_set, mb / t_write,
           (dmb / t_set) > 0 ? (mb / t_fmt) / (dmb / t_set) : 0, (mb / t_fmt) / (mb / t_write));
    return 0;
}
