/* cpmtsum.c: the summary of a cPyMemTrace log in one pass (see cpmtsum.h). */
#include "cpmtsum.h"

#include "grow.h"

#include <errno.h>
#include <fcntl.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

enum { MEMO_FUNCTION, MEMO_FILE, MEMO_WHAT };

/* ---- UTF-8 as Python's decoder with errors="replace" sees it ------------- */

size_t
pmt_cpmtsum_utf8_replace(const unsigned char *in, size_t n, char *out)
{
    size_t i = 0, o = 0;
    while (i < n) {
        unsigned char c = in[i];
        if (c < 0x80) {
            out[o++] = (char)c;
            i++;
            continue;
        }
        size_t j = i + 1;
        int ok = 0;
        if (c >= 0xC2 && c <= 0xF4) {
            size_t need = c < 0xE0 ? 1 : c < 0xF0 ? 2 : 3;
            /* the second byte's range narrows for E0, ED, F0, F4 */
            unsigned char lo = c == 0xE0 ? 0xA0 : c == 0xF0 ? 0x90 : 0x80;
            unsigned char hi = c == 0xED ? 0x9F : c == 0xF4 ? 0x8F : 0xBF;
            size_t k = 0;
            while (k < need && j < n && in[j] >= lo && in[j] <= hi) {
                j++;
                k++;
                lo = 0x80;
                hi = 0xBF;
            }
            ok = k == need;
        }
        if (ok) {
            memcpy(out + o, in + i, j - i);
            o += j - i;
        }
        else {   /* the maximal invalid part: one U+FFFD */
            out[o++] = (char)0xEF;
            out[o++] = (char)0xBF;
            out[o++] = (char)0xBD;
        }
        i = j;
    }
    return o;
}

/* ---- names: interned bytes, by id ---------------------------------------- */

typedef struct {
    const char *p;
    size_t n;
} name_key;

static uint64_t
name_hash(const void *key, void *ctx)
{
    (void)ctx;
    const name_key *k = key;
    return pmt_ht_hash_bytes(k->p, k->n);
}

static int
name_eq(const void *key, const void *entry, void *ctx)
{
    const name_key *k = key;
    const pmt_cpmtsum *s = ctx;
    uint32_t id;
    memcpy(&id, entry, sizeof(id));
    return s->name_len[id] == k->n && memcmp(s->names + s->name_off[id], k->p, k->n) == 0;
}

/* The id of p[0..n) (valid UTF-8), added if new; -1 when out of memory. */
static int64_t
intern(pmt_cpmtsum *s, const char *p, size_t n)
{
    name_key k = {p, n};
    uint32_t *found = pmt_ht_find(&s->name_index, &k);
    if (found) {
        return *found;
    }
    if (n >= UINT32_MAX - s->names_len - 1 || s->n_names >= UINT32_MAX ||
        pmt_grow((void **)&s->names, &s->names_cap, s->names_len + n + 1, 1) < 0 ||
        pmt_grow((void **)&s->name_off, &s->names_idx_cap, s->n_names + 1, sizeof(uint32_t)) < 0) {
        return -1;
    }
    /* name_len grows with name_off: same capacity */
    uint32_t *nl = realloc(s->name_len, s->names_idx_cap * sizeof(uint32_t));
    if (!nl) {
        return -1;
    }
    s->name_len = nl;
    uint32_t id = (uint32_t)s->n_names;
    memcpy(s->names + s->names_len, p, n);
    s->names[s->names_len + n] = '\0';
    s->name_off[id] = (uint32_t)s->names_len;
    s->name_len[id] = (uint32_t)n;
    int created;
    uint32_t *e = pmt_ht_insert(&s->name_index, &k, &created);
    if (!e) {
        return -1;
    }
    *e = id;
    s->names_len += n + 1;
    s->n_names++;
    return id;
}

