/* cpmtfmt.c: the row formatter of cPyMemTrace logs (see cpmtlog.h).
 *
 * Profile(0) writes a row at every event, so this is most of what an event
 * costs after the hook.  The caller reserves the row's maximum length
 * (PMT_CPMT_ROW_MAX) once: no field checks bounds.  Each field is one move of
 * a fixed size (16, 32 or 48 bytes: a few wide loads and stores once inlined)
 * of text prepared ahead with its padding and the separator after it, and
 * only its length counts: the bytes a move writes past its field are written
 * over by the next field.  The text is kept from row to row (the cache): a
 * field is converted again only when its value changes, the event number is
 * counted up in its text, and what changes at every row (the microseconds,
 * the line) is written from tables of three-digit groups.  The output is the
 * layout of cpmtlog.h, byte for byte (tests/c/test_cpmtfmt.c).
 */
#define _GNU_SOURCE     /* memrchr */
#include "cpmtlog.h"

#include <string.h>

#if defined(__GNUC__)
#define COLD __attribute__((noinline, cold))
#define ALWAYS_INLINE inline __attribute__((always_inline))
#define NOINLINE __attribute__((noinline))
#else
#define COLD
#define ALWAYS_INLINE inline
#define NOINLINE
#endif

/* pairs + 2 * k: k (0..99) in two digits. */
static const char pairs[201] =
    "00010203040506070809101112131415161718192021222324252627282930313233343536373839"
    "40414243444546474849505152535455565758596061626364656667686970717273747576777879"
    "8081828384858687888990919293949596979899";

/* Three digits and a space for each of 0..999 (4 bytes each, in order): in
 * z3 with leading zeros ("007 "), in s3 right-aligned ("  7 "). */
#define Z1(h, t) h t "0 " h t "1 " h t "2 " h t "3 " h t "4 " h t "5 " h t "6 " h t "7 " h t "8 " h t "9 "
#define Z2(h) Z1(h, "0") Z1(h, "1") Z1(h, "2") Z1(h, "3") Z1(h, "4") \
              Z1(h, "5") Z1(h, "6") Z1(h, "7") Z1(h, "8") Z1(h, "9")
#define S2 Z1(" ", " ") Z1(" ", "1") Z1(" ", "2") Z1(" ", "3") Z1(" ", "4") \
           Z1(" ", "5") Z1(" ", "6") Z1(" ", "7") Z1(" ", "8") Z1(" ", "9")
static const char z3[4001] = Z2("0") Z2("1") Z2("2") Z2("3") Z2("4") Z2("5") Z2("6") Z2("7")
                             Z2("8") Z2("9");
static const char s3[4001] = S2 Z2("1") Z2("2") Z2("3") Z2("4") Z2("5") Z2("6") Z2("7")
                             Z2("8") Z2("9");

/* ---- plain conversions: the text of a value that changed ----------------- */

static int
count_digits(uint64_t u)
{
    int n = 1;
    while (u >= 10000) {
        u /= 10000;
        n += 4;
    }
    if (u >= 1000) {
        return n + 3;
    }
    if (u >= 100) {
        return n + 2;
    }
    return u >= 10 ? n + 1 : n;
}

/* Write the n decimal digits of u ending just before end. */
static void
write_digits(char *end, uint64_t u, int n)
{
    while (n >= 2) {
        memcpy(end -= 2, pairs + 2 * (u % 100), 2);
        u /= 100;
        n -= 2;
    }
    if (n) {
        *--end = (char)('0' + u);
    }
}

static char *
put_spaces(char *p, int n)
{
    if (n > 0) {
        memset(p, ' ', (size_t)n);
        p += n;
    }
    return p;
}

char *
pmt_cpmt_put_int(char *p, int64_t v, int width, int plus)
{
    uint64_t u = v < 0 ? (uint64_t)0 - (uint64_t)v : (uint64_t)v;
    int nd = count_digits(u);
    int len = nd + (v < 0 || plus);
    p = put_spaces(p, width - len);
    if (v < 0) {
        *p++ = '-';
    }
    else if (plus) {
        *p++ = '+';
    }
    write_digits(p + nd, u, nd);
    return put_spaces(p + nd, -width - len);
}

