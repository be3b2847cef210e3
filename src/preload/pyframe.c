/* pyframe.c: the calling thread's Python frame, as (code id, line).
 *
 * Python attribution reads the calling thread's own frame stack (CPython
 * 3.11 layouts from the headers, compile time only; nothing is linked
 * against libpython): PyGILState_GetThisThreadState() (a TLS lookup, NULL
 * for threads without Python state or before Python started), then
 * tstate->cframe->current_frame, skipping incomplete frames.  The line comes
 * from PyCode_Addr2Line (read-only), cached per thread.  A code object's file
 * and function names are written once, when the object is first seen (a
 * CODE record with a per-run id); an address reused by another code object
 * (different name, file or first line) gets a new id.
 */
#define Py_BUILD_CORE 1
#include <Python.h>
#include <internal/pycore_frame.h>

#include <dlfcn.h>
#include <string.h>

#include "preload.h"

/* Python, resolved at load with dlsym (never linked). */
static PyThreadState *(*py_this_tstate)(void);
static int (*py_addr2line)(PyCodeObject *, int);
static int (*py_finalizing)(void);
int g_py_on;
uint64_t g_py_hex;
uint32_t g_py_status = PMT_MC_PY_NONE;
pthread_mutex_t g_code_lock = PTHREAD_MUTEX_INITIALIZER;

/* UTF-8 of a str object, read without calling into Python (the thread may
 * not hold the GIL).  Returns the length written (no NUL). */
static size_t
str_utf8(PyObject *s, char *out, size_t cap)
{
    if (s == NULL || !PyUnicode_Check(s) || !PyUnicode_IS_READY(s)) {
        memcpy(out, "?", 1);
        return 1;
    }
    Py_ssize_t len = PyUnicode_GET_LENGTH(s);
    int kind = PyUnicode_KIND(s);
    const void *data = PyUnicode_DATA(s);
    size_t n = 0;
    for (Py_ssize_t i = 0; i < len; i++) {
        Py_UCS4 c = PyUnicode_READ(kind, data, i);
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
code_find(const void *co)
{
    size_t mask = g_codes_cap - 1;
    for (size_t i = ptr_hash(co) & mask;; i = (i + 1) & mask) {
        if (g_codes[i].co == co || g_codes[i].co == NULL) {
            return &g_codes[i];
        }
    }
}

static int
code_grow(void)
{
    size_t ncap = g_codes_cap ? g_codes_cap * 2 : 4096;
    code_entry *old = g_codes;
    size_t ocap = g_codes_cap;
    code_entry *n = real.calloc(ncap, sizeof(code_entry));
    if (!n) {
        return -1;
    }
    g_codes = n;
    g_codes_cap = ncap;
    for (size_t i = 0; i < ocap; i++) {
        if (old[i].co) {
            *code_find(old[i].co) = old[i];
        }
    }
    real.free(old);
    return 0;
}

/* The id of code object co, writing its definition if new.  tb is locked. */
static uint32_t
code_id_slow(tbuf *tb, PyCodeObject *co)
{
    uint32_t id = 0;
    pthread_mutex_lock(&g_code_lock);
    if ((g_codes_len + 1) * 10 >= g_codes_cap * 7 && code_grow() < 0) {
        pthread_mutex_unlock(&g_code_lock);
        return 0;
    }
    code_entry *e = code_find(co);
    if (e->co == co && e->file == co->co_filename && e->name == co->co_name &&
        e->firstlineno == co->co_firstlineno) {
        id = e->id;
    }
    else {
        if (e->co == NULL) {
            g_codes_len++;
        }
        id = g_next_code_id++;
        e->co = co;
        e->file = co->co_filename;
        e->name = co->co_name;
        e->firstlineno = co->co_firstlineno;
        e->id = id;
        char payload[PAYLOAD_MAX];
        size_t n = str_utf8(co->co_filename, payload, PAYLOAD_MAX / 2);
        payload[n++] = '\0';
        n += str_utf8(co->co_name, payload + n, PAYLOAD_MAX / 2 - 1);
        payload[n++] = '\0';
        put_def(tb, PMT_MC_CODE, (uint64_t)(uintptr_t)co, id, co->co_firstlineno,
                payload, n);
    }
    pthread_mutex_unlock(&g_code_lock);
    return id;
}

void
py_site(tbuf *tb, uint32_t *code, int32_t *line)
{
    if (py_finalizing()) {
        return;
    }
    PyThreadState *ts = py_this_tstate();
    if (ts == NULL || ts->cframe == NULL) {
        return;
    }
    _PyInterpreterFrame *f = ts->cframe->current_frame;
    while (f && _PyFrame_IsIncomplete(f)) {
        f = f->previous;
    }
    if (f == NULL) {
        return;
    }
    PyCodeObject *co = f->f_code;
    code_slot *cs = &tb->codes[(ptr_hash(co) >> 3) & (CODE_CACHE - 1)];
    uint32_t id;
    if (LIKELY(cs->co == co && cs->file == co->co_filename && cs->name == co->co_name)) {
        id = cs->id;
    }
    else {
        id = code_id_slow(tb, co);
        if (!id) {
            return;
        }
        cs->co = co;
        cs->file = co->co_filename;
        cs->name = co->co_name;
        cs->id = id;
    }
    int lasti = _PyInterpreterFrame_LASTI(f);
    line_slot *ls = &tb->lines[(ptr_hash(co) ^ ((size_t)lasti * 0x9E3779B1u)) & (LINE_CACHE - 1)];
    if (!(ls->co == co && ls->id == id && ls->lasti == lasti)) {
        ls->co = co;
        ls->id = id;
        ls->lasti = lasti;
        ls->line = py_addr2line(co, lasti * (int)sizeof(_Py_CODEUNIT));
    }
    *code = id;
    *line = ls->line;
}

void
resolve_python(void)
{
    const unsigned long *ver = dlsym(RTLD_DEFAULT, "Py_Version");
    void *ts = dlsym(RTLD_DEFAULT, "PyGILState_GetThisThreadState");
    void *a2l = dlsym(RTLD_DEFAULT, "PyCode_Addr2Line");
    void *fin = dlsym(RTLD_DEFAULT, "_Py_IsFinalizing");
    if (!ts || !a2l) {
        g_py_status = PMT_MC_PY_NONE;
        return;
    }
    g_py_hex = ver ? *ver : 0;
    if (!ver || !fin || (*ver >> 16) != ((unsigned long)PY_VERSION_HEX >> 16)) {
        g_py_status = PMT_MC_PY_MISMATCH;
        return;
    }
    py_this_tstate = (PyThreadState * (*)(void)) ts;
    py_addr2line = (int (*)(PyCodeObject *, int))a2l;
    py_finalizing = (int (*)(void))fin;
    g_py_status = PMT_MC_PY_ON;
    g_py_on = 1;
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