/* The id of a name as it appears in the log (made valid UTF-8 first). */
static int64_t
name_id(pmt_cpmtsum *s, int slot, const char *p, size_t n)
{
    if (s->memo[slot].len == n && memcmp(s->memo[slot].raw, p, n) == 0) {
        return s->memo[slot].id;
    }
    const char *v = p;
    size_t vn = n;
    for (size_t i = 0; i < n; i++) {
        if ((unsigned char)p[i] >= 0x80) {
            if (n > SIZE_MAX / 3 ||
                pmt_grow((void **)&s->scratch, &s->scratch_cap, 3 * n, 1) < 0) {
                return -1;
            }
            vn = pmt_cpmtsum_utf8_replace((const unsigned char *)p, n, s->scratch);
            v = s->scratch;
            break;
        }
    }
    int64_t id = intern(s, v, vn);
    if (id >= 0 && n <= sizeof(s->memo[slot].raw)) {
        memcpy(s->memo[slot].raw, p, n);
        s->memo[slot].len = n;
        s->memo[slot].id = (uint32_t)id;
    }
    return id;
}

/* ---- the functions and the largest changes ------------------------------- */

typedef struct {
    uint64_t key;
    uint32_t index;
} func_entry;

static int64_t
func_index(pmt_cpmtsum *s, uint32_t function, uint32_t file)
{
    uint64_t key = (uint64_t)function << 32 | file;
    if (s->have_memo_func && s->memo_key == key) {
        return s->memo_func;
    }
    int created;
    func_entry *e = pmt_ht_insert(&s->func_index, &key, &created);
    if (!e) {
        return -1;
    }
    if (created) {
        if (s->n_funcs >= UINT32_MAX ||
            pmt_grow((void **)&s->funcs, &s->funcs_cap, s->n_funcs + 1, sizeof(*s->funcs)) < 0) {
            pmt_ht_remove(&s->func_index, e);
            return -1;
        }
        e->key = key;
        e->index = (uint32_t)s->n_funcs;
        pmt_cpmtsum_func *f = &s->funcs[s->n_funcs++];
        memset(f, 0, sizeof(*f));
        f->function = function;
        f->file = file;
    }
    s->memo_key = key;
    s->memo_func = e->index;
    s->have_memo_func = 1;
    return e->index;
}

/* Heap order: the root is the change that would be dropped first. */
static inline int
worse(const pmt_cpmtsum_change *a, const pmt_cpmtsum_change *b)
{
    return a->mag < b->mag || (a->mag == b->mag && a->order > b->order);
}

static void
sift_down(pmt_cpmtsum_change *h, size_t n, size_t i)
{
    for (;;) {
        size_t l = 2 * i + 1, r = l + 1, m = i;
        if (l < n && worse(&h[l], &h[m])) {
            m = l;
        }
        if (r < n && worse(&h[r], &h[m])) {
            m = r;
        }
        if (m == i) {
            return;
        }
        pmt_cpmtsum_change t = h[i];
        h[i] = h[m];
        h[m] = t;
        i = m;
    }
}

static void
sift_up(pmt_cpmtsum_change *h, size_t i)
{
    while (i > 0) {
        size_t p = (i - 1) / 2;
        if (!worse(&h[i], &h[p])) {
            return;
        }
        pmt_cpmtsum_change t = h[i];
        h[i] = h[p];
        h[p] = t;
        i = p;
    }
}

static int
consider_change(pmt_cpmtsum *s, const pmt_cpmt_parsed *r, uint32_t func, uint64_t order)
{
    uint64_t mag = r->d_rss < 0 ? (uint64_t)0 - (uint64_t)r->d_rss : (uint64_t)r->d_rss;
    int full = s->n_largest == s->top;
    if (s->top == 0 || (full && mag <= s->largest[0].mag)) {
        return 0;   /* a later row with an equal |dRSS| ranks after */
    }
    int64_t what = name_id(s, MEMO_WHAT, r->what, r->what_len);
    if (what < 0) {
        return -1;
    }
    pmt_cpmtsum_change c = {mag, order, r->d_rss, r->event, r->line, (uint32_t)what, func};
    if (full) {
        s->largest[0] = c;
        sift_down(s->largest, s->n_largest, 0);
        return 0;
    }
    if (pmt_grow((void **)&s->largest, &s->largest_cap, s->n_largest + 1, sizeof(c)) < 0) {
        return -1;
    }
    s->largest[s->n_largest] = c;
    sift_up(s->largest, s->n_largest++);
    return 0;
}

/* ---- lines ---------------------------------------------------------------- */

