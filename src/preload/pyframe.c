/* pyframe.c: the calling thread's Python frames, read without Python.h.
 *
 * At each allocation the tracer reads the calling thread's own frame stack
 * through the layout row of the interpreter it runs in (pylayout.h, chosen
 * at load by pyinterp.c): the thread state (PyGILState_GetThisThreadState, a
 * TLS lookup, NULL for threads without Python state), its current frame,
 * then each frame's code object and position, skipping frames that have not
 * started (and, 3.12+, the C-stack shim frames).  No Python object is
 * created or called and no reference is taken: the thread is inside one of
 * these frames, which keep their code objects alive.  The line comes from
 * the public PyCode_Addr2Line (it only reads the code object's line table),
 * cached per thread.  A code object's file and function names are written
 * once, when the object is first seen (a CODE record with a per-run id); an
 * address reused by another code object (different name, file or first
 * line) gets a new id.
 */
#include <string.h>

#include "preload.h"
#include "pylayout.h"

#define AT(p, off, T) (*(T const *)((const char *)(p) + (off)))

/* A runaway chain (a frame pointing into itself) ends the walk. */
#define MAX_WALK 100000

pthread_mutex_t g_code_lock = PTHREAD_MUTEX_INITIALIZER;

/* With marks (native stacks), the last frame of each evaluation call (the
 * frames one call of the interpreter's evaluation function runs) has entry
 * set, and a call with no started frame is a frame with code NULL. */
static inline __attribute__((always_inline)) int
stack_walk(pmt_pyframe *out, int max, int marks)
{
    const pmt_pylayout *L = g_py.layout;
    if (g_py.finalizing && g_py.finalizing()) {
        return 0;
    }
    const char *ts = g_py.this_tstate();
    if (ts == NULL) {
        return 0;
    }
    const char *f = AT(ts, L->ts_frame, const char *);
    if (L->scheme == PMT_PYL_CFRAME && f != NULL) {
        f = AT(f, L->cframe_current, const char *);
    }
    int n = 0, in_group = 0;
    for (unsigned walked = 0; f != NULL && n < max && walked < MAX_WALK;
         walked++, f = AT(f, L->f_back, const char *)) {
        int entry = marks && (L->scheme == PMT_PYL_FRAMEOBJECT ||
                              (L->f_is_entry && AT(f, L->f_is_entry, uint8_t)));
        uint8_t owner = L->scheme == PMT_PYL_FRAMEOBJECT ? 0 : AT(f, L->f_owner, uint8_t);
        const char *co = AT(f, L->f_code, const char *);
        int addr = -1, skip = 0;
        if (L->scheme != PMT_PYL_FRAMEOBJECT && owner == L->owner_cstack) {
            skip = 1;   /* a shim: it starts an evaluation call (3.12+) */
            if (marks && in_group) {
                out[n - 1].entry = 1;
                in_group = 0;
                continue;
            }
            entry = marks;
        }
        else if (co == NULL || AT(co, PMT_PYL_OB_TYPE, const void *) != g_py.code_type) {
            skip = 1;   /* 3.13: f_executable may be None */
        }
        else if (L->scheme == PMT_PYL_FRAMEOBJECT) {
            addr = AT(f, L->f_instr, int) * L->lasti_bytes;     /* -1: not started */
        }
        else {
            const char *start = co + L->co_code;
            const char *ip = AT(f, L->f_instr, const char *);
            if (owner != L->owner_generator &&
                ip < start + 2 * AT(co, L->co_firsttraceable, int)) {
                skip = 1;   /* a frame that has not started */
            }
            addr = (int)(ip - start);
        }
        if (skip && !(entry && !in_group)) {
            if (entry) {
                out[n - 1].entry = 1;   /* the call's started frames end here */
                in_group = 0;
            }
            continue;
        }
        out[n].code = skip ? NULL : co;     /* NULL: a call with no started frame */
        out[n].addr = addr;
        out[n].entry = entry;
        in_group = !entry;
        n++;
    }
    return n;
}