char *
pmt_cpmt_put_seconds(char *p, int64_t ns)
{
    uint64_t u = (uint64_t)ns;
    if (ns < 0) {
        *p++ = '-';
        u = (uint64_t)0 - u;
    }
    uint64_t us = u / 1000;
    int nd = count_digits(us / 1000000);
    write_digits(p + nd, us / 1000000, nd);
    p += nd;
    *p++ = '.';
    write_digits(p + 6, us % 1000000, 6);
    return p + 6;
}

/* ---- the fields' texts, made again when their value changes -------------- */

/* v (width, plus: as pmt_cpmt_put_int) and a space. */
static COLD void
int_text(pmt_cpmt_memo *m, int64_t v, int width, int plus)
{
    memset(m->txt, ' ', sizeof m->txt);
    m->len = (int)(pmt_cpmt_put_int(m->txt, v, width, plus) - m->txt) + 1;
    m->v = v;
    m->digits = v >= 0 ? count_digits((uint64_t)v) : 0;
}

/* RSS right-aligned in 8, a space, dRSS right-aligned in 12, the newline. */
static COLD void
rss_text(pmt_cpmt_memo *m, int64_t rss, int64_t d_rss)
{
    char *p = pmt_cpmt_put_int(m->txt, rss, 8, 0);
    *p++ = ' ';
    p = pmt_cpmt_put_int(p, d_rss, 12, 0);
    *p++ = '\n';
    m->len = (int)(p - m->txt);
    m->v = rss;
    m->v2 = d_rss;
}

/* The whole seconds and the point; v2: the second's first nanosecond. */
static COLD void
secs_text(pmt_cpmt_memo *m, uint64_t s)
{
    m->v2 = (int64_t)(s * 1000000000);
    int nd = count_digits(s);
    write_digits(m->txt + nd, s, nd);
    m->txt[nd] = '.';
    m->len = nd + 1;
    m->v = (int64_t)s;
}

/* The event number after a 9: carry, or one more digit. */
static COLD void
event_carry(pmt_cpmt_memo *m, int64_t v)
{
    int i = m->digits - 1;
    while (i >= 0 && m->txt[i] == '9') {
        m->txt[i--] = '0';
    }
    if (i < 0) {
        int_text(m, v, -5, 0);
        return;
    }
    m->txt[i]++;
    m->v = v;
}

/* Does s hold a byte below min (or DEL)?  A reduction the compiler vectorises. */
static int
has_byte_below(const char *s, size_t n, unsigned char min)
{
    unsigned bad = 0;
    for (size_t i = 0; i < n; i++) {
        unsigned char c = (unsigned char)s[i];
        bad |= (unsigned)(c < min) | (unsigned)(c == 0x7f);
    }
    return bad != 0;
}

/* A name copied with bytes below min (and DEL) replaced by '_'; "?" if empty. */
static char *
put_clean(char *p, const char *s, size_t n, unsigned char min)
{
    if (s == NULL || n == 0) {
        *p++ = '?';
        return p;
    }
    memcpy(p, s, n);
    if (has_byte_below(s, n, min)) {
        for (size_t i = 0; i < n; i++) {
            unsigned char c = (unsigned char)p[i];
            if (c < min || c == 0x7f) {
                p[i] = '_';
            }
        }
    }
    return p + n;
}

/* ---- the row ------------------------------------------------------------- */

/* The What field padded to 8, and a space. */
static const struct {
    char txt[16];
    int len;
} what_text[9] = {
    {"CALL     ", 9}, {"EXCEPTION ", 10}, {"LINE     ", 9}, {"RETURN   ", 9},
    {"C_CALL   ", 9}, {"C_EXCEPTION ", 12}, {"C_RETURN ", 9}, {"OPCODE   ", 9},
    {"?        ", 9},
};

/* A cached text of at most 21 bytes (an int64 with its sign and a space). */
static inline char *
put_memo(char *p, const pmt_cpmt_memo *m)
{
    memcpy(p, m->txt, 32);
    return p + m->len;
}

/* The event number left-aligned in 5, and a space: the next number is
 * counted up in the text of the last one. */
static inline char *
put_event(char *p, pmt_cpmt_memo *m, int64_t v)
{
    if (v > 0 && (uint64_t)v == (uint64_t)m->v + 1) {    /* then m->v >= 0: no sign */
        char *last = m->txt + m->digits - 1;
        if (*last != '9') {
            ++*last;
            m->v = v;
        }
        else {
            event_carry(m, v);
        }
    }
    else if (v != m->v) {
        int_text(m, v, -5, 0);
    }
    return put_memo(p, m);
}

