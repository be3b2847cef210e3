/* cpmt_rowbench.c: how fast the cPyMemTrace row writer (src/core/cpmtlog.c)
 * turns events into log text, against copying the same bytes (memory speed).
 *
 * Formats N rows of a Profile(0)-like stream (calls and returns of a few
 * functions, C calls, RSS moving now and then) through a pmt_logwriter into
 * a file (default /dev/null), then copies the same number of bytes with
 * memcpy, and prints one JSON line: rows, bytes, bytes per row, MB/s of each
 * and their ratio.  Built and run by bench/bench_cpmt_rows.py.
 *
 * Usage: cpmt_rowbench [rows] [path]
 */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "cpmtlog.h"
#include "logwriter.h"

static double
now_s(void)
{
    struct timespec ts;
    if (clock_gettime(CLOCK_PROCESS_CPUTIME_ID, &ts) != 0) {
        return 0;
    }
    return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

int
main(int argc, char **argv)
{
    long rows = argc > 1 ? atol(argv[1]) : 1000000;
    const char *path = argc > 2 ? argv[2] : "/dev/null";
    if (rows <= 0) {
        fprintf(stderr, "cpmt_rowbench: rows must be a positive number, not %s\n", argv[1]);
        return 2;
    }
    static const char *const files[] = {"/home/user/project/app/models.py", "json/decoder.py"};
    static const char *const funcs[] = {"create_string", "__init__", "depth", "append", "loads"};
    static const int whats[] = {0, 3, 4, 6};
    pmt_logwriter w;
    if (pmt_lw_open(&w, path, 0) != 0) {
        perror(path);
        return 1;
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
        const char *f = files[(i >> 4) & 1];
        const char *fn = funcs[(i >> 2) % 5];
        r.file = f;
        r.file_len = strlen(f);
        r.line = 9 + (int)((i >> 2) % 40);
        r.function = fn;
        r.function_len = strlen(fn);
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
        return 1;
    }
    double t_fmt = now_s() - t0;
    long long bytes = (long long)w.written;
    if (pmt_lw_close(&w) != 0) {
        perror(path);
        return 1;
    }
    /* Memory speed: copy the same bytes through a buffer of the writer's size. */
    enum { CHUNK = 65536 };
    static char src[CHUNK], dst[CHUNK];
    memset(src, 'x', sizeof src);
    double t1 = now_s();
    for (long long done = 0; done < bytes; done += CHUNK) {
        memcpy(dst, src, CHUNK);
        __asm__ __volatile__("" : : "r"(dst) : "memory");
    }
    double t_copy = now_s() - t1;
    double mb = (double)bytes / 1e6;
    printf("{\"rows\": %ld, \"bytes\": %lld, \"bytes_per_row\": %.1f, \"format_MB_s\": %.0f, "
           "\"ns_per_row\": %.1f, \"memcpy_MB_s\": %.0f, \"format_vs_memcpy\": %.3f}\n",
           rows, bytes, (double)bytes / (double)rows, mb / t_fmt, t_fmt * 1e9 / (double)rows,
           mb / t_copy, t_copy / t_fmt);
    return 0;
}
