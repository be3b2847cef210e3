/* procjson.c: a process sample as the seed's JSON object, no stdio (see procjson.h). */
#include "procjson.h"
#include "logwriter.h"      /* pmt_fmt_int */

#include <string.h>
#include <time.h>

static void
two_digits(char *out, int v)
{
    out[0] = (char)('0' + (v / 10) % 10);
    out[1] = (char)('0' + v % 10);
}

void
pmt_fmt_timestamp(pmt_tscache *c, double t, char *out)
{
    int64_t sec = (int64_t)t;
    if (t < 0) {
        sec = 0;
        t = 0;
    }
    int64_t usec = (int64_t)((t - (double)sec) * 1e6 + 0.5);
    if (usec >= 1000000) {
        usec -= 1000000;
        sec += 1;
    }
    if (c->sec != sec || c->text[0] == '\0') {
        time_t tt = (time_t)sec;
        struct tm tm;
        if (localtime_r(&tt, &tm) == NULL) {
            memset(&tm, 0, sizeof(tm));
        }
        int year = tm.tm_year + 1900;
        c->text[0] = (char)('0' + (year / 1000) % 10);
        c->text[1] = (char)('0' + (year / 100) % 10);
        two_digits(c->text + 2, year % 100);
        c->text[4] = '-';
        two_digits(c->text + 5, tm.tm_mon + 1);
        c->text[7] = '-';
        two_digits(c->text + 8, tm.tm_mday);
        c->text[10] = ' ';
        two_digits(c->text + 11, tm.tm_hour);
        c->text[13] = ':';
        two_digits(c->text + 14, tm.tm_min);
        c->text[16] = ':';
        two_digits(c->text + 17, tm.tm_sec);
        c->text[19] = '\0';
        c->sec = sec;
    }
    memcpy(out, c->text, 19);
    out[19] = '.';
    for (int k = 25; k >= 20; k--) {
        out[k] = (char)('0' + usec % 10);
        usec /= 10;
    }
}

int
pmt_fmt_seconds(char *out, double v)
{
    int n = 0;
    if (v != v) {       /* NaN: JSON has none */
        v = 0;
    }
    if (v < 0) {
        out[n++] = '-';
        v = -v;
    }
    if (v > 9.2e12) {
        v = 9.2e12;
    }
    int64_t micro = (int64_t)(v * 1e6 + 0.5);
    n += pmt_fmt_int(out + n, micro / 1000000);
    out[n++] = '.';
    int64_t frac = micro % 1000000;
    char digits[6];
    for (int k = 5; k >= 0; k--) {
        digits[k] = (char)('0' + frac % 10);
        frac /= 10;
    }
    int keep = 6;
    while (keep > 1 && digits[keep - 1] == '0') {
        keep--;
    }
    memcpy(out + n, digits, (size_t)keep);
    return n + keep;
}

/* A bounded text builder that keeps counting past its capacity. */
typedef struct {
    char *out;
    size_t cap;
    size_t len;
} jbuf;

static void
jb_bytes(jbuf *b, const char *s, size_t n)
{
    if (b->len < b->cap) {
        size_t room = b->cap - b->len;
        memcpy(b->out + b->len, s, n < room ? n : room);
    }
    b->len += n;
}

#define JB_LIT(b, lit) jb_bytes((b), (lit), sizeof(lit) - 1)

static void
jb_int(jbuf *b, int64_t v)
{
    char tmp[24];
    jb_bytes(b, tmp, (size_t)pmt_fmt_int(tmp, v));
}

static void
jb_seconds(jbuf *b, double v)
{
    char tmp[40];
    jb_bytes(b, tmp, (size_t)pmt_fmt_seconds(tmp, v));
}

size_t
pmt_json_string(char *out, size_t cap, const char *s, size_t n)
{
    static const char hex[] = "0123456789abcdef";
    jbuf b = {out, cap, 0};
    JB_LIT(&b, "\"");
    size_t run = 0;     /* start of a run of bytes needing no escape */
    for (size_t i = 0; i < n; i++) {
        unsigned char ch = (unsigned char)s[i];
        if (ch >= 0x20 && ch != '"' && ch != '\\' && ch != 0x7f) {
            continue;
        }
        jb_bytes(&b, s + run, i - run);
        run = i + 1;
        switch (ch) {
        case '"': JB_LIT(&b, "\\\""); break;
        case '\\': JB_LIT(&b, "\\\\"); break;
        case '\n': JB_LIT(&b, "\\n"); break;
        case '\r': JB_LIT(&b, "\\r"); break;
        case '\t': JB_LIT(&b, "\\t"); break;
        default: {
            char u[6] = {'\\', 'u', '0', '0', hex[ch >> 4], hex[ch & 15]};
            jb_bytes(&b, u, 6);
        }
        }
    }
    jb_bytes(&b, s + run, n - run);
    JB_LIT(&b, "\"");
    return b.len;
}

/* A JSON string literal appended to b. */
static void
jb_string(jbuf *b, const char *s, size_t n)
{
    b->len += pmt_json_string(b->len < b->cap ? b->out + b->len : NULL,
                              b->len < b->cap ? b->cap - b->len : 0, s, n);
}