/* The clock, and a space: the seconds from the cache, the microseconds from
 * the pair table. */
static inline char *
put_clock(char *p, pmt_cpmt_memo *m, int64_t ns)
{
    if (ns < 0) {
        p = pmt_cpmt_put_seconds(p, ns);   /* never before the tracer started */
        *p++ = ' ';
        return p;
    }
    uint64_t in = (uint64_t)ns - (uint64_t)m->v2;   /* ns into the cached second */
    if (in >= 1000000000) {
        secs_text(m, (uint64_t)ns / 1000000000);
        in = (uint64_t)ns - (uint64_t)m->v2;
    }
    uint32_t f = (uint32_t)in / 1000;
    memcpy(p, m->txt, 16);
    p += m->len;
    uint32_t hi = f / 1000, lo = f - hi * 1000;
    memcpy(p, z3 + 4 * hi, 4);
    memcpy(p + 3, z3 + 4 * lo, 4);      /* the last three digits and a space */
    return p + 7;
}

/* The line right-aligned in 4, and a space. */
static inline char *
put_line(char *p, int line)
{
    if ((unsigned)line < 1000) {
        *p = ' ';
        memcpy(p + 1, s3 + 4 * line, 4);
        return p + 5;
    }
    if ((unsigned)line < 10000) {
        unsigned hi = (unsigned)line / 1000;
        *p = (char)('0' + hi);
        memcpy(p + 1, z3 + 4 * ((unsigned)line - hi * 1000), 4);
        return p + 5;
    }
    p = pmt_cpmt_put_int(p, line, 4, 0);
    *p++ = ' ';
    return p;
}

#define ONES 0x0101010101010101ULL

/* Has x a byte below min (min <= 0x80) or a DEL?  Exact as a whole (a borrow
 * only crosses a byte that matched). */
static ALWAYS_INLINE uint64_t
has_below(uint64_t x, unsigned char min)
{
    uint64_t y = x ^ (0x7f * ONES);
    return (((x - min * ONES) & ~x) | ((y - ONES) & ~y)) & (0x80 * ONES);
}

/* A name of 1 to 16 bytes with no byte below min nor DEL, over 32 spaces at
 * t: moved by two overlapping loads and stores.  Returns 0 (t spoilt) if the
 * name has a byte to replace. */
static ALWAYS_INLINE int
put_short(char *t, const char *s, size_t n, unsigned char min)
{
    memset(t, ' ', 32);
    if (n >= 8) {
        uint64_t a, b;
        memcpy(&a, s, 8);
        memcpy(&b, s + n - 8, 8);
        if (has_below(a, min) | has_below(b, min)) {
            return 0;
        }
        memcpy(t, &a, 8);
        memcpy(t + n - 8, &b, 8);
    }
    else if (n >= 4) {
        uint32_t a, b;
        memcpy(&a, s, 4);
        memcpy(&b, s + n - 4, 4);
        if (has_below(a | (uint64_t)b << 32, min)) {
            return 0;
        }
        memcpy(t, &a, 4);
        memcpy(t + n - 4, &b, 4);
    }
    else {
        unsigned char c0 = (unsigned char)s[0], c1 = (unsigned char)s[n >> 1];
        unsigned char c2 = (unsigned char)s[n - 1];
        if (has_below(c0 | (uint64_t)c1 << 8 | (uint64_t)c2 << 16 | ('a' * ONES) << 24, min)) {
            return 0;
        }
        t[0] = (char)c0;
        t[n >> 1] = (char)c1;
        t[n - 1] = (char)c2;
    }
    return 1;
}

/* The File field and " #": the basename (its last PMT_CPMT_NAME_MAX bytes),
 * control characters replaced; the File field may hold spaces, the reader
 * splits on " #". */