static int
on_row(pmt_cpmtsum *s, const pmt_cpmt_parsed *r)
{
    s->overflow |= r->overflow;
    s->records++;
    s->last_rss = r->rss;
    s->last_event = r->event;
    memcpy(s->last_clock, r->clock, r->clock_len);
    s->last_clock[r->clock_len] = '\0';
    if (!r->next) {
        return 0;
    }
    if (++s->next_records == 1) {
        s->first_rss = r->rss;
        if (r->event == 0) {
            return 0;   /* the RSS at start, not a change */
        }
    }
    int64_t fn = name_id(s, MEMO_FUNCTION, r->function, r->function_len);
    int64_t fi = fn < 0 ? -1 : name_id(s, MEMO_FILE, r->file, r->file_len);
    int64_t ix = fi < 0 ? -1 : func_index(s, (uint32_t)fn, (uint32_t)fi);
    if (ix < 0) {
        return -1;
    }
    pmt_cpmtsum_func *f = &s->funcs[ix];
    if (__builtin_add_overflow(f->d_rss, r->d_rss, &f->d_rss)) {
        s->overflow = 1;
    }
    f->rows++;
    return consider_change(s, r, (uint32_t)ix, s->considered++);
}

static int
on_line(pmt_cpmtsum *s, const char *p, size_t n)
{
    if (n > PMT_CPMTSUM_LINE_MAX) {     /* a message or a note, whatever it starts with */
        s->last_is_end = 0;
        return 0;
    }
    if (!s->seen_header) {
        s->seen_header = pmt_cpmt_is_header(p, n);
        return 0;
    }
    pmt_cpmt_parsed r;
    if (pmt_cpmt_parse_row(p, n, &r)) {
        s->last_is_end = 0;
        return on_row(s, &r);
    }
    s->last_is_end = pmt_cpmt_is_end(p, n);
    return 0;
}

/* Keep the start of a line cut by a chunk boundary: at most LINE_MAX + 1
 * bytes, enough to know that it is too long. */
static int
carry(pmt_cpmtsum *s, const char *p, size_t n)
{
    size_t room = PMT_CPMTSUM_LINE_MAX + 1 - s->carry_len;
    n = n < room ? n : room;
    if (pmt_grow((void **)&s->carry, &s->carry_cap, s->carry_len + n, 1) < 0) {
        return -1;
    }
    memcpy(s->carry + s->carry_len, p, n);
    s->carry_len += n;
    return 0;
}

int
pmt_cpmtsum_feed(pmt_cpmtsum *s, const char *data, size_t len)
{
    if (s->failed) {
        return -1;
    }
    if (len == 0) {
        return 0;
    }
    s->bytes += len;
    const char *p = data, *e = data + len;
    if (s->carry_len > 0) {     /* finish the line the last chunk began */
        const char *nl = memchr(p, '\n', len);
        if (carry(s, p, nl ? (size_t)(nl - p) : len) < 0) {
            goto fail;
        }
        if (!nl) {
            return 0;
        }
        if (on_line(s, s->carry, s->carry_len) < 0) {
            goto fail;
        }
        s->carry_len = 0;
        p = nl + 1;
    }
    for (const char *nl; p < e && (nl = memchr(p, '\n', (size_t)(e - p))); p = nl + 1) {
        if (on_line(s, p, (size_t)(nl - p)) < 0) {
            goto fail;
        }
    }
    if (p < e && carry(s, p, (size_t)(e - p)) < 0) {
        goto fail;
    }
    return 0;
fail:
    s->failed = 1;
    return -1;
}

static int
cmp_change(const void *a, const void *b)
{
    const pmt_cpmtsum_change *x = a, *y = b;
    if (x->mag != y->mag) {
        return x->mag > y->mag ? -1 : 1;
    }
    return x->order < y->order ? -1 : x->order > y->order;
}

typedef struct {
    int64_t d_rss;
    uint32_t index;
} func_rank;

static int
cmp_func(const void *a, const void *b)
{
    const func_rank *x = a, *y = b;
    if (x->d_rss != y->d_rss) {
        return x->d_rss > y->d_rss ? -1 : 1;
    }
    return x->index < y->index ? -1 : x->index > y->index;
}

