/* procjson.h: a process sample as the JSON object of the seed's log format,
 * formatted into a caller's buffer without stdio or allocation, for the
 * Python logging path and for the JSON-lines file written through logwriter. */
#ifndef PMT_PROCJSON_H
#define PMT_PROCJSON_H

#include <stddef.h>
#include <stdint.h>

#include "procsample.h"

#ifdef __cplusplus
extern "C" {
#endif

/* Caches the local-time text of the current second. */
typedef struct pmt_tscache {
    int64_t sec;
    char text[20];          /* "YYYY-MM-DD HH:MM:SS" */
} pmt_tscache;

#define PMT_TS_LEN 26       /* "YYYY-MM-DD HH:MM:SS.ffffff" */

/* Format t (seconds since the epoch) as local time with microseconds into
 * out[PMT_TS_LEN] (no NUL).  localtime_r is called once per second. */
void pmt_fmt_timestamp(pmt_tscache *c, double t, char *out);

/* Seconds as a decimal with up to 6 places, at least one: 0.0, 0.34, 5.4078. */
int pmt_fmt_seconds(char *out, double v);

/* Append the JSON string literal of s[0:n] (UTF-8 passed through, control
 * characters, quote and backslash escaped) to out; returns the length the
 * literal needs, writing only what fits in cap. */
size_t pmt_json_string(char *out, size_t cap, const char *s, size_t n);

/* Which optional keys pmt_ps_json writes. */
#define PMT_JSON_EXTRA 0x1      /* shared, text, data, num_threads */
#define PMT_JSON_NPROCS 0x2     /* nprocs (process trees) */

/* Format s as one JSON object (no newline) into out: the seed's keys
 * (timestamp, memory_info {rss, vms, pfaults, pageins}, cpu_times {user,
 * system, children_user, children_system}, elapsed_time, pid) and the
 * optional ones, then "event" if event is not NULL, then "label" if label is
 * not NULL.  Returns the length the whole object needs; only what fits in cap
 * is written, so a caller retries with a bigger buffer if the result > cap. */
size_t pmt_ps_json(char *out, size_t cap, const pmt_procsample *s,
                   pmt_tscache *tc, int keys, const char *event,
                   const char *label, size_t label_len);


/* What a STOP record adds to the last sample (pmt_stop_json). */
typedef struct pmt_stopinfo {
    const char *event;          /* "event" value, or NULL */
    int32_t pid;                /* the process (when there is no sample) */
    double wall;                /* the time (when there is no sample) */
    const char *gone_key;       /* no sample: the key ("error", "reason") ... */
    const char *gone_text;      /* ... and its text ("process exited") */
    int has_exit_code;
    int exit_code;
    int64_t rss_max;            /* the highest RSS sampled, -1: none */
    int64_t peak;               /* the kernel's peak RSS, -1: unknown */
    const char *peak_source;    /* where peak comes from ("VmHWM", ...) */
} pmt_stopinfo;

/* The STOP record: the sample s (or, if s is NULL because the process has
 * gone, only timestamp, pid and gone_key), then event, label, exit_code,
 * "rss_max_sampled", "rss_peak_kernel" and "rss_peak_source" when known.
 * Returns the length needed, writing what fits, as pmt_ps_json. */
size_t pmt_stop_json(char *out, size_t cap, const pmt_procsample *s,
                     pmt_tscache *tc, int keys, const pmt_stopinfo *info,
                     const char *label, size_t label_len);

#ifdef __cplusplus
}
#endif
#endif /* PMT_PROCJSON_H */