int
py_stack(pmt_pyframe *out, int max)
{
    return stack_walk(out, max, 0);
}

int
py_stack_marked(pmt_pyframe *out, int max)
{
    return stack_walk(out, max, 1);
}

/* UTF-8 of a str object, read without calling into Python (the thread may
 * not hold the GIL).  Returns the length written (no NUL). */
static size_t
str_utf8(const char *s, char *out, size_t cap)
{
    const pmt_pylayout *L = g_py.layout;
    uint32_t state = s ? AT(s, L->str_state, uint32_t) : 0;
    if (s == NULL || AT(s, PMT_PYL_OB_TYPE, const void *) != g_py.str_type ||
        (L->str_ready_bit >= 0 && !((state >> L->str_ready_bit) & 1u)) ||
        !PMT_PYL_STR_COMPACT(state)) {
        memcpy(out, "?", 1);
        return 1;
    }
    int64_t len = AT(s, L->str_length, int64_t);
    unsigned kind = PMT_PYL_STR_KIND(state);
    const unsigned char *data = (const unsigned char *)s +
        (PMT_PYL_STR_ASCII(state) ? L->str_ascii_size : L->str_compact_size);
    size_t n = 0;
    for (int64_t i = 0; i < len; i++) {
        uint32_t c = kind == 1 ? data[i]
                   : kind == 2 ? ((const uint16_t *)data)[i]
                   : ((const uint32_t *)data)[i];
        if (n + 4 >= cap) {
            break;
        }
        if (c < 0x80) {
            out[n++] = (char)c;
        }
        else if (c < 0x800) {
            out[n++] = (char)(0xC0 | (c >> 6));
            out[n++] = (char)(0x80 | (c & 0x3F));
        }
        else if (c < 0x10000) {
            if (c >= 0xD800 && c <= 0xDFFF) {
                c = 0xFFFD;     /* lone surrogate (surrogateescape'd name) */
            }
            out[n++] = (char)(0xE0 | (c >> 12));
            out[n++] = (char)(0x80 | ((c >> 6) & 0x3F));
            out[n++] = (char)(0x80 | (c & 0x3F));
        }
        else {
            out[n++] = (char)(0xF0 | (c >> 18));
            out[n++] = (char)(0x80 | ((c >> 12) & 0x3F));
            out[n++] = (char)(0x80 | ((c >> 6) & 0x3F));
            out[n++] = (char)(0x80 | (c & 0x3F));
        }
    }
    return n;
}

/* Global table: code object address -> id (open addressing, never shrinks). */
typedef struct {
    const void *co, *file, *name;
    int firstlineno;
    uint32_t id;
} code_entry;

static code_entry *g_codes;
static size_t g_codes_cap, g_codes_len;
static uint32_t g_next_code_id = 1;

static inline size_t
ptr_hash(const void *p)
{
    uint64_t x = (uint64_t)(uintptr_t)p;
    x ^= x >> 29;
    x *= 0xbf58476d1ce4e5b9ull;
    x ^= x >> 32;
    return (size_t)x;
}

static code_entry *
code_find_in(code_entry *table, size_t cap, const void *co)
{
    size_t mask = cap - 1;
    for (size_t i = ptr_hash(co) & mask;; i = (i + 1) & mask) {
        if (table[i].co == co || table[i].co == NULL) {
            return &table[i];
        }
    }
}

static int
code_used(const void *e)
{
    return ((const code_entry *)e)->co != NULL;
}

static void *
code_place(void *table, size_t cap, const void *e)
{
    return code_find_in(table, cap, ((const code_entry *)e)->co);
}