int
pmt_cpmtsum_finish(pmt_cpmtsum *s)
{
    if (s->failed) {
        return -1;
    }
    if (s->carry_len > 0) {     /* a last line without its newline */
        if (!s->seen_header && s->carry_len <= PMT_CPMTSUM_LINE_MAX) {
            s->seen_header = pmt_cpmt_is_header(s->carry, s->carry_len);
        }
        else {
            s->truncated = 1;
        }
        s->carry_len = 0;
        s->complete = 0;
    }
    else {
        s->complete = s->seen_header && s->last_is_end;
    }
    if (s->n_largest > 1) {
        qsort(s->largest, s->n_largest, sizeof(*s->largest), cmp_change);
    }
    size_t n = 0;
    for (size_t i = 0; i < s->n_funcs; i++) {
        n += s->funcs[i].d_rss != 0;
    }
    func_rank *rank = n ? malloc(n * sizeof(*rank)) : NULL;
    if ((n && !rank) ||
        (n && pmt_grow((void **)&s->by_function, &s->by_function_cap, n, sizeof(uint32_t)) < 0)) {
        free(rank);
        s->failed = 1;
        return -1;
    }
    n = 0;
    for (size_t i = 0; i < s->n_funcs; i++) {
        if (s->funcs[i].d_rss != 0) {
            rank[n].d_rss = s->funcs[i].d_rss;
            rank[n++].index = (uint32_t)i;
        }
    }
    if (n > 1) {
        qsort(rank, n, sizeof(*rank), cmp_func);
    }
    for (size_t i = 0; i < n; i++) {
        s->by_function[i] = rank[i].index;
    }
    free(rank);
    s->n_by_function = n < s->top ? n : s->top;
    return 0;
}

void
pmt_cpmtsum_init(pmt_cpmtsum *s, size_t top)
{
    memset(s, 0, sizeof(*s));
    s->top = top;
    for (size_t i = 0; i < sizeof(s->memo) / sizeof(s->memo[0]); i++) {
        s->memo[i].len = SIZE_MAX;
    }
    pmt_ht_init(&s->name_index, sizeof(uint32_t), name_hash, name_eq, s);
    pmt_ht_init(&s->func_index, sizeof(func_entry), pmt_ht_u64_hash, pmt_ht_u64_eq, NULL);
}

void
pmt_cpmtsum_free(pmt_cpmtsum *s)
{
    pmt_ht_free(&s->name_index);
    pmt_ht_free(&s->func_index);
    free(s->largest);
    free(s->by_function);
    free(s->funcs);
    free(s->names);
    free(s->name_off);
    free(s->name_len);
    free(s->carry);
    free(s->scratch);
    memset(s, 0, sizeof(*s));
}

int
pmt_cpmtsum_read_path(pmt_cpmtsum *s, const char *path)
{
    /* O_NONBLOCK: opening a FIFO must not wait for a writer */
    int fd = open(path, O_RDONLY | O_CLOEXEC | O_NOCTTY | O_NONBLOCK);
    if (fd < 0) {
        return PMT_CPMTSUM_ERRNO;
    }
    struct stat st;
    int rc = PMT_CPMTSUM_OK;
    char *buf = NULL;
    if (fstat(fd, &st) != 0) {
        rc = PMT_CPMTSUM_ERRNO;
    }
    else if (S_ISDIR(st.st_mode)) {
        errno = EISDIR;
        rc = PMT_CPMTSUM_ERRNO;
    }
    else if (!S_ISREG(st.st_mode)) {
        rc = PMT_CPMTSUM_NOT_REGULAR;
    }
    else if (!(buf = malloc(1 << 20))) {
        errno = ENOMEM;
        rc = PMT_CPMTSUM_ERRNO;
    }
    while (rc == PMT_CPMTSUM_OK) {
        ssize_t got = read(fd, buf, 1 << 20);
        if (got < 0 && errno == EINTR) {
            continue;
        }
        if (got < 0) {
            rc = PMT_CPMTSUM_ERRNO;
        }
        else if (got == 0) {
            break;
        }
        else if (pmt_cpmtsum_feed(s, buf, (size_t)got) < 0) {
            errno = ENOMEM;
            rc = PMT_CPMTSUM_ERRNO;
        }
    }
    free(buf);
    int saved = errno;
    if (close(fd) != 0 && rc == PMT_CPMTSUM_OK) {
        return PMT_CPMTSUM_ERRNO;
    }
    errno = saved;
    if (rc == PMT_CPMTSUM_OK && pmt_cpmtsum_finish(s) < 0) {
        errno = ENOMEM;
        rc = PMT_CPMTSUM_ERRNO;
    }
    return rc;
}