static NOINLINE void
file_text(pmt_cpmt_namememo *m, const char *f, size_t n)
{
    if (n) {
        const char *slash = memrchr(f, '/', n);
        size_t k = slash ? (size_t)(slash + 1 - f) : 0;
        f += k;
        n -= k;
    }
    if (n - 1 < 16 && put_short(m->txt, f, n, ' ')) {
        m->txt[n + 1] = '#';
        m->len = n + 2;
        return;
    }
    if (n > PMT_CPMT_NAME_MAX) {
        f += n - PMT_CPMT_NAME_MAX;
        n = PMT_CPMT_NAME_MAX;
    }
    char *p = put_clean(m->txt, f, n, ' ');
    *p++ = ' ';
    *p++ = '#';
    m->len = (size_t)(p - m->txt);
}

/* The Function field (its first PMT_CPMT_NAME_MAX bytes, whitespace
 * replaced) padded to 13, and a space. */
static NOINLINE void
function_text(pmt_cpmt_namememo *m, const char *s, size_t n)
{
    if (n - 1 < 16 && put_short(m->txt, s, n, ' ' + 1)) {
        m->len = (n < 13 ? 13 : n) + 1;
        return;
    }
    if (n > PMT_CPMT_NAME_MAX) {
        n = PMT_CPMT_NAME_MAX;
    }
    char *p = put_clean(m->txt, s, n, ' ' + 1);
    p = put_spaces(p, 13 - (int)(p - m->txt));
    *p++ = ' ';
    m->len = (size_t)(p - m->txt);
}

/* The bytes of a name of 1 to 16 bytes as two words: with the length they
 * are the name (the loads of put_short). */
static ALWAYS_INLINE void
name_words(uint64_t w[2], const char *s, size_t n)
{
    if (n >= 8) {
        memcpy(&w[0], s, 8);
        memcpy(&w[1], s + n - 8, 8);
    }
    else if (n >= 4) {
        uint32_t a, b;
        memcpy(&a, s, 4);
        memcpy(&b, s + n - 4, 4);
        w[0] = a | (uint64_t)b << 32;
        w[1] = 0;
    }
    else {
        w[0] = (unsigned char)s[0] | (uint64_t)(unsigned char)s[n >> 1] << 8
               | (uint64_t)(unsigned char)s[n - 1] << 16;
        w[1] = 0;
    }
}

/* The spare and the last function name's text and byte key are laid out
 * alike: swapped as one block of 64 bytes. */
#define SPARE_BLOCK sizeof(pmt_cpmt_namespare)
_Static_assert(SPARE_BLOCK == 64 && offsetof(pmt_cpmt_namespare, len) == 0
                   && offsetof(pmt_cpmt_namememo, w_len) - offsetof(pmt_cpmt_namememo, len)
                          == offsetof(pmt_cpmt_namespare, w_len)
                   && offsetof(pmt_cpmt_namememo, w) - offsetof(pmt_cpmt_namememo, len)
                          == offsetof(pmt_cpmt_namespare, w)
                   && offsetof(pmt_cpmt_namememo, txt) - offsetof(pmt_cpmt_namememo, len)
                          == offsetof(pmt_cpmt_namespare, txt),
               "the spare is laid out as the function memo from len on");

/* A new Function text (of k bytes of s; key s and n): the last one becomes
 * the spare if it is keyed by its bytes (its text then has at most 17
 * bytes). */
static NOINLINE void
function_new(pmt_cpmt_fmtcache *c, const char *s, size_t n, size_t k, size_t w_len,
             uint64_t w0, uint64_t w1)
{
    pmt_cpmt_namememo *m = &c->function;
    if (m->w_len) {
        memcpy(&c->spare, &m->len, SPARE_BLOCK);
    }
    function_text(m, s, k);
    m->w_len = w_len;
    m->w[0] = w0;
    m->w[1] = w1;
    m->key = s;
    m->key_len = n;
}

/* The Function field of a name that is not the last one's (by address and
 * length): the spare's text if it has these bytes (the two swapped), else a
 * new text. */
static NOINLINE void
function_miss(pmt_cpmt_fmtcache *c, const char *s, size_t n)
{
    size_t k = s ? n : 0;   /* no name: "?" */
    uint64_t w[2] = {0, 0};
    size_t w_len = k - 1 < 16 ? k : 0;
    if (w_len) {
        name_words(w, s, k);
        pmt_cpmt_namespare *sp = &c->spare;
        if (w_len == sp->w_len && w[0] == sp->w[0] && w[1] == sp->w[1]) {
            pmt_cpmt_namememo *m = &c->function;
            char t[SPARE_BLOCK];
            memcpy(t, sp, SPARE_BLOCK);
            memcpy(sp, &m->len, SPARE_BLOCK);
            memcpy(&m->len, t, SPARE_BLOCK);
            m->key = s;
            m->key_len = n;
            return;
        }
    }
    function_new(c, s, n, k, w_len, w[0], w[1]);
}