/* "{"timestamp": "...": the opening every record shares. */
static void
jb_open(jbuf *b, pmt_tscache *tc, double wall)
{
    char ts[PMT_TS_LEN];
    pmt_fmt_timestamp(tc, wall, ts);
    JB_LIT(b, "{\"timestamp\": \"");
    jb_bytes(b, ts, PMT_TS_LEN);
    JB_LIT(b, "\"");
}

/* The keys of a sample, after the timestamp, up to "event"/"label". */
static void
jb_sample(jbuf *b, const pmt_procsample *s, int keys)
{
    JB_LIT(b, ", \"memory_info\": {\"rss\": ");
    jb_int(b, s->rss);
    JB_LIT(b, ", \"vms\": ");
    jb_int(b, s->vms);
    JB_LIT(b, ", \"pfaults\": ");
    jb_int(b, s->minflt + s->majflt);
    JB_LIT(b, ", \"pageins\": ");
    jb_int(b, s->majflt);
    if (keys & PMT_JSON_EXTRA) {
        JB_LIT(b, ", \"shared\": ");
        jb_int(b, s->shared);
        JB_LIT(b, ", \"text\": ");
        jb_int(b, s->text);
        JB_LIT(b, ", \"data\": ");
        jb_int(b, s->data);
    }
    if (s->rss_peak >= 0) {
        JB_LIT(b, ", \"rss_peak\": ");
        jb_int(b, s->rss_peak);
    }
    if (s->swap >= 0) {
        JB_LIT(b, ", \"swap\": ");
        jb_int(b, s->swap);
    }
    if (s->pss >= 0) {
        JB_LIT(b, ", \"pss\": ");
        jb_int(b, s->pss);
    }
    if (s->uss >= 0) {
        JB_LIT(b, ", \"uss\": ");
        jb_int(b, s->uss);
    }
    JB_LIT(b, "}, \"cpu_times\": {\"user\": ");
    jb_seconds(b, s->utime);
    JB_LIT(b, ", \"system\": ");
    jb_seconds(b, s->stime);
    JB_LIT(b, ", \"children_user\": ");
    jb_seconds(b, s->cutime);
    JB_LIT(b, ", \"children_system\": ");
    jb_seconds(b, s->cstime);
    JB_LIT(b, "}, \"elapsed_time\": ");
    jb_seconds(b, s->elapsed);
    JB_LIT(b, ", \"pid\": ");
    jb_int(b, s->pid);
    if (keys & PMT_JSON_EXTRA) {
        JB_LIT(b, ", \"num_threads\": ");
        jb_int(b, s->num_threads);
    }
    if (keys & PMT_JSON_NPROCS) {
        JB_LIT(b, ", \"nprocs\": ");
        jb_int(b, s->nprocs);
    }
}

/* ", "event": ..., "label": ..." when given. */
static void
jb_event_label(jbuf *b, const char *event, const char *label, size_t label_len)
{
    if (event != NULL) {
        JB_LIT(b, ", \"event\": ");
        jb_string(b, event, strlen(event));
    }
    if (label != NULL) {
        JB_LIT(b, ", \"label\": ");
        jb_string(b, label, label_len);
    }
}

size_t
pmt_ps_json(char *out, size_t cap, const pmt_procsample *s, pmt_tscache *tc,
            int keys, const char *event, const char *label, size_t label_len)
{
    jbuf b = {out, cap, 0};
    jb_open(&b, tc, s->wall);
    jb_sample(&b, s, keys);
    jb_event_label(&b, event, label, label_len);
    JB_LIT(&b, "}");
    return b.len;
}

size_t
pmt_stop_json(char *out, size_t cap, const pmt_procsample *s, pmt_tscache *tc,
              int keys, const pmt_stopinfo *info, const char *label,
              size_t label_len)
{
    jbuf b = {out, cap, 0};
    jb_open(&b, tc, s ? s->wall : info->wall);
    if (s != NULL) {
        jb_sample(&b, s, keys);
    }
    else {
        JB_LIT(&b, ", \"pid\": ");
        jb_int(&b, info->pid);
    }
    jb_event_label(&b, info->event, label, label_len);
    if (s == NULL && info->gone_key != NULL) {
        JB_LIT(&b, ", \"");
        jb_bytes(&b, info->gone_key, strlen(info->gone_key));
        JB_LIT(&b, "\": ");
        jb_string(&b, info->gone_text, strlen(info->gone_text));
    }
    if (info->has_exit_code) {
        JB_LIT(&b, ", \"exit_code\": ");
        jb_int(&b, info->exit_code);
    }
    if (info->rss_max >= 0) {
        JB_LIT(&b, ", \"rss_max_sampled\": ");
        jb_int(&b, info->rss_max);
    }
    if (info->peak >= 0 && info->peak_source != NULL) {
        JB_LIT(&b, ", \"rss_peak_kernel\": ");
        jb_int(&b, info->peak);
        JB_LIT(&b, ", \"rss_peak_source\": ");
        jb_string(&b, info->peak_source, strlen(info->peak_source));
    }
    JB_LIT(&b, "}");
    return b.len;
}