/* The id of code object co, writing its definition if new.  tb is locked. */
static uint32_t
code_id_slow(tbuf *tb, const char *co, const void *file, const void *name,
             int firstlineno)
{
    uint32_t id = 0;
    pthread_mutex_lock(&g_code_lock);
    void *tab = g_codes;
    if ((g_codes_len + 1) * 10 >= g_codes_cap * 7 &&
        table_grow(&tab, &g_codes_cap, sizeof(code_entry), code_used, code_place) < 0) {
        pthread_mutex_unlock(&g_code_lock);
        return 0;
    }
    g_codes = tab;
    code_entry *e = code_find_in(g_codes, g_codes_cap, co);
    if (e->co == co && e->file == file && e->name == name && e->firstlineno == firstlineno) {
        id = e->id;
    }
    else {
        if (e->co == NULL) {
            g_codes_len++;
        }
        id = g_next_code_id++;
        e->co = co;
        e->file = file;
        e->name = name;
        e->firstlineno = firstlineno;
        e->id = id;
        char payload[PAYLOAD_MAX];
        size_t n = str_utf8(file, payload, PAYLOAD_MAX / 2);
        payload[n++] = '\0';
        n += str_utf8(name, payload + n, PAYLOAD_MAX / 2 - 1);
        payload[n++] = '\0';
        uint64_t uv[2] = {id, pmt_zz((uint64_t)(int64_t)firstlineno)};
        put_def(tb, PMT_MC_CODE, uv, 2, payload, n);
    }
    pthread_mutex_unlock(&g_code_lock);
    return id;
}


/* The (code id, line) of one frame, through the thread's caches; 0 if the
 * code object cannot be defined (out of memory).  tb is locked. */
static inline uint32_t
frame_site(tbuf *tb, const pmt_pyframe *fr, int32_t *line)
{
    const pmt_pylayout *L = g_py.layout;
    const char *co = fr->code;
    const void *file = AT(co, L->co_filename, const void *);
    const void *name = AT(co, L->co_name, const void *);
    code_slot *cs = &tb->codes[(ptr_hash(co) >> 3) & (CODE_CACHE - 1)];
    uint32_t id;
    if (LIKELY(cs->co == co && cs->file == file && cs->name == name)) {
        id = cs->id;
    }
    else {
        id = code_id_slow(tb, co, file, name, AT(co, L->co_firstlineno, int));
        if (!id) {
            return 0;
        }
        cs->co = co;
        cs->file = file;
        cs->name = name;
        cs->id = id;
    }
    int addr = fr->addr;
    line_slot *ls = &tb->lines[(ptr_hash(co) ^ ((size_t)addr * 0x9E3779B1u)) & (LINE_CACHE - 1)];
    if (!(ls->co == co && ls->id == id && ls->lasti == addr)) {
        ls->co = co;
        ls->id = id;
        ls->lasti = addr;
        ls->line = g_py.addr2line(co, addr);
    }
    *line = ls->line;
    return id;
}

uint32_t
py_frame_site(tbuf *tb, const pmt_pyframe *fr, int32_t *line)
{
    return frame_site(tb, fr, line);
}

void
py_site(tbuf *tb, uint32_t *code, int32_t *line)
{
    pmt_pyframe fr;
    int32_t l;
    uint32_t id;
    if (stack_walk(&fr, 1, 0) == 1 && (id = frame_site(tb, &fr, &l)) != 0) {
        *code = id;
        *line = l;
    }
}

/* The identity of a frame for a stack's hash: code object (and its file and
 * name, so that a freed code object's address reused by another is not
 * taken for it) and position. */
uint64_t
py_frame_hash(const pmt_pyframe *fr)
{
    const pmt_pylayout *L = g_py.layout;
    const char *co = fr->code;
    uint64_t x = (uint64_t)(uintptr_t)co ^
                 (uint64_t)(uintptr_t)AT(co, L->co_filename, const void *) << 1 ^
                 (uint64_t)(uintptr_t)AT(co, L->co_name, const void *) << 2 ^
                 (uint64_t)(uint32_t)fr->addr << 40;
    return ptr_hash((const void *)(uintptr_t)x);
}

/* A forked child writes its own capture: every code object is defined again. */
void
py_forget_codes(void)
{
    pthread_mutex_init(&g_code_lock, NULL);
    if (g_codes) {
        memset(g_codes, 0, g_codes_cap * sizeof(code_entry));
    }
    g_codes_len = 0;
}