static inline char *
put_name(char *p, pmt_cpmt_fmtcache *c, pmt_cpmt_namememo *m, const char *s, size_t n,
         int function)
{
    if (m->key != s || m->key_len != n) {
        if (function) {
            function_miss(c, s, n);
        }
        else {
            file_text(m, s, s ? n : 0);     /* no name: "?" */
            m->key = s;
            m->key_len = n;
        }
    }
    if (m->len <= 32) {
        memcpy(p, m->txt, 32);
    }
    else {
        memcpy(p, m->txt, m->len);
    }
    return p + m->len;
}

/* A new cache holds the text of zeros and missing names: the fields then
 * compare values only, never whether they have a text. */
static COLD void
cache_init(pmt_cpmt_fmtcache *c)
{
    int_text(&c->event, 0, -5, 0);
    int_text(&c->d_event, 0, -7, 1);
    secs_text(&c->secs, 0);
    rss_text(&c->rss, 0, 0);
    file_text(&c->file, NULL, 0);
    function_text(&c->function, NULL, 0);
    c->file.key = c->function.key = NULL;
    c->file.key_len = c->function.key_len = 0;
    c->function.w_len = c->spare.w_len = 0;
    c->ready = 1;
}

static ALWAYS_INLINE size_t
format_row(char *out, const pmt_cpmt_row *row, pmt_cpmt_fmtcache *c)
{
    if (!c->ready) {
        cache_init(c);
    }
    char *p = out;
    static const char prefix[] = "PREV:   NEXT:   ";
    memcpy(p, prefix + 8 * (row->next != 0), 8);
    p = put_event(p + 6, &c->event, row->event);
    /* dEvent: "+N" left-aligned in 7 */
    if (c->d_event.v != row->d_event) {
        int_text(&c->d_event, row->d_event, -7, 1);
    }
    p = put_memo(p, &c->d_event);
    p = put_clock(p, &c->secs, row->clock_ns);
    unsigned what = (unsigned)row->what < 8 ? (unsigned)row->what : 8;
    memcpy(p, what_text[what].txt, 16);
    p += what_text[what].len;
    p = put_name(p, c, &c->file, row->file, row->file_len, 0);
    p = put_line(p, row->line);
    p = put_name(p, c, &c->function, row->function, row->function_len, 1);
    if (c->rss.v != row->rss || c->rss.v2 != row->d_rss) {
        rss_text(&c->rss, row->rss, row->d_rss);
    }
    memcpy(p, c->rss.txt, 48);
    return (size_t)(p + c->rss.len - out);
}

size_t
pmt_cpmt_format_row(char *out, const pmt_cpmt_row *row, pmt_cpmt_fmtcache *cache)
{
    pmt_cpmt_fmtcache none;
    if (cache == NULL) {
        none.ready = 0;
        cache = &none;
    }
    return format_row(out, row, cache);
}

/* A row through a stack buffer: the writer's buffer is nearly full (or in
 * error), or the caller has no cache. */
static COLD void
write_row_copied(pmt_logwriter *w, const pmt_cpmt_row *row, pmt_cpmt_fmtcache *cache)
{
    char buf[PMT_CPMT_ROW_MAX];
    pmt_lw_bytes(w, buf, pmt_cpmt_format_row(buf, row, cache));
}

void
pmt_cpmt_write_row(pmt_logwriter *w, const pmt_cpmt_row *row, pmt_cpmt_fmtcache *cache)
{
    /* Straight into the writer's buffer when it has room (the common case). */
    if (cache != NULL && pmt_cpmt_row_fits(w)) {
        w->len += format_row(w->buf + w->len, row, cache);
        return;
    }
    write_row_copied(w, row, cache);
}

void
pmt_cpmt_append_row(pmt_logwriter *w, const pmt_cpmt_row *row, pmt_cpmt_fmtcache *cache)
{
    w->len += format_row(w->buf + w->len, row, cache);
}
